"""The one strict YAML reader of sparsa (accelerator configs and workload files).

Every YAML file a user hands to sparsa goes through :func:`read_yaml`, which

* reads the file as UTF-8 and refuses binary or non-UTF-8 files with one line;
* refuses duplicate keys (naming the key, the file and both lines) instead of silently keeping
  the last one;
* bounds nesting depth and the expanded size of anchors/aliases (an "alias bomb" is refused
  before it is expanded);
* keeps ``yaml.SafeLoader``'s refusal of tags that would construct Python objects;
* returns, with the data, the line of every node so that schema errors can say
  ``file:line``.

:func:`format_validation_errors` turns a pydantic :class:`~pydantic.ValidationError` into one line
per problem (file:line, field, message, the bad value shortened, a did-you-mean for unknown keys).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from sparsa.errors import ConfigError

__all__ = ["MAX_DEPTH", "MAX_NODES", "MAX_BYTES", "YamlDocument", "read_yaml", "parse_yaml_text",
           "format_validation_errors", "short_repr", "suggest"]

#: Deepest nesting of mappings/sequences a config or workload file may have.
MAX_DEPTH = 32
#: Most nodes a document may have once every alias is expanded (refuses alias bombs).
MAX_NODES = 100_000
#: Largest YAML file sparsa reads (configs and workload files are a few kB).
MAX_BYTES = 4 * 1024 * 1024

Path_ = tuple[Any, ...]


def short_repr(value: Any, limit: int = 80) -> str:
    """``repr(value)`` cut to ``limit`` characters (a huge or aliased value never floods a message)."""
    if isinstance(value, (dict, list, tuple, set)) and len(value) > 50:
        return f"<{type(value).__name__} of {len(value)} items>"
    try:
        text = repr(value)
    except RecursionError:  # pragma: no cover - a self-referencing structure
        return f"<recursive {type(value).__name__}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def suggest(word: str, choices: Iterable[str]) -> str:
    """``"; did you mean 'x'?"`` for the closest of ``choices`` (or ``""``), via :mod:`difflib`."""
    close = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


class YamlDocument:
    """Parsed YAML data with the 1-based line of every node, keyed by its path of keys/indices."""

    def __init__(self, data: Any, lines: dict[Path_, int], source: str) -> None:
        self.data = data
        self.lines = lines
        self.source = source

    def line_of(self, loc: Sequence[Any]) -> int | None:
        """Line of the deepest existing node along ``loc`` (None when not even the top is known)."""
        loc = tuple(loc)
        for end in range(len(loc), -1, -1):
            line = self.lines.get(loc[:end])
            if line is not None:
                return line
        return None

    def where(self, loc: Sequence[Any]) -> str:
        """``"file:line"`` of ``loc`` (``"file"`` alone when the line is unknown)."""
        line = self.line_of(loc)
        return f"{self.source}:{line}" if line is not None else self.source


def _scalar_key(node: yaml.Node) -> Any:
    return node.value if isinstance(node, yaml.ScalarNode) else None


def _check_tree(root: yaml.Node, source: str) -> tuple[list[str], dict[int, int]]:
    """Duplicate keys and nesting depth of the composed tree; expanded sizes per node (by id)."""
    problems: list[str] = []
    sizes: dict[int, int] = {}
    # Iterative post-order walk (the tree may be deep; aliases make it a DAG: memoise by id).
    stack: list[tuple[yaml.Node, int, bool]] = [(root, 1, False)]
    on_path: set[int] = set()
    while stack:
        node, depth, done = stack.pop()
        key = id(node)
        if done:
            on_path.discard(key)
            children = _children(node)
            sizes[key] = min(MAX_NODES + 1, 1 + sum(sizes.get(id(c), 1) for c in children))
            continue
        if key in sizes:
            continue
        if key in on_path:  # a recursive alias (an anchor inside its own value)
            raise ConfigError(f"{source}:{node.start_mark.line + 1}: a YAML alias refers to itself (recursive anchor)")
        if depth > MAX_DEPTH:
            raise ConfigError(f"{source}:{node.start_mark.line + 1}: nested more than {MAX_DEPTH} levels deep "
                              f"(configs and workload files are flat mappings)")
        on_path.add(key)
        stack.append((node, depth, True))
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, int] = {}
            for k, _ in node.value:
                name = _scalar_key(k)
                if name is None:
                    continue
                if name in seen and name != "<<":
                    problems.append(f"{source}:{k.start_mark.line + 1}: duplicate key {short_repr(name)} "
                                    f"(first at line {seen[name]}); give each key once")
                else:
                    seen[name] = k.start_mark.line + 1
        for child in _children(node):
            stack.append((child, depth + 1, False))
    return problems, sizes


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def _line_map(root: yaml.Node, loader: yaml.SafeLoader) -> dict[Path_, int]:
    lines: dict[Path_, int] = {(): root.start_mark.line + 1}
    stack: list[tuple[yaml.Node, Path_]] = [(root, ())]
    visited = 0
    while stack and visited < MAX_NODES:
        node, path = stack.pop()
        visited += 1
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                if not isinstance(k, yaml.ScalarNode):
                    continue
                try:
                    name = loader.construct_object(k, deep=True)
                except yaml.YAMLError:
                    name = k.value
                if isinstance(name, (str, int, float, bool)) or name is None:
                    lines[path + (name,)] = k.start_mark.line + 1
                    if isinstance(name, (int, bool)) or name is None:
                        lines.setdefault(path + (str(name),), k.start_mark.line + 1)
                    stack.append((v, path + (name,)))
        elif isinstance(node, yaml.SequenceNode):
            for i, v in enumerate(node.value):
                lines[path + (i,)] = v.start_mark.line + 1
                stack.append((v, path + (i,)))
    return lines


def parse_yaml_text(text: str, source: str) -> YamlDocument:
    """Parse one YAML document strictly (see the module docstring).

    Raises
    ------
    ConfigError
        One line per problem, each starting ``source:line:``.
    """
    _check_depth(text, source)
    loader = yaml.SafeLoader(text)
    try:
        try:
            root = loader.get_single_node()
        except RecursionError:
            raise ConfigError(f"{source}: nested more than {MAX_DEPTH} levels deep "
                              f"(configs and workload files are flat mappings)") from None
        except yaml.YAMLError as exc:
            raise ConfigError(_yaml_error(exc, source)) from None
        if root is None:
            return YamlDocument(None, {}, source)
        problems, sizes = _check_tree(root, source)
        if sizes.get(id(root), 0) > MAX_NODES:
            raise ConfigError(f"{source}: the document expands to more than {MAX_NODES} nodes through YAML "
                              f"aliases (an alias bomb?); write the values out or use fewer aliases")
        if problems:
            raise ConfigError("\n".join(problems))
        try:
            data = loader.construct_document(root)
        except yaml.YAMLError as exc:
            raise ConfigError(_yaml_error(exc, source)) from None
        except (TypeError, ValueError) as exc:  # e.g. an unhashable (mapping) key
            raise ConfigError(f"{source}: unsupported YAML construct ({short_repr(str(exc))})") from None
        return YamlDocument(data, _line_map(root, loader), source)
    finally:
        loader.dispose()


_OPEN = (yaml.FlowSequenceStartToken, yaml.FlowMappingStartToken, yaml.BlockSequenceStartToken,
         yaml.BlockMappingStartToken)
_CLOSE = (yaml.FlowSequenceEndToken, yaml.FlowMappingEndToken, yaml.BlockEndToken)


def _check_depth(text: str, source: str) -> None:
    """Refuse nesting deeper than :data:`MAX_DEPTH` from the token stream (no recursion, linear time)."""
    depth = 0
    try:
        for token in yaml.scan(text, Loader=yaml.SafeLoader):
            if isinstance(token, _OPEN):
                depth += 1
                if depth > MAX_DEPTH:
                    raise ConfigError(f"{source}:{token.start_mark.line + 1}: nested more than {MAX_DEPTH} levels "
                                      f"deep (configs and workload files are flat mappings)")
            elif isinstance(token, _CLOSE):
                depth -= 1
    except yaml.YAMLError as exc:
        raise ConfigError(_yaml_error(exc, source)) from None


def _yaml_error(exc: yaml.YAMLError, source: str) -> str:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    at = f":{mark.line + 1}" if mark is not None else ""
    problem = getattr(exc, "problem", None) or str(exc).strip().splitlines()[0]
    context = getattr(exc, "context", None)
    what = f"{context}: {problem}" if context and "constructor" not in str(context) else problem
    if isinstance(exc, yaml.constructor.ConstructorError) and "tag" in str(problem):
        what = f"{problem} (YAML tags are refused: sparsa files hold plain data)"
    return f"{source}{at}: not valid YAML: {' '.join(str(what).split())}"


def read_yaml(path: "str | Path", what: str = "YAML file") -> YamlDocument:
    """Read ``path`` as UTF-8 and parse it with :func:`parse_yaml_text`.

    Raises
    ------
    ConfigError
        Missing or unreadable file, binary or non-UTF-8 content, a file over :data:`MAX_BYTES`,
        or any problem :func:`parse_yaml_text` reports.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{what} {str(path)!r} does not exist")
    try:
        size = path.stat().st_size
        if size > MAX_BYTES:
            raise ConfigError(f"{what} {str(path)!r} is {size} bytes; sparsa reads YAML files of at most "
                              f"{MAX_BYTES} bytes")
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{what} {str(path)!r} cannot be read: {exc.strerror or exc}") from None
    nul = raw.find(b"\x00")
    if nul >= 0:
        raise ConfigError(f"{path}: {what} is binary (NUL byte at offset {nul}), "
                          f"not UTF-8 YAML text")
    try:
        text = raw.decode("utf-8-sig" if raw.startswith(b"\xef\xbb\xbf") else "utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ConfigError(f"{path}:{line}: {what} is not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset "
                          f"{exc.start}); save it as UTF-8") from None
    return parse_yaml_text(text, str(path))


def _model_fields_at(model: Any, loc: Sequence[Any]) -> list[str] | None:
    """Field names of the (nested) pydantic model that ``loc`` points into, if it is one."""
    import typing

    current = model
    for part in loc:
        fields = getattr(current, "model_fields", None)
        if fields is None or part not in fields:
            return None
        ann = fields[part].annotation
        candidates = [ann, *typing.get_args(ann)]
        current = next((c for c in candidates if hasattr(c, "model_fields")), None)
        if current is None:
            return None
    fields = getattr(current, "model_fields", None)
    return list(fields) if fields is not None else None


def format_validation_errors(exc: ValidationError, doc: "YamlDocument | None", source: str,
                             model: Any = None) -> str:
    """One line per pydantic error: ``file:line: field: problem (got value)``.

    Parameters
    ----------
    exc : ValidationError
        The error of ``model.model_validate``.
    doc : YamlDocument or None
        The parsed file (for line numbers); None for data not read from a file.
    source : str
        The file name (or ``<overrides>``) every line starts with.
    model : pydantic model class, optional
        For the did-you-mean of unknown keys.
    """
    lines: list[tuple[int, str]] = []      # (line in the file, text): reported in file order
    for err in exc.errors(include_url=False):
        loc = tuple(err["loc"])
        at = doc.line_of(loc) if doc is not None else None
        where = f"{source}:{at}" if at is not None else source
        field = ".".join(str(p) for p in loc) or "(top level)"
        kind = err["type"]
        if kind == "extra_forbidden":
            known = _model_fields_at(model, loc[:-1]) if model is not None else None
            hint = suggest(str(loc[-1]), known) if known else ""
            allowed = f" (allowed: {', '.join(known)})" if known and not hint else ""
            lines.append((at or 0, f"{where}: unknown key {field!r}{hint}{allowed}"))
        elif kind == "missing":
            lines.append((at or 0, f"{where}: missing required key {field!r}"))
        else:
            text = err["msg"].removeprefix("Value error, ")
            got = err.get("input")
            shown = "" if isinstance(got, (dict, list)) and kind not in ("model_type", "dict_type", "list_type") \
                else f" (got {short_repr(got)})"
            # a whole-config (model-level) check names its fields in its own message
            prefix = f"{field}: " if loc else ""
            lines.append((at or 0, f"{where}: {prefix}{text}{shown}"))
    return "\n".join(dict.fromkeys(text for _, text in sorted(lines, key=lambda item: item[0])))

