"""Method names: how a PEFT student (``methods/peft/``) and distillers (``methods/distill/``, ``infosam/``) compose.

A method name is ``<peft>``, ``<peft>+<distiller>[+<distiller>...]`` or ``<distiller>[+<distiller>...]``
(= the default adapter student with those distillers), e.g. ``adapter``, ``lora+infosam``, ``vid``,
``tinysam+rm``, ``lora+tinysam+rm``. Several chained distillers form one
:class:`bench.contracts.composite.CompositeDistiller`; their options are then namespaced
(``distill.tinysam.*``, ``distill.rm.*``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Optional

from bench.config import ConfigError
from bench.config.protocols import method_defaults as protocol_method_defaults
from bench.contracts.composite import CompositeDistiller, composite_options
from bench.contracts.distill import DISTILLERS, Distiller
from bench.contracts.options import build_options
from bench.contracts.peft import PEFT_METHODS, PeftMethod

DEFAULT_STUDENT = "adapter"


@dataclass(frozen=True)
class MethodSpec:
    """A resolved method: the PEFT student and the chained distillers (none, one or several)."""

    name: str
    peft: str
    distillers: tuple[str, ...] = ()

    @property
    def distiller(self) -> Optional[str]:
        """The distiller part of the name (``"tinysam+rm"`` for a chain), or None."""
        return "+".join(self.distillers) or None

    @property
    def peft_cls(self) -> type[PeftMethod]:
        return PEFT_METHODS.get(self.peft)

    @property
    def distiller_cls(self) -> Optional[type[Distiller]]:
        if not self.distillers:
            return None
        if len(self.distillers) > 1:
            return CompositeDistiller
        return DISTILLERS.get(self.distillers[0])


def resolve_method(name: str) -> MethodSpec:
    """Resolve a method name; unknown or repeated parts raise with the valid choices."""
    parts = name.split("+")
    if len(parts) == 1:
        if name in PEFT_METHODS or name not in DISTILLERS:
            peft_name, distill_names = name, []
        else:
            peft_name, distill_names = DEFAULT_STUDENT, parts
    elif parts[0] in PEFT_METHODS:
        peft_name, distill_names = parts[0], parts[1:]
    elif parts[0] in DISTILLERS:
        peft_name, distill_names = DEFAULT_STUDENT, parts
    else:
        peft_name, distill_names = parts[0], parts[1:]  # raises below, naming the PEFT choices
    peft_choices, distill_choices = ", ".join(PEFT_METHODS.names()), ", ".join(DISTILLERS.names())
    if peft_name not in PEFT_METHODS:
        if len(parts) == 1:
            raise ConfigError(
                f"unknown method {name!r}; valid: a PEFT method ({peft_choices}), a distiller "
                f"({distill_choices}), or <peft>+<distiller>[+<distiller>...]"
            )
        raise ConfigError(f"unknown method {name!r}: no PEFT method {peft_name!r}; valid: {peft_choices}")
    unknown = [part for part in distill_names if part not in DISTILLERS]
    if unknown:
        raise ConfigError(f"unknown method {name!r}: no distiller {unknown[0]!r}; valid: {distill_choices}")
    repeated = sorted({d for d in distill_names if distill_names.count(d) > 1})
    if repeated:
        raise ConfigError(f"method {name!r} chains distiller(s) {repeated} more than once")
    return MethodSpec(name=name, peft=peft_name, distillers=tuple(distill_names))


def method_options(
    name: str, peft_values: dict[str, Any], distill_values: dict[str, Any], protocol: str = "clean"
) -> tuple[MethodSpec, Any, Any]:
    """Resolve ``name`` and validate its ``peft.*`` and ``distill.*`` options.

    ``protocol`` fills in its per-method defaults (:mod:`bench.config.protocols`, e.g. the public code's adapter
    init under ``infosam``) where ``peft_values`` sets none.

    Returns:
        The spec, the PEFT options dataclass, and the distiller options (None without a distiller;
        a :class:`bench.contracts.composite.CompositeOptions` for a chain).
    """
    spec = resolve_method(name)
    fields = {f.name for f in dataclasses.fields(spec.peft_cls.Options)}
    peft_values = protocol_method_defaults(protocol, spec.peft, dict(peft_values), fields)
    peft_options = build_options(spec.peft_cls.Options, peft_values, f"peft method {spec.peft!r} (in {name})")
    if not spec.distillers:
        if distill_values:
            raise ConfigError(f"distill options {sorted(distill_values)} given, but method {name!r} has no distiller")
        return spec, peft_options, None
    if len(spec.distillers) > 1:
        return spec, peft_options, composite_options(spec.distillers, dict(distill_values), name)
    cls = DISTILLERS.get(spec.distillers[0])
    return spec, peft_options, build_options(cls.Options, dict(distill_values), f"distiller {spec.distiller!r}")
