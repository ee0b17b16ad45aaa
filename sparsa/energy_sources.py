"""Where the numbers of an energy table come from: entry names and the default table's citations.

An *entry* is one number of the ``energy:`` section: ``mac_pj.<weight>x<activation>`` (one MAC
type), ``register_pj_per_byte``, ``sram_pj_per_byte``, ``offchip_pj_per_byte`` or ``static_w``.
A citation (``energy.sources``) cites one *value* of an entry: it counts only while the entry
still holds that value, so a number changed by an override or a sweep becomes unsourced until
its citation is updated.  Each estimate component is priced by exactly one entry
(:data:`COMPONENT_ENTRY`), so the energy resting on unsourced entries can be summed
(:func:`unsourced_energy`).  The citations, their location in the source and the arithmetic
from the source's figure to the entry are explained in docs/energy.md.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

__all__ = ["SCALAR_ENTRIES", "COMPONENT_ENTRY", "DEFAULT_SOURCES", "mac_entry", "unsourced_energy"]

#: The entries of an energy table that are one number each (the MAC energies are one entry per type).
SCALAR_ENTRIES: tuple[str, ...] = ("register_pj_per_byte", "sram_pj_per_byte", "offchip_pj_per_byte", "static_w")

#: The entry that prices each component of ``LayerEstimate.energy_pj`` (``mac`` is priced by the
#: layer's MAC type: :func:`mac_entry`).
COMPONENT_ENTRY: dict[str, str] = {"registers": "register_pj_per_byte", "sram": "sram_pj_per_byte",
                                   "offchip": "offchip_pj_per_byte", "static": "static_w"}

_HOROWITZ = "Horowitz, 'Computing's energy problem (and what we can do about it)', ISSCC 2014, energy table (45 nm, 0.9 V)"
_OCONNOR = ("O'Connor et al., 'Fine-Grained DRAM: Energy-Efficient DRAM for Extreme Bandwidth Systems', "
            "MICRO-50 2017, doi:10.1145/3123939.3124545")

#: Citations of the default table (``EnergyConfig()``): entry -> (value cited, citation).  Entries
#: of the default table missing here have no source (docs/energy.md says so next to each number).
DEFAULT_SOURCES: dict[str, tuple[float, str]] = {
    "mac_pj.int8xint8": (0.23, f"{_HOROWITZ}: 8-bit integer multiply 0.2 pJ + 8-bit integer add 0.03 pJ "
                               "= 0.23 pJ per MAC"),
    "sram_pj_per_byte": (1.25, f"{_HOROWITZ}: 64-bit read of an 8 KB SRAM 10 pJ; 10 pJ / 8 B = 1.25 pJ/B"),
    "offchip_pj_per_byte": (31.2, f"{_OCONNOR}: HBM2 3.9 pJ/bit; 3.9 pJ/bit x 8 = 31.2 pJ/B"),
}


def mac_entry(mac_key: str) -> str:
    """The entry name of the MAC energy of type ``mac_key`` (``'int4xint8'`` -> ``'mac_pj.int4xint8'``)."""
    if not isinstance(mac_key, str) or not mac_key:
        raise ValueError(f"mac_key must be a non-empty string like 'int8xint8', not {mac_key!r}")
    return f"mac_pj.{mac_key}"


def unsourced_energy(energy_pj: Mapping[str, float], citation: Callable[[str], str | None],
                     mac_key: str | None = None) -> dict[str, float]:
    """The part of ``energy_pj`` (component -> pJ) priced by entries without a citation.

    Parameters
    ----------
    energy_pj
        A layer's energy by component (``mac``, ``registers``, ``sram``, ``offchip``, ``static``).
    citation
        Entry name -> its citation, or None where the entry has none (``EnergyConfig.citation``).
    mac_key
        The layer's MAC type; needed when ``energy_pj`` has a ``mac`` component.

    Returns
    -------
    dict
        Entry name -> pJ, for the unsourced entries with non-zero energy.

    Raises
    ------
    ValueError
        A component no entry prices, or a ``mac`` component without ``mac_key``.
    """
    out: dict[str, float] = {}
    for component, pj in energy_pj.items():
        if component == "mac":
            if mac_key is None:
                raise ValueError("energy_pj has a 'mac' component but mac_key is None; pass the layer's MAC type")
            entry = mac_entry(mac_key)
        elif component in COMPONENT_ENTRY:
            entry = COMPONENT_ENTRY[component]
        else:
            raise ValueError(f"no energy entry prices component {component!r}; expected one of "
                             f"{['mac', *COMPONENT_ENTRY]}")
        if pj and citation(entry) is None:
            out[entry] = out.get(entry, 0.0) + pj
    return out
