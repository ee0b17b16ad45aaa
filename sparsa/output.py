"""Atomic output: every file the CLI writes, alone or as a set, goes through this module.

Guarantee
---------
An output is either the old complete output or the new complete output, never a mix, and no
temporary file or directory is left behind, whatever fails while it is written: an
:class:`OSError` (full disk ``ENOSPC``, read-only file system ``EROFS``, no permission
``EACCES``, ...) or a ``KeyboardInterrupt`` (Ctrl-C, SIGINT).

* A single file (:func:`write_file`, :func:`output_file`) is written to a temporary file in the
  same directory, flushed to disk (``fsync``) and renamed over the target with
  :func:`os.replace`, which POSIX makes atomic.
* A set of files in one directory (:func:`output_dir`, e.g. the images of ``sparsa compile -o
  DIR``) is written into a sibling temporary directory, flushed, and swapped in: the old directory
  is renamed aside, the new one renamed into place, then the old one removed.  Entries of the old
  directory that the new set does not contain (the user's own files) are moved into the new
  directory before the swap, so they survive.  On any failure or interrupt the old directory
  (and its entries) is restored and the temporary directory removed.  SIGINT is held back while
  the renames of the swap (or of its rollback) run, then delivered.

Limits
------
The rename sequence is not one system call: a crash of the machine or a ``SIGKILL`` between the
two renames of a directory swap leaves the old directory renamed aside
(``.DIR.<random>.sparsa-old``) and the new one next to it (``.DIR.<random>.sparsa-new``) with
``DIR`` missing; both are complete and can be renamed back by hand.  A crash while the user's
own entries are moved across leaves some of them in the new directory.  A crash after a file's
``os.replace`` but before the directory's ``fsync`` may, on some file systems, come back with
the old file after a reboot.  None of this happens on ``OSError`` or ``KeyboardInterrupt``.

Output paths are checked before the work starts (:func:`check_output_file`,
:func:`check_output_dir`); every problem is an :class:`OutputError` (a
:class:`~sparsa.errors.SparsaError`, so one ``error:`` line and exit status 2) naming the option,
the path and, for system errors, the operating system's reason.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

from sparsa.errors import SparsaError

__all__ = [
    "OutputError",
    "check_output_file",
    "check_output_dir",
    "write_file",
    "output_file",
    "output_dir",
    "Staging",
    "check_env_dir",
    "deferred_sigint",
    "TEMP_MARKERS",
]

#: Substrings of the names of this module's temporary files and directories (for litter checks).
TEMP_MARKERS: tuple[str, ...] = (".sparsa-tmp", ".sparsa-new", ".sparsa-old")


class OutputError(SparsaError, OSError):
    """An output path is unusable or writing it failed (message names option, path and reason)."""


def _label(path: Path, option: str | None) -> str:
    return f"{option} {str(path)!r}" if option else repr(str(path))


def _reason(exc: OSError) -> str:
    return exc.strerror or str(exc)


def _nearest_existing(path: Path) -> Path:
    p = path
    while not os.path.lexists(p):
        if p.parent == p:
            break
        p = p.parent
    return p


def _check_parent(path: Path, option: str | None, parents: bool) -> None:
    parent = path.parent
    if parent.is_dir():
        if not os.access(parent, os.W_OK | os.X_OK):
            raise OutputError(f"{_label(path, option)}: directory {str(parent)!r} is not writable")
        return
    existing = _nearest_existing(parent)
    if not existing.is_dir():
        raise OutputError(f"{_label(path, option)}: {str(existing)!r} is not a directory")
    if not parents:
        raise OutputError(f"{_label(path, option)}: directory {str(parent)!r} does not exist")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise OutputError(f"{_label(path, option)}: directory {str(existing)!r} is not writable")


def check_output_file(path: "str | os.PathLike[str]", option: str | None = None, *,
                      parents: bool = False) -> Path:
    """Check, before any work, that ``path`` can be written as a file; return it as a Path.

    Parameters
    ----------
    path : path-like
        The file to write later.
    option : str, optional
        The command-line option it came from (``--json``), for the message.
    parents : bool
        Missing parent directories will be created (else a missing parent is an error).

    Raises
    ------
    OutputError
        ``path`` is a directory, its parent is missing (``parents=False``), a file, or not writable.
    """
    path = Path(path)
    if str(path) in ("", "."):
        raise OutputError(f"{_label(path, option)}: not a file name")
    if path.is_dir():
        raise OutputError(f"{_label(path, option)}: is a directory, expected a file name")
    _check_parent(path, option, parents)
    return path


def check_output_dir(path: "str | os.PathLike[str]", option: str | None = None, *,
                     whole: bool = True) -> Path:
    """Check, before any work, that ``path`` can be written as an output directory; return it.

    Missing parents are allowed (they are created when the output is written).

    Parameters
    ----------
    path : path-like
        The directory.
    option : str, optional
        The command-line option it came from (``-o``), for the message.
    whole : bool
        The directory is replaced as a whole (:func:`output_dir`): it must not be the current
        directory, one of its ancestors, or a mount point.

    Raises
    ------
    OutputError
        ``path`` is a file, lies under a file, is not writable, or (``whole``) cannot be swapped.
    """
    path = Path(path)
    if os.path.lexists(path) and not path.is_dir():
        raise OutputError(f"{_label(path, option)}: is a file, expected a directory")
    if path.is_dir():
        if not os.access(path, os.W_OK | os.X_OK):
            raise OutputError(f"{_label(path, option)}: directory is not writable")
        if whole:
            real = Path(os.path.realpath(path))
            cwd = Path(os.getcwd())
            if real == cwd or real in cwd.parents:
                raise OutputError(f"{_label(path, option)}: is the current directory or holds it; sparsa "
                                  f"replaces an output directory as a whole, give a subdirectory")
            if os.path.ismount(real):
                raise OutputError(f"{_label(path, option)}: is a mount point; sparsa replaces an output "
                                  f"directory as a whole, give a subdirectory")
            if not os.access(real.parent, os.W_OK | os.X_OK):
                raise OutputError(f"{_label(path, option)}: its parent {str(real.parent)!r} is not writable")
        return path
    _check_parent(path, option, parents=True)
    return path


@contextlib.contextmanager
def deferred_sigint() -> Iterator[None]:
    """Hold SIGINT back for the block (main thread only), then deliver it to the previous handler.

    With Python's default handler that raises :class:`KeyboardInterrupt` after the block; an
    ignored SIGINT stays ignored.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    current = signal.getsignal(signal.SIGINT)
    if current in (signal.SIG_IGN, None):
        yield
        return
    pending: list[tuple[int, object]] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: pending.append((signum, frame)))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if pending:
        if callable(previous):
            previous(*pending[0])
        else:  # SIG_DFL: terminate as the signal would have
            os.kill(os.getpid(), signal.SIGINT)


def _umask_mode(base: int) -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return base & ~mask


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:  # pragma: no cover - best effort
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover - some file systems refuse to fsync a directory
        pass
    finally:
        os.close(fd)


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def _write_error(shown: Path, option: str | None, exc: OSError) -> OutputError:
    """The one-line error of an :class:`OSError` while writing ``shown``."""
    return OutputError(f"{_label(shown, option)}: cannot write: {_reason(exc)}")


@contextlib.contextmanager
def _discarded_on_failure(temp: Path, shown: Path, option: str | None) -> Iterator[None]:
    """Run the block that fills and commits ``temp``: an :class:`OSError` becomes one
    :class:`OutputError` line, and any failure or interrupt removes ``temp`` (the target keeps its
    old contents)."""
    try:
        try:
            yield
        except OutputError:
            raise
        except OSError as exc:
            raise _write_error(shown, option, exc) from None
    except BaseException:
        with deferred_sigint():
            _remove(temp)
        raise


def _remove(path: Path) -> None:
    with contextlib.suppress(OSError):
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            os.unlink(path)


def _target(path: "str | os.PathLike[str]") -> Path:
    """Where to write: symlinks are written through (the link stays)."""
    return Path(os.path.realpath(path)) if os.path.islink(path) else Path(os.path.abspath(path))


@contextlib.contextmanager
def output_file(path: "str | os.PathLike[str]", option: str | None = None, *,
                parents: bool = False) -> Iterator[Path]:
    """Yield a temporary path to write; on success it atomically replaces ``path``.

    For writers that need a file name (``matplotlib``'s ``savefig``, ``csv`` through ``open``).
    The temporary file is in ``path``'s directory and keeps ``path``'s suffix.  On an error or
    interrupt in the block or while committing, ``path`` is left as it was and the temporary
    file is removed.

    Raises
    ------
    OutputError
        The path is unusable, or an :class:`OSError` happened while writing (the old file intact).
    """
    shown = Path(path)
    check_output_file(shown, option, parents=parents)
    final = _target(shown)
    try:
        if parents:
            final.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=f".sparsa-tmp{final.suffix}",
                                    dir=final.parent)
        os.close(fd)
    except OSError as exc:
        raise _write_error(shown, option, exc) from None
    tmp = Path(name)
    with _discarded_on_failure(tmp, shown, option):
        yield tmp
        os.chmod(tmp, _umask_mode(0o666))
        _fsync_file(tmp)
        with deferred_sigint():
            os.replace(tmp, final)
    _fsync_dir(final.parent)


def write_file(path: "str | os.PathLike[str]", data: "str | bytes", option: str | None = None, *,
               parents: bool = False) -> Path:
    """Write ``data`` (``str`` as UTF-8) to ``path`` atomically; return ``path``.

    Parameters
    ----------
    path : path-like
        The file.
    data : str or bytes
        Its new contents.
    option : str, optional
        The command-line option, for messages.
    parents : bool
        Create missing parent directories.

    Raises
    ------
    OutputError
        The path is unusable or writing failed; the old file is intact and no temporary is left.
    """
    if not isinstance(data, (str, bytes)):
        raise TypeError(f"write_file: data must be str or bytes, not {type(data).__name__}")
    raw = data.encode() if isinstance(data, str) else data
    with output_file(path, option, parents=parents) as tmp:
        fd = os.open(tmp, os.O_WRONLY | os.O_TRUNC)
        try:
            _write_all(fd, raw)
        finally:
            os.close(fd)
    return Path(path)


class Staging:
    """The temporary directory of an :func:`output_dir` block: write the set's files here."""

    def __init__(self, root: Path, final: Path) -> None:
        self.root = root
        self.final = final

    def write(self, name: str, data: "str | bytes") -> Path:
        """Write one file of the set; return the path it will have after the swap."""
        if not isinstance(name, str) or not name or "/" in name or name in (".", ".."):
            raise ValueError(f"output file name must be a plain file name, not {name!r}")
        raw = data.encode() if isinstance(data, str) else data
        fd = os.open(self.root / name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, _umask_mode(0o666))
        try:
            _write_all(fd, raw)
        finally:
            os.close(fd)
        return self.final / name

    def path(self, name: str) -> Path:
        """The staging path of ``name`` (for writers that need a file name, e.g. ``savefig``)."""
        if not isinstance(name, str) or not name or "/" in name or name in (".", ".."):
            raise ValueError(f"output file name must be a plain file name, not {name!r}")
        return self.root / name


def _swap_in(stage: Path, final: Path) -> None:
    """Replace the directory ``final`` by ``stage`` (see the module's guarantee)."""
    if not os.path.lexists(final):
        with deferred_sigint():
            os.rename(stage, final)
        return
    new_names = set(os.listdir(stage))
    foreign = [e for e in os.listdir(final) if e not in new_names]
    aside = final.parent / f".{final.name}.{secrets.token_hex(4)}.sparsa-old"
    moved: list[str] = []
    with deferred_sigint():
        try:
            for entry in foreign:
                os.rename(final / entry, stage / entry)
                moved.append(entry)
            os.rename(final, aside)
            os.rename(stage, final)
        except BaseException:
            if not os.path.lexists(final) and os.path.lexists(aside):
                with contextlib.suppress(OSError):
                    os.rename(aside, final)
            for entry in moved:
                with contextlib.suppress(OSError):
                    os.rename(stage / entry, final / entry)
            raise
        _remove(aside)


@contextlib.contextmanager
def output_dir(path: "str | os.PathLike[str]", option: str | None = None) -> Iterator[Staging]:
    """Write a set of files into the directory ``path`` atomically as a set.

    Yields a :class:`Staging` (a sibling temporary directory) to write the files into; when the
    block ends without error the staging directory replaces ``path`` (see the module docstring for
    the guarantee and its limits).  Entries of an existing ``path`` that the new set does not
    contain are kept.  Missing parent directories are created.

    Raises
    ------
    OutputError
        The path is unusable or an :class:`OSError` happened while writing: the old directory is
        intact and no temporary directory is left.
    """
    shown = Path(path)
    check_output_dir(shown, option)
    final = Path(os.path.realpath(shown))
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        stage = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".sparsa-new", dir=final.parent))
    except OSError as exc:
        raise _write_error(shown, option, exc) from None
    with _discarded_on_failure(stage, shown, option):
        os.chmod(stage, (os.stat(final).st_mode & 0o7777) if final.is_dir() else _umask_mode(0o777))
        yield Staging(stage, shown)
        for entry in os.listdir(stage):
            if (stage / entry).is_file():
                _fsync_file(stage / entry)
        _fsync_dir(stage)
        _swap_in(stage, final)
    _fsync_dir(final.parent)


def _env_dir_error(var: str, value: str, why: str) -> OutputError:
    return OutputError(f"${var}={value!r}: {why} (set it to a writable directory, or unset it)")


def check_env_dir(var: str, default: Callable[[], Path]) -> Path:
    """The directory named by the environment variable ``var`` (unset or empty: ``default()``), checked.

    Raises
    ------
    OutputError
        ``$var`` is set but blank, names a file, lies under a file, or is not writable.
    """
    value = os.environ.get(var)
    if not value:
        return default()
    if not value.strip():
        raise _env_dir_error(var, value, "not a directory name")
    path = Path(value).expanduser()
    if os.path.lexists(path) and not path.is_dir():
        raise _env_dir_error(var, value, "is a file, not a directory")
    existing = _nearest_existing(path)
    if not existing.is_dir():
        raise _env_dir_error(var, value, f"{str(existing)!r} is not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise _env_dir_error(var, value, f"directory {str(existing)!r} is not writable")
    return path

