"""Methods: PEFT students (``peft/``), distillers (``distill/``, ``infosam/``) and how names compose.

A method name is ``<peft>``, ``<peft>+<distiller>`` or ``<distiller>`` alone (= the default adapter
student with that distiller), e.g. ``adapter``, ``lora+infosam``, ``vid``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from bench.config import ConfigError
from bench.registry import UnknownNameError

from . import distill, infosam, peft  # noqa: F401  (registration)
from .distill._base import DISTILLERS, Distiller, build_options
from .peft._base import PEFT_METHODS, PeftMethod

DEFAULT_STUDENT = "adapter"


@dataclass(frozen=True)
class MethodSpec:
    """A resolved method: the PEFT student and the optional distiller."""

    name: str
    peft: str
    distiller: Optional[str] = None

    @property
    def peft_cls(self) -> type[PeftMethod]:
        return PEFT_METHODS.get(self.peft)

    @property
    def distiller_cls(self) -> Optional[type[Distiller]]:
        return DISTILLERS.get(self.distiller) if self.distiller else None


def resolve_method(name: str) -> MethodSpec:
    """Resolve a method name; unknown parts raise with the valid choices."""
    if "+" in name:
        peft_name, _, distill_name = name.partition("+")
    elif name in PEFT_METHODS or name not in DISTILLERS:
        peft_name, distill_name = name, ""
    else:
        peft_name, distill_name = DEFAULT_STUDENT, name
    try:
        PEFT_METHODS.get(peft_name)
        if distill_name:
            DISTILLERS.get(distill_name)
    except UnknownNameError as err:
        raise ConfigError(
            f"unknown method {name!r}: {err}. Valid: {', '.join(method_names())} or any <peft>+<distiller>"
        ) from None
    return MethodSpec(name=name, peft=peft_name, distiller=distill_name or None)


def method_names() -> list[str]:
    """Names listed by ``run_benchmark.py list``: every PEFT, every distiller, default compositions."""
    return PEFT_METHODS.names() + [d for d in DISTILLERS.names() if d not in PEFT_METHODS]


def method_options(
    name: str, peft_values: dict[str, Any], distill_values: dict[str, Any]
) -> tuple[MethodSpec, Any, Any]:
    """Resolve ``name`` and validate its ``peft.*`` and ``distill.*`` options.

    Returns:
        The spec, the PEFT options dataclass, and the distiller options (None without a distiller).
    """
    spec = resolve_method(name)
    peft_options = build_options(spec.peft_cls.Options, dict(peft_values), f"peft method {spec.peft!r} (in {name})")
    cls = spec.distiller_cls
    if cls is None:
        if distill_values:
            raise ConfigError(f"distill options {sorted(distill_values)} given, but method {name!r} has no distiller")
        return spec, peft_options, None
    return spec, peft_options, build_options(cls.Options, dict(distill_values), f"distiller {spec.distiller!r}")
