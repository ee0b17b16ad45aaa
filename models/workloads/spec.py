"""Workload registry and YAML workload files.

Size: the workload registry plus the YAML workload-file schema and its override rules - one
file format with its validation messages; splitting would separate rules from the schema they check.

A workload file names a model, the phase and sizes, and assigns N:M sparsity
and number formats to GEMM layers by glob or regex on their names::

    model: llama2-7b
    phase: decode
    context: 1024
    batch: 1
    kv_cache: int8
    attention: {policy: local+strided, block: 64, window: 4, stride: 8}   # prefill only
    defaults: {sparsity: dense, weight: int4, activation: int8}
    overrides:
      - match: "blocks.*.attn.[qkvo]_proj"
        sparsity: "2:4"
      - match: "blocks.*.mlp.*_proj"
        sparsity: "2:8"
      - regex: 'blocks\\.\\d+\\.attn\\.(qk|av)'
        sparsity: dense

Rules apply in order to GEMM layers only, later rules overriding earlier ones
field by field.  ``defaults`` (and ``weight``/``sparsity`` in general) reach
static-weight GEMMs only; the ``k x n`` operand of ``attention_qk`` /
``attention_av`` is the KV cache, whose format is the top-level ``kv_cache``.
The full schema is in ``docs/workloads.md``.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from sparsa.errors import ConfigError, FormatError, SparsaError
from sparsa.formats.attention_blocks import DEFAULT_BLOCK, BlockPolicy, PolicyKind
from sparsa.formats.nm import parse_nm
from sparsa.formats.nm_meta import BLOCK_NS
from sparsa.yamlio import YamlDocument, read_yaml, suggest

from .cnn import mlp, resnet18, resnet50
from .encoder import BERT_BASE, all_minilm_l6_v2, build_encoder
from .graph import GemmLayer, NumberFormat, Op, Workload
from .llm import LLAMA2_7B, OPT_6_7B, build_decoder, smollm2_135m

__all__ = [
    "ModelEntry",
    "WORKLOADS",
    "get_workload",
    "LayerSettings",
    "LayerRule",
    "AttentionSettings",
    "WorkloadSpec",
    "apply_spec",
    "spec_from_mapping",
    "load_workload",
    "PRESET_DIR",
    "preset_names",
]

#: ``configs/workloads`` of a source checkout (editable install); may not exist in a wheel.
PRESET_DIR: Path = Path(__file__).resolve().parents[2] / "configs" / "workloads"


# --------------------------------------------------------------------------- registry


@dataclass(frozen=True, slots=True)
class ModelEntry:
    """One model the registry can build.

    Parameters
    ----------
    name : str
        Registry key.
    family : {"decoder", "encoder", "cnn", "mlp"}
        Decoders take ``phase`` prefill/decode and a context; encoders a context
        (sequence length); CNNs and MLPs neither.
    description : str
        One line for listings.
    options : tuple of str
        Extra keyword options the builder accepts.
    build : callable
        ``build(phase, context, batch, **options) -> Workload`` with arguments
        already checked for presence.
    """

    name: str
    family: Literal["decoder", "encoder", "cnn", "mlp"]
    description: str
    options: tuple[str, ...]
    build: Callable[..., Workload]


def _decoder(cfg_fn: Callable[[], Any]) -> Callable[..., Workload]:
    def build(phase: str, context: int, batch: int, all_logits: bool = False) -> Workload:
        return build_decoder(cfg_fn(), phase, context, batch, all_logits=all_logits)  # type: ignore[arg-type]

    return build


def _encoder(cfg_fn: Callable[[], Any]) -> Callable[..., Workload]:
    def build(phase: str, context: int, batch: int) -> Workload:
        return build_encoder(cfg_fn(), context, batch)

    return build


def _cnn(fn: Callable[..., Workload]) -> Callable[..., Workload]:
    def build(phase: str, context: None, batch: int, image_size: int = 224) -> Workload:
        return fn(batch, image_size)

    return build


def _mlp(sizes: tuple[int, ...]) -> Callable[..., Workload]:
    def build(phase: str, context: None, batch: int) -> Workload:
        return mlp(sizes, batch)

    return build


_ENTRIES = (
    ModelEntry("llama2-7b", "decoder", "LLaMA 2 7B (32 x d4096, SwiGLU 11008, MHA)", ("all_logits",),
               _decoder(lambda: LLAMA2_7B)),
    ModelEntry("opt-6.7b", "decoder", "OPT-6.7B (32 x d4096, ReLU MLP 16384, learned positions)",
               ("all_logits",), _decoder(lambda: OPT_6_7B)),
    ModelEntry("smollm2-135m", "decoder", "SmolLM2-135M (30 x d576, 9 q / 3 kv heads, tied embeddings)",
               ("all_logits",), _decoder(smollm2_135m)),
    ModelEntry("bert-base", "encoder", "BERT-base uncased (12 x d768) with pooler", (),
               _encoder(lambda: BERT_BASE)),
    ModelEntry("all-minilm-l6-v2", "encoder", "all-MiniLM-L6-v2 (6 x d384) with mean pooling", (),
               _encoder(all_minilm_l6_v2)),
    ModelEntry("resnet18", "cnn", "ResNet-18, torchvision layout", ("image_size",), _cnn(resnet18)),
    ModelEntry("resnet50", "cnn", "ResNet-50 v1.5, torchvision layout", ("image_size",), _cnn(resnet50)),
    ModelEntry("mlp-784-256-256-10", "mlp", "784-256-256-10 ReLU MLP (MNIST-sized)", (),
               _mlp((784, 256, 256, 10))),
)

#: Read-only registry of buildable models, by name.
WORKLOADS: Mapping[str, ModelEntry] = MappingProxyType({e.name: e for e in _ENTRIES})


def get_workload(
    name: str,
    phase: str | None = None,
    context: int | None = None,
    batch: int = 1,
    **options: Any,
) -> Workload:
    """Build a registered model's layer graph.

    Parameters
    ----------
    name : str
        A key of :data:`WORKLOADS`.
    phase : str or None
        Decoders: ``"prefill"`` or ``"decode"`` (required).  Others:
        ``"forward"`` or ``None``.
    context : int or None
        Decoders: prompt length (prefill) or cached tokens (decode); encoders:
        sequence length; must be ``None`` for CNNs and MLPs.
    batch : int, default 1
        Sequences or images.
    **options
        Family options: ``all_logits`` (decoders, prefill), ``image_size`` (CNNs).

    Returns
    -------
    Workload

    Raises
    ------
    ConfigError
        Unknown name (the message lists the known ones), missing or misplaced
        phase/context, unknown option, or a context past the model's maximum.
    """
    entry = WORKLOADS.get(name)
    if entry is None:
        raise ConfigError(f"unknown model {name!r}; known models: {', '.join(WORKLOADS)}")
    if entry.family == "decoder":
        if phase not in ("prefill", "decode"):
            raise ConfigError(f"{name}: phase must be 'prefill' or 'decode', not {phase!r}")
        if context is None:
            raise ConfigError(f"{name}: a context (tokens) is required for phase {phase!r}")
    else:
        if phase not in (None, "forward"):
            raise ConfigError(f"{name}: phase must be 'forward' (or omitted), not {phase!r}")
        phase = "forward"
        if entry.family == "encoder" and context is None:
            raise ConfigError(f"{name}: a context (sequence length) is required")
        if entry.family in ("cnn", "mlp") and context is not None:
            raise ConfigError(f"{name}: a {entry.family} takes no context, got {context!r}")
    for key in options:
        if key not in entry.options:
            allowed = ", ".join(entry.options) or "none"
            raise ConfigError(f"{name}: unknown option {key!r} (options: {allowed})")
    return entry.build(phase, context, batch, **options)


# --------------------------------------------------------------------------- YAML schema


#: Longest ``regex:`` a workload rule may have.
MAX_REGEX_LENGTH = 500

_QUANT_START = "*+?{"


def _short(value: object, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def nested_quantifier(pattern: str) -> str | None:
    """The first group that is repeated and contains a repetition or an alternation, else None.

    A static check against catastrophic backtracking (``(a+)+``, ``(a|a)*``, ``(x*y?)*``):
    Python's :mod:`re` has no matching timeout, so such patterns are refused on arrival.
    Escapes and character classes are skipped; ``?`` and ``{0,1}``/``{n}`` on a group are
    allowed (they do not repeat it).
    """
    stack: list[list] = []  # per open group: [start index, contains a quantifier or '|']
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if c == "\\":
            i += 2
            continue
        if c == "[":
            j = i + 1
            if j < n and pattern[j] == "^":
                j += 1
            if j < n and pattern[j] == "]":
                j += 1
            while j < n and pattern[j] != "]":
                j += 2 if pattern[j] == "\\" else 1
            i = j + 1
            continue
        if c == "(":
            stack.append([i, False])
        elif c == "|" and stack:
            stack[-1][1] = True
        elif c == ")" and stack:
            start, risky = stack.pop()
            repeats, width = _repeats(pattern, i + 1)
            if repeats and risky:
                return pattern[start:i + 1 + width]
            if stack and (risky or width):
                stack[-1][1] = True
            i += 1 + width
            continue
        elif c in _QUANT_START and stack:
            repeats, width = _repeats(pattern, i)
            if width and (repeats or c == "?") and stack:
                stack[-1][1] = stack[-1][1] or repeats
            i += max(width, 1)
            continue
        i += 1
    return None


def _repeats(pattern: str, i: int) -> tuple[bool, int]:
    """Whether the quantifier at ``i`` (if any) repeats more than once, and its width in characters."""
    if i >= len(pattern):
        return False, 0
    c = pattern[i]
    if c in "*+":
        width = 1
        repeats = True
    elif c == "?":
        return False, 2 if pattern[i + 1:i + 2] in ("?", "+") else 1
    elif c == "{":
        m = re.match(r"\{(\d*)(,?)(\d*)\}", pattern[i:])
        if not m:
            return False, 0
        low, comma, high = m.groups()
        width = m.end()
        repeats = bool(comma) and (high == "" or int(high) > 1)   # {n}: a fixed count, not ambiguous
    else:
        return False, 0
    if pattern[i + width:i + width + 1] in ("?", "+"):
        width += 1
    return repeats, width


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def _check_sparsity(value: object) -> object:
    if isinstance(value, bool) or isinstance(value, int):
        raise ValueError(
            f"sparsity {value!r} is a number: YAML 1.1 reads unquoted N:M such as 2:4 as a base-60 "
            "integer (2:4 -> 124); write it in quotes, e.g. '2:4'"
        )
    if value is None:
        return value
    try:
        parse_nm(value)  # type: ignore[arg-type]
    except FormatError as exc:
        raise ValueError(str(exc)) from None
    return value


class LayerSettings(_Frozen):
    """Sparsity and number formats for GEMM layers (unset fields change nothing).

    Parameters
    ----------
    sparsity : str or None
        ``"dense"`` or ``"N:M"`` (M in 2, 4, 8, 16; 1 <= N <= M), quoted in YAML.
    weight : NumberFormat or None
        Format of static weights (``int4``, ``int8``, ``ovp4``, ``ovp8``, ``fp16``).
    activation : NumberFormat or None
        Format of the streamed ``m x k`` operand.
    """

    sparsity: str | None = None
    weight: NumberFormat | None = None
    activation: NumberFormat | None = None

    @field_validator("sparsity", mode="before")
    @classmethod
    def _sparsity_ok(cls, value: object) -> object:
        return _check_sparsity(value)

    @property
    def nm(self) -> tuple[int, int] | None:
        """Parsed sparsity (``None`` for dense); only meaningful when ``sparsity`` is set."""
        return None if self.sparsity is None else parse_nm(self.sparsity)


class LayerRule(LayerSettings):
    """Settings for the GEMM layers whose names match a glob (``match``) or regex (``regex``).

    ``match`` uses :func:`fnmatch.fnmatchcase` on the whole name (``*`` also
    crosses dots); ``regex`` must match the whole name (:func:`re.fullmatch`).
    """

    match: str | None = None
    regex: str | None = None

    @field_validator("regex")
    @classmethod
    def _regex_compiles(cls, value: str | None) -> str | None:
        if value is not None:
            if len(value) > MAX_REGEX_LENGTH:
                raise ValueError(f"regex of {len(value)} characters is too long (at most {MAX_REGEX_LENGTH})")
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"regex {_short(value)} does not compile: {exc}") from None
            nested = nested_quantifier(value)
            if nested is not None:
                raise ValueError(f"regex {_short(value)}: the repeated group {nested!r} itself repeats or "
                                 f"alternates, which can make matching take exponential time; write a "
                                 f"pattern without nested quantifiers (e.g. 'blocks\\.\\d+\\.mlp\\..*')")
        return value

    @model_validator(mode="after")
    def _one_selector(self) -> LayerRule:
        if (self.match is None) == (self.regex is None):
            raise ValueError("a rule needs exactly one of 'match' (glob) or 'regex'")
        if self.sparsity is None and self.weight is None and self.activation is None:
            raise ValueError("the rule sets nothing (give sparsity, weight or activation)")
        return self

    @property
    def pattern(self) -> str:
        """The rule's selector as written, e.g. ``match 'blocks.*.mlp.*'``."""
        return f"match {self.match!r}" if self.match is not None else f"regex {self.regex!r}"

    def matches(self, name: str) -> bool:
        """Whether the rule selects the layer called ``name``."""
        if self.match is not None:
            return fnmatch.fnmatchcase(name, self.match)
        return re.fullmatch(self.regex, name) is not None  # type: ignore[arg-type]


class AttentionSettings(_Frozen):
    """Block-sparse prefill attention (:class:`sparsa.formats.attention_blocks.BlockPolicy`).

    Parameters
    ----------
    policy : {"dense", "local", "local+strided", "topk"}
        Which (query-block, key-block) pairs are computed.
    block : int, default 64
        Block edge in tokens.
    window, stride : int or None
        ``local`` (window) and ``local+strided`` (window and stride), in blocks.
    keep : float or None
        ``topk``: fraction of each query block's visible key blocks kept, in ``(0, 1]``.
    """

    policy: PolicyKind
    block: int = Field(default=DEFAULT_BLOCK, ge=1, strict=True)
    window: int | None = Field(default=None, ge=1, strict=True)
    stride: int | None = Field(default=None, ge=1, strict=True)
    keep: float | None = Field(default=None, gt=0, le=1, strict=True)

    @model_validator(mode="after")
    def _policy_ok(self) -> AttentionSettings:
        try:
            self.block_policy
        except FormatError as exc:
            raise ValueError(str(exc)) from None
        return self

    @property
    def block_policy(self) -> BlockPolicy:
        """The core policy object these settings describe."""
        return BlockPolicy(self.policy, self.block, self.window, self.stride, self.keep)


class BlockNSettings(_Frozen):
    """FlightLLM's per-block N (:mod:`sparsa.formats.nm_meta`, encoding ``block_n``) of the N:M layers,
    where the model's weights are not available to calibrate it: the assumed share of 16 x 16
    blocks at each N.

    Parameters
    ----------
    shares : dict of int to float
        ``{N: share}`` with N in :data:`~sparsa.formats.nm_meta.BLOCK_NS`; shares >= 0 summing to 1.
    source : str
        Where the assumption comes from (a measurement on another model, a paper).
    """

    shares: dict[int, float]
    source: str = Field(min_length=1)

    @field_validator("shares")
    @classmethod
    def _shares_ok(cls, shares: dict[int, float]) -> dict[int, float]:
        bad = [n for n in shares if n not in BLOCK_NS]
        if bad:
            raise ValueError(f"N must be one of {', '.join(map(str, BLOCK_NS))}, not {bad[0]!r}")
        if any(v < 0 for v in shares.values()) or abs(sum(shares.values()) - 1) > 1e-6:
            raise ValueError(f"shares must be >= 0 and sum to 1, not {dict(shares)!r}")
        return shares


class WorkloadSpec(_Frozen):
    """A workload file: which model, phase and sizes, and per-layer settings.

    Parameters
    ----------
    model : str
        A key of :data:`WORKLOADS`.
    phase : {"prefill", "decode", "forward"} or None
        Required for decoders.
    context : int or None
        See :func:`get_workload`.
    batch : int, default 1
    all_logits : bool or None
        Decoders in prefill: logits for every token.
    image_size : int or None
        CNNs: input resolution.
    kv_cache : NumberFormat or None
        Format of the KV cache (the ``k x n`` operand of attention GEMMs).
    defaults : LayerSettings
        Applied first to every static-weight GEMM.
    overrides : tuple of LayerRule
        Applied in order; each must match at least one GEMM layer.
    attention : AttentionSettings or None
        Block-sparse attention of a decoder's prefill (ignored in decode: one query row).
    block_n : BlockNSettings or None
        The assumed per-block N of the N:M layers (bytes of the ``block_n`` metadata encoding in
        docs; no datapath decodes it yet, so the estimator never chooses it).
    """

    model: str
    phase: Literal["prefill", "decode", "forward"] | None = None
    context: int | None = Field(default=None, ge=1, strict=True)
    batch: int = Field(default=1, ge=1, strict=True)
    all_logits: bool | None = Field(default=None, strict=True)
    image_size: int | None = Field(default=None, ge=1, strict=True)
    kv_cache: NumberFormat | None = None
    defaults: LayerSettings = LayerSettings()
    overrides: tuple[LayerRule, ...] = ()
    attention: AttentionSettings | None = None
    block_n: BlockNSettings | None = None

    def build_options(self) -> dict[str, Any]:
        """The family options that are set (``all_logits``, ``image_size``)."""
        return {k: v for k in ("all_logits", "image_size") if (v := getattr(self, k)) is not None}


# --------------------------------------------------------------------------- applying


def _merge(base: dict[str, Any], settings: LayerSettings) -> None:
    for field in ("sparsity", "weight", "activation"):
        value = getattr(settings, field)
        if value is not None:
            base[field] = value


def apply_spec(workload: Workload, spec: WorkloadSpec, origin: str = "<spec>") -> Workload:
    """Attach the spec's sparsity and formats to the workload's GEMM layers.

    Parameters
    ----------
    workload : Workload
        Graph built for ``spec.model`` (see :func:`get_workload`).
    spec : WorkloadSpec
        Settings to apply.
    origin : str
        File name (or other label) that error messages start with.

    Returns
    -------
    Workload
        A copy whose GEMM layers carry ``sparsity``, ``weight_format`` and
        ``act_format``; attention layers get ``weight_format = spec.kv_cache``, and
        ``kv_cache.element_bits`` follows it.

    Raises
    ------
    ConfigError
        A rule that matches no GEMM layer, or a rule giving N:M sparsity or a
        weight format to an attention GEMM (whose operand is the KV cache).
    """
    gemm_names = [g.name for g in workload.gemms()]
    for i, rule in enumerate(spec.overrides):
        if not any(rule.matches(n) for n in gemm_names):
            examples = ", ".join(repr(n) for n in gemm_names[:3])
            raise ConfigError(
                f"{origin}: overrides[{i}] ({rule.pattern}) matches no GEMM layer of {workload.name} "
                f"(names look like {examples}, ...)"
            )
    new_layers: list[Op] = []
    for op in workload.layers:
        if not isinstance(op, GemmLayer):
            new_layers.append(op)
            continue
        settings: dict[str, Any] = {}
        if op.weight_is_static:
            _merge(settings, spec.defaults)
        elif spec.defaults.activation is not None:
            settings["activation"] = spec.defaults.activation
        for i, rule in enumerate(spec.overrides):
            if not rule.matches(op.name):
                continue
            if not op.weight_is_static:
                if rule.nm is not None:
                    raise ConfigError(
                        f"{origin}: overrides[{i}] ({rule.pattern}) sets sparsity {rule.sparsity!r} on "
                        f"{op.name!r}, an {op.kind} GEMM whose second operand is the KV cache, not a weight"
                    )
                if rule.weight is not None:
                    raise ConfigError(
                        f"{origin}: overrides[{i}] ({rule.pattern}) sets weight {rule.weight.value!r} on "
                        f"{op.name!r}, an {op.kind} GEMM; its KV-cache format is the top-level 'kv_cache'"
                    )
            _merge(settings, rule)
        sparsity = settings.get("sparsity")
        new_layers.append(
            dataclasses.replace(
                op,
                sparsity=op.sparsity if sparsity is None else parse_nm(sparsity),
                weight_format=settings.get("weight", op.weight_format)
                if op.weight_is_static
                else (spec.kv_cache or op.weight_format),
                act_format=settings.get("activation", op.act_format),
            )
        )
    result = _with_attention(workload.replace_layers(tuple(new_layers)), spec, origin)
    if spec.kv_cache is not None and result.kv_cache is not None:
        result = dataclasses.replace(
            result, kv_cache=dataclasses.replace(result.kv_cache, element_bits=spec.kv_cache.bits)
        )
    return result


def _with_attention(workload: Workload, spec: WorkloadSpec, origin: str) -> Workload:
    """Attach ``spec.attention`` to the causal (prefill) attention GEMMs; decode is unchanged."""
    if spec.attention is None or workload.phase == "decode":
        return workload
    if workload.phase != "prefill":
        raise ConfigError(f"{origin}: attention: block-sparse attention applies to a decoder's prefill, "
                          f"not to {workload.name} (phase {workload.phase!r})")
    policy = spec.attention.block_policy
    return workload.replace_layers(tuple(
        dataclasses.replace(op, attention_blocks=policy) if isinstance(op, GemmLayer) and op.causal else op
        for op in workload.layers))


# --------------------------------------------------------------------------- loading


def _loc_text(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def _validation_message(origin: str, exc: ValidationError, raw: Mapping[str, Any],
                        document: YamlDocument | None = None) -> str:
    lines = []
    for err in exc.errors(include_url=False):
        lines.append(_error_line(origin, err, raw, document))
    return "\n".join(dict.fromkeys(lines))


def _error_line(origin: str, err: Mapping[str, Any], raw: Mapping[str, Any], document: YamlDocument | None) -> str:
    loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and "[" in p))
    msg = err["msg"].removeprefix("Value error, ")
    where = _loc_text(loc)
    if len(loc) >= 2 and loc[0] == "overrides" and isinstance(loc[1], int):
        rules = raw.get("overrides")
        if isinstance(rules, list | tuple) and loc[1] < len(rules) and isinstance(rules[loc[1]], Mapping):
            rule = rules[loc[1]]
            for key in ("match", "regex"):
                if key in rule:
                    where += f" (rule {key} {_short(rule[key])})"
                    break
    if err["type"] == "extra_forbidden" and loc:
        known = _fields_of(loc[:-1])
        hint = suggest(str(loc[-1]), known) if known else ""
        if not hint and len(loc) == 1 and suggest(str(loc[0]), LayerSettings.model_fields):
            hint = (f"{suggest(str(loc[0]), LayerSettings.model_fields)[:-1]} (under 'defaults:' or in a rule "
                    f"of 'overrides:')")
        msg += hint or (f" (allowed: {', '.join(known)})" if known else "")
    shown = ""
    if err["type"] not in ("value_error", "missing") and "input" in err and not isinstance(err["input"], dict):
        shown = f" (got {_short(err['input'])})"
    at = document.where(loc) if document is not None else origin
    return f"{at}: {where}: {msg}{shown}"


def _fields_of(loc: tuple[Any, ...]) -> list[str] | None:
    """Field names of the part of a workload file ``loc`` points into (for a did-you-mean)."""
    if not loc:
        return list(WorkloadSpec.model_fields)
    if loc[0] == "overrides" and len(loc) == 2:
        return list(LayerRule.model_fields)
    if loc[0] == "defaults" and len(loc) == 1:
        return list(LayerSettings.model_fields)
    if loc[0] == "attention" and len(loc) == 1:
        return list(AttentionSettings.model_fields)
    return None


def spec_from_mapping(raw: Mapping[str, Any], origin: str = "<spec>",
                      document: YamlDocument | None = None) -> WorkloadSpec:
    """Validate a parsed workload file into a :class:`WorkloadSpec`.

    Raises
    ------
    ConfigError
        One line per problem: ``origin[:line]: field (rule ...): problem (got value)``.
    """
    try:
        return WorkloadSpec.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_validation_message(origin, exc, raw, document)) from None


def preset_names() -> tuple[str, ...]:
    """Names (file stems) of the workload files in :data:`PRESET_DIR`."""
    if not PRESET_DIR.is_dir():
        return ()
    return tuple(sorted(p.stem for p in PRESET_DIR.glob("*.yaml")))


def _read_yaml(path: Path) -> YamlDocument:
    doc = read_yaml(path, "workload file")
    if not isinstance(doc.data, dict):
        kind = "an empty file" if doc.data is None else type(doc.data).__name__
        raise ConfigError(f"{path}: a workload file must be a mapping at top level, not {kind}")
    return doc


def load_workload(path_or_name: str | Path, **overrides: Any) -> Workload:
    """Load a workload file (or a preset, or a bare model name) and build its graph.

    Parameters
    ----------
    path_or_name : str or Path
        A YAML file; a preset name from ``configs/workloads`` (file stem); or a
        key of :data:`WORKLOADS` (then ``overrides`` give phase/context/...).
    **overrides
        Top-level fields of :class:`WorkloadSpec` that replace the file's
        (``context=512``, ``batch=4``, ``overrides=[...]``).

    Returns
    -------
    Workload
        With sparsity and formats attached (:func:`apply_spec`); ``source``
        names the file.

    Raises
    ------
    ConfigError
        Missing file, bad YAML, a schema violation, an unknown model, a context
        past the model's maximum, or a rule matching nothing; the message starts
        with the file name.
    """
    text = str(path_or_name)
    path: Path | None = None
    if isinstance(path_or_name, Path) or text.endswith((".yaml", ".yml")) or "/" in text:
        path = Path(path_or_name)
        if not path.is_file():
            raise ConfigError(f"workload file {text!r} does not exist")
    elif text in preset_names():
        path = PRESET_DIR / f"{text}.yaml"
    elif text not in WORKLOADS:
        presets = ", ".join(preset_names()) or "none"
        raise ConfigError(
            f"{text!r} is neither a workload file, a preset ({presets}) nor a model "
            f"({', '.join(WORKLOADS)})"
        )
    document = _read_yaml(path) if path is not None else None
    raw: dict[str, Any] = dict(document.data) if document is not None else {"model": text}
    raw.update(overrides)
    origin = str(path) if path is not None else f"<model {text}>"
    spec = spec_from_mapping(raw, origin, document)
    try:
        workload = get_workload(spec.model, spec.phase, spec.context, spec.batch, **spec.build_options())
    except SparsaError as exc:
        raise ConfigError(f"{origin}: {exc}") from None
    result = apply_spec(workload, spec, origin)
    if path is not None:
        result = dataclasses.replace(result, source=f"{result.source}; workload file {path}")
    return result
