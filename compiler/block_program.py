"""Where a compiled block or model lives: the device plan its programs share, and one block's program.

:class:`DevicePlan` holds the device memory's regions - made once, shared by every program
compiled against it (the blocks of a model and its steps) - and the compiled datapath program of
every weight image by the image's address.  :class:`BlockProgram` is one compiled block
(:func:`sparsa.compiler.block.compile_block`): its instructions, its plan and where its input,
output and KV cache are.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from sparsa.compiler.datapath import compile_gemm
from sparsa.config import AcceleratorConfig
from sparsa.datapath import matrix_datapath
from sparsa.errors import ShapeError
from sparsa.machine.isa import encode_machine
from sparsa.machine.memory import DmAllocator, DmRegion, bytes_fx, fx_bytes
from sparsa.models.block.reference import KVCache
from sparsa.models.block.spec import BlockWeights

__all__ = ["DevicePlan", "BlockProgram"]


class DevicePlan:
    """The device memory of compiled programs: regions made once and shared by every program
    compiled against it (the blocks of a model, its decode steps), and the compiled datapath
    program of every weight image, by the image's DM address (the schedule its formers follow)."""

    def __init__(self) -> None:
        self.dm = DmAllocator()
        self.programs: dict[int, object] = {}
        self._schedules: dict[tuple, object] = {}

    def region(self, name: str, data: "bytes | int") -> DmRegion:
        """The region ``name``, made with ``data`` (bytes, or a size of zero bytes) the first time."""
        return self.dm.regions.get(name) or self.dm.region(name, data)

    def schedule(self, config: AcceleratorConfig, shape: tuple[int, int], m_rows: int):
        """The compiled program of a dense ``shape`` GEMM for ``m_rows`` rows, compiled on zeros once: a
        dense GEMM's schedule does not depend on its values (the KV cache's GEMMs)."""
        key = (shape, m_rows)
        if key not in self._schedules:
            self._schedules[key] = compile_gemm(config, np.zeros(shape, dtype=np.int64), m_rows, "dense", prune=False)
        return self._schedules[key]

    def weight_image(self, name: str, config: AcceleratorConfig, build) -> tuple[int, object]:
        """``(address, program)`` of the weight image ``name``: ``build()`` compiles the program and
        its image is packed into DM the first time; later calls reuse both (every step of a model)."""
        if name in self.dm.regions:
            addr = self.dm.regions[name].addr
            return addr, self.programs[addr]
        prog = build()
        return self.image(name, config, prog), prog

    def image(self, name: str, config: AcceleratorConfig, prog) -> int:
        """The DM address of ``prog``'s weight image (packed and stored the first time ``name`` is asked for)."""
        if name not in self.dm.regions:
            dp = matrix_datapath(config)
            nbytes = -(-dp.stream_beat_bits(config)["weights"] // 8)
            self.dm.region(name, b"".join(int(dp.pack_weight_beat(config, v, i)).to_bytes(nbytes, "little")
                                          for v, i in prog.weight_beats()))
            self.programs[self.dm.regions[name].addr] = prog
        return self.dm.regions[name].addr


@dataclass
class BlockProgram:
    """A compiled block: machine instructions, the device-memory image and where things are.

    Attributes
    ----------
    config : AcceleratorConfig
        The machine (with its ``sfu:``).
    weights : BlockWeights
        The block.
    phase : str
        ``prefill`` or ``decode``.
    tokens, start : int
        Tokens run (T) and the position of the first (the cached positions before it).
    instructions : list
        The machine instructions, ending with HALT.
    plan : DevicePlan
        The device memory: regions and initial image (weights, constants; inputs and cache zero
        until :meth:`device_memory` fills them), and the program of every weight image.
    vmem_peak : int
        VMEM words the program uses at most.
    """

    config: AcceleratorConfig
    weights: BlockWeights
    phase: str
    tokens: int
    start: int
    instructions: list = field(default_factory=list)
    plan: DevicePlan = field(default_factory=DevicePlan)
    vmem_peak: int = 0

    @property
    def dm(self) -> DmAllocator:
        """The device memory's regions and initial image."""
        return self.plan.dm

    @property
    def programs(self) -> dict:
        """The compiled datapath program of every weight image, by its DM address."""
        return self.plan.programs

    def words(self) -> list[int]:
        """The instruction stream."""
        return encode_machine(self.instructions)

    @property
    def positions(self) -> int:
        """Positions cached after the block has run."""
        return self.start + self.tokens

    def region(self, name: str) -> DmRegion:
        """A DM region by name (``x_in``, ``x_out``, ``k{h}``, ``v{h}``, ...)."""
        return self.dm.regions[name]

    def read_output(self, dm: "bytes | bytearray") -> np.ndarray:
        """The block's fx output ``[T, hidden]`` a run left in device memory ``dm``."""
        reg = self.region("x_out")
        return bytes_fx(dm[reg.addr:reg.addr + reg.size], (self.tokens, self.weights.spec.hidden))

    def read_cache(self, dm: "bytes | bytearray") -> KVCache:
        """The KV cache of the ``start + T`` positions a run left in device memory ``dm``."""
        s, n = self.weights.spec, self.positions * self.weights.spec.head_dim

        def head(kind: str, h: int) -> np.ndarray:
            reg = self.region(f"{kind}{h}")
            return np.frombuffer(bytes(dm[reg.addr:reg.addr + n]), dtype=np.int8).reshape(self.positions, s.head_dim)

        return KVCache(*(np.stack([head(kind, h) for h in range(s.kv_heads)]) for kind in ("k", "v")))

    def device_memory(self, x: np.ndarray, k_cache: "np.ndarray | None" = None,
                      v_cache: "np.ndarray | None" = None) -> bytearray:
        """The DM image with the input ``x [T, hidden]`` (fx) and the cached positions' codes
        ``[kv_heads, start, head_dim]`` written in."""
        s = self.weights.spec
        x = np.asarray(x, dtype=np.int64)
        if x.shape != (self.tokens, s.hidden):
            raise ShapeError(f"block input must be fx [{self.tokens}, {s.hidden}], not shape {x.shape}")
        image = bytearray(self.dm.image)
        reg = self.region("x_in")
        image[reg.addr:reg.addr + reg.size] = fx_bytes(x)
        for name, cache in (("k", k_cache), ("v", v_cache)):
            want = (s.kv_heads, self.start, s.head_dim)
            c = np.zeros(want, np.int64) if cache is None and not self.start else np.asarray(cache)
            if c.shape != want:
                raise ShapeError(f"{name.upper()} cache must be codes {list(want)}, not shape {c.shape}")
            for h in range(s.kv_heads):
                reg = self.region(f"{name}{h}")
                data = c[h].astype(np.int8).tobytes()
                image[reg.addr:reg.addr + len(data)] = data
        return image
