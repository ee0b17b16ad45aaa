"""Training data: Fashion-MNIST from the Debian package, sklearn's bundled digits as the fallback.

Fashion-MNIST (60k train / 10k test, 28x28 grey) is read from the IDX gz files that
``apt-get install dataset-fashion-mnist`` puts under ``/usr/share/datasets/fashion-mnist/``
(``$SPARSA_FASHION_MNIST`` or the ``root`` argument point elsewhere).  sklearn's digits
(1797 8x8 images, bundled with scikit-learn) are split 80/20 with a fixed permutation.

Images come back NHWC float32, scaled to [0, 1] and standardised with the *training* set's
mean and standard deviation; labels are int64.
"""

from __future__ import annotations

import gzip
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from sparsa.errors import ConfigError, FormatError, MissingToolError

__all__ = [
    "DATASETS",
    "DIGITS_INSTALL",
    "FASHION_INSTALL",
    "FASHION_MNIST_DIR",
    "Dataset",
    "load_dataset",
    "load_digits",
    "load_fashion_mnist",
    "read_idx",
]

#: Dataset names ``sparsa train --dataset`` accepts.
DATASETS: tuple[str, ...] = ("fashion-mnist", "digits")
#: Where the Debian package puts the files.
FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_INSTALL = "apt-get install dataset-fashion-mnist"
DIGITS_INSTALL = "pip install scikit-learn"
_FASHION_FILES = {
    "x_train": "train-images-idx3-ubyte.gz", "y_train": "train-labels-idx1-ubyte.gz",
    "x_test": "t10k-images-idx3-ubyte.gz", "y_test": "t10k-labels-idx1-ubyte.gz",
}


@dataclass(frozen=True)
class Dataset:
    """A classification data set, NHWC images.

    Attributes
    ----------
    name : str
        ``fashion-mnist`` or ``digits``.
    x_train, x_test : np.ndarray
        ``[N, H, W, 1]`` float32, standardised.
    y_train, y_test : np.ndarray
        ``[N]`` int64 class labels.
    classes : int
        Number of classes.
    note : str
        Why this data set was used when another was asked for ("" otherwise).
    """

    name: str
    x_train: np.ndarray = field(repr=False)
    y_train: np.ndarray = field(repr=False)
    x_test: np.ndarray = field(repr=False)
    y_test: np.ndarray = field(repr=False)
    classes: int
    note: str = ""

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Per-sample image shape ``(H, W, C)``."""
        return tuple(self.x_train.shape[1:])

    def subset(self, train: int | None = None, test: int | None = None) -> Dataset:
        """The first ``train`` / ``test`` samples (for quick runs and tests)."""
        return Dataset(self.name, self.x_train[:train], self.y_train[:train], self.x_test[:test],
                       self.y_test[:test], self.classes, self.note)


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (optionally gzipped): big-endian header, then uint8 data.

    Raises
    ------
    FormatError
        Not an unsigned-byte IDX file, or truncated.
    """
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as fh:
            data = fh.read()
    except (OSError, EOFError) as exc:
        raise FormatError(f"cannot read IDX file {str(path)!r}: {exc}") from None
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise FormatError(f"{str(path)!r} is not an unsigned-byte IDX file (magic {data[:4].hex()!r})")
    ndim = data[3]
    dims = struct.unpack(f">{ndim}I", data[4: 4 + 4 * ndim])
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(dims)):
        raise FormatError(f"IDX file {str(path)!r} holds {body.size} bytes, its header says {dims}")
    return body.reshape(dims)


def _standardise(x_train: np.ndarray, x_test: np.ndarray, peak: float) -> tuple[np.ndarray, np.ndarray]:
    xtr = x_train.astype(np.float32) / peak
    xte = x_test.astype(np.float32) / peak
    mu, sd = float(xtr.mean()), float(xtr.std())
    return (xtr - mu) / sd, (xte - mu) / sd


def fashion_mnist_dir(root: str | Path | None = None) -> Path:
    """``root``, else ``$SPARSA_FASHION_MNIST``, else the Debian package's folder."""
    if root is not None:
        return Path(root)
    env = os.environ.get("SPARSA_FASHION_MNIST")
    return Path(env) if env else FASHION_MNIST_DIR


def fashion_mnist_available(root: str | Path | None = None) -> bool:
    """True when all four IDX files are present."""
    d = fashion_mnist_dir(root)
    return all((d / f).is_file() for f in _FASHION_FILES.values())


def load_fashion_mnist(root: str | Path | None = None) -> Dataset:
    """Fashion-MNIST, 60000 train / 10000 test images of 28x28x1, 10 classes.

    Raises
    ------
    MissingToolError
        The files are not installed (the message gives the apt command).
    """
    d = fashion_mnist_dir(root)
    missing = [f for f in _FASHION_FILES.values() if not (d / f).is_file()]
    if missing:
        raise MissingToolError(f"Fashion-MNIST is not installed ({missing[0]} not in {str(d)!r}): "
                               f"{FASHION_INSTALL}")
    arr = {key: read_idx(d / f) for key, f in _FASHION_FILES.items()}
    xtr, xte = _standardise(arr["x_train"], arr["x_test"], 255.0)
    return Dataset("fashion-mnist", xtr[..., None], arr["y_train"].astype(np.int64), xte[..., None],
                   arr["y_test"].astype(np.int64), 10)


def load_digits(test_fraction: float = 0.2) -> Dataset:
    """sklearn's 8x8 digits (1797 images, 10 classes), split with a fixed permutation (seed 0).

    Raises
    ------
    MissingToolError
        scikit-learn is not installed (the message gives the pip command).
    """
    try:
        from sklearn.datasets import load_digits as _sk_digits
    except ImportError:
        raise MissingToolError(f"the digits data set ships with scikit-learn, which is not installed: "
                               f"{DIGITS_INSTALL}") from None
    bunch = _sk_digits()
    x = bunch.images.astype(np.float32)
    y = bunch.target.astype(np.int64)
    order = np.random.default_rng(0).permutation(len(y))
    cut = round(len(y) * (1 - test_fraction))
    tr, te = order[:cut], order[cut:]
    xtr, xte = _standardise(x[tr], x[te], 16.0)
    return Dataset("digits", xtr[..., None], y[tr], xte[..., None], y[te], 10)


def load_dataset(name: str, *, root: str | Path | None = None, fallback: bool = True) -> Dataset:
    """Load ``fashion-mnist`` or ``digits``.

    When Fashion-MNIST is asked for but not installed and ``fallback`` is true, the digits
    are returned instead with :attr:`Dataset.note` saying so (and how to install the real
    thing); without scikit-learn either, the error names both install commands.
    """
    if name == "digits":
        return load_digits()
    if name != "fashion-mnist":
        raise ConfigError(f"dataset must be one of {', '.join(DATASETS)}, not {name!r}")
    if fashion_mnist_available(root) or not fallback:
        return load_fashion_mnist(root)
    where = fashion_mnist_dir(root)
    try:
        ds = load_digits()
    except MissingToolError:
        raise MissingToolError(f"Fashion-MNIST is not installed (no IDX files in {str(where)!r}): {FASHION_INSTALL}; "
                               f"the digits fallback needs scikit-learn: {DIGITS_INSTALL}") from None
    note = (f"Fashion-MNIST is not installed (no IDX files in {str(where)!r}; {FASHION_INSTALL}): "
            "falling back to sklearn digits (8x8, 1797 images)")
    return Dataset(ds.name, ds.x_train, ds.y_train, ds.x_test, ds.y_test, ds.classes, note)
