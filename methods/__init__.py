"""Methods: PEFT students (``peft/``), distillers (``distill/``, ``infosam/``) and how names compose.

A method name is ``<peft>``, ``<peft>+<distiller>`` or ``<distiller>`` alone (= the default adapter
student with that distiller), e.g. ``adapter``, ``lora+infosam``, ``vid``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from bench.config import ConfigError
from bench.registry import UnknownNameError

from . import distill, infosam, peft  # noqa: F401  (registration)
from .distill._base import DISTILLERS, Distiller
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
