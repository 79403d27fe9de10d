"""Command-line overrides in Hydra's override grammar (``hydra.core.override_parser``).

The grammar, on top of the sweep's own expansion (:func:`bench.runs.sweep.run_configs`):

* ``key=value`` sets a key; values are typed (``2``, ``2e-4``, ``true``, ``null``, ``[a,b]``, ``{k: v}``),
  ``'quoted strings'`` keep commas, spaces and ``=``;
* ``key=a,b,c`` is a sweep: on a list key (``methods``, ``datasets``, ``seeds``) it is the list, on any other
  key a grid axis (``train.lr=1e-4,2e-4`` = ``grid={train.lr: [1e-4, 2e-4]}``);
* ``+key=value`` adds a key that is not set yet (an option in the free-form ``peft``/``distill`` dicts);
* ``~key`` removes a key of a free-form dict, or resets a schema key to its default;
* ``key=`` (no value) is an error: write ``key=null`` for none or ``key=''`` for an empty string.

Arguments of the commands that are not config overrides (``run=DIR``, ``url=URL`` ...) are taken
verbatim by :func:`command_args`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import OverrideType
from hydra.errors import HydraException

from bench.config import ConfigError

ACTIONS = {
    OverrideType.CHANGE: "set",
    OverrideType.FORCE_ADD: "set",
    OverrideType.ADD: "add",
    OverrideType.DEL: "delete",
}


@dataclass(frozen=True)
class Change:
    """One parsed override.

    Attributes:
        key: Dotted key (``train.epochs``).
        value: The typed value; a list for a sweep (``a,b,c``); None for ``~key``.
        action: ``"set"`` (``key=v``, ``++key=v``), ``"add"`` (``+key=v``) or ``"delete"`` (``~key``).
        sweep: Whether the value was written as a sweep ``a,b,c``.
        text: The argument as typed, for error messages.
    """

    key: str
    value: Any
    action: str = "set"
    sweep: bool = False
    text: str = ""


def parse_changes(args: list[str]) -> list[Change]:
    """Parse every argument; a malformed one raises ConfigError naming it and Hydra's reason."""
    parser = OverridesParser.create()
    changes = []
    for arg in args:
        try:
            override = parser.parse_override(arg)
        except HydraException as err:
            reason = str(err).splitlines()[-1].strip() if str(err).strip() else type(err).__name__
            raise ConfigError(
                f"malformed override {arg!r}: {reason} (expected key=value, e.g. train.epochs=2)"
            ) from None
        if override.package is not None:
            raise ConfigError(f"override {arg!r}: @package is not supported here")
        key = override.key_or_group
        if not key:
            raise ConfigError(f"malformed override {arg!r}: no key (expected key=value, e.g. train.epochs=2)")
        if override.is_sweep_override():
            if not override.is_discrete_sweep():
                raise ConfigError(f"override {arg!r}: only a list of values sweeps (e.g. {key}=a,b,c)")
            changes.append(Change(key, list(override.sweep_iterator()), ACTIONS[override.type], True, arg))
            continue
        value = override.value()
        if override.type != OverrideType.DEL and value == "" and override.get_value_element_as_str() == "":
            raise ConfigError(f"override {key}= has no value (use {key}=null for none, {key}='' for an empty string)")
        changes.append(Change(key, value, ACTIONS[override.type], False, arg))
    return changes


def command_args(args: list[str]) -> dict[str, str]:
    """``key=value`` arguments of a command (paths, URLs, run folders), each value verbatim after the first
    ``=``; a word without ``=`` is an error naming it."""
    out: dict[str, str] = {}
    for arg in args:
        key, sep, value = arg.partition("=")
        if not sep or not key or key != key.strip():
            raise ConfigError(f"malformed argument {arg!r}: expected key=value (e.g. run=runs/NAME)")
        out[key] = value
    return out
