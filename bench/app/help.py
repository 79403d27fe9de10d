"""``run_benchmark.py --help`` and ``list method=NAME``: the commands, the config groups and every method's
options with the help text of their options dataclasses (``field(metadata={"help": ...})``)."""

from __future__ import annotations

import dataclasses
from typing import Any

from bench.config import BenchConfig
from bench.contracts.distill import DISTILLERS
from bench.contracts.methods import resolve_method
from bench.contracts.peft import PEFT_METHODS

COMMANDS: dict[str, str] = {
    "run": "(default) expand the sweep into runs, skip complete ones, execute the rest, print the table",
    "list": "registered methods, distillers, datasets, backbones, protocols and sweeps; list method=NAME: options",
    "report": "rebuild the tables of a sweep from its complete runs",
    "status": "done / running / failed / interrupted / missing for every run of a sweep",
    "params": "trainable parameters of every method (CSV + LaTeX): params backbone=NAME",
    "prepare": "check a downloaded dataset, read-only: prepare dataset=NAME [src=PATH]",
    "score": "score predictions made anywhere: score protocol=NAME pred=DIR gt=DIR",
    "download": "official checkpoints and public dataset archives: download backbone=NAME | dataset=NAME",
    "predict": "masks from a fine-tuned run: predict run=RUN_DIR images=DIR boxes=CSV out=DIR",
    "export": "a self-contained checkpoint of a fine-tuned run: export run=RUN_DIR out=FILE [format=pt|onnx|hf]",
    "plan": "steps, FLOPs, GPU-hours and wall time of a sweep, nothing run: plan sweep=NAME [gpu=h100|h200|a100|cpu]",
}

GRAMMAR = """\
overrides (Hydra's override grammar):
  key=value          train.epochs=2   data.root='my data'   peft.blocks=[2,3]   launcher=inline
  key=a,b,c          a sweep: seeds=0,1,2  methods=adapter,lora  (on a scalar key a grid axis: train.lr=1e-4,2e-4)
  +key=value         add a key not set yet (+peft.r=8);   ~key: back to the default / out of peft, distill
  key=               an error: key=null for none, key='' for an empty string"""


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return "required"


def options_lines(options_cls: type, indent: str = "    ") -> list[str]:
    """One line per option: ``name = default  help``; ``(no options)`` for an empty dataclass."""
    if not dataclasses.is_dataclass(options_cls) or not dataclasses.fields(options_cls):
        return [f"{indent}(no options)"]
    lines = []
    for f in dataclasses.fields(options_cls):
        text = f.metadata.get("help", "")
        lines.append(f"{indent}{f.name} = {_default(f)!r}" + (f"  {text}" if text else ""))
    return lines


def method_help(name: str) -> str:
    """The options of method ``name`` (``lora``, ``vid``, ``lora+tinysam+rm`` ...), as ``peft.*`` / ``distill.*``."""
    spec = resolve_method(name)
    lines = [
        f"method {name}: PEFT {spec.peft}"
        + (f" + distiller(s) {', '.join(spec.distillers)}" if spec.distillers else "")
    ]
    peft_cls = PEFT_METHODS.get(spec.peft)
    summary = (peft_cls.__doc__ or "").strip().splitlines()[:1]
    lines.append(f"  peft.* ({'; '.join([spec.peft, *summary])})")
    lines += options_lines(peft_cls.Options)
    for part in spec.distillers:
        prefix = f"distill.{part}.*" if len(spec.distillers) > 1 else "distill.*"
        lines.append(f"  {prefix} ({part})")
        lines += options_lines(DISTILLERS.get(part).Options)
    return "\n".join(lines)


def _key_text(f: dataclasses.Field) -> str:
    """A schema key as ``--help`` lists it: its name, then its fixed choices if any (``optimizer{adam|adamw}``)."""
    choices = f.metadata.get("choices")
    return f"{f.name}{{{'|'.join(choices)}}}" if choices else f.name


def config_groups() -> list[str]:
    """The top-level keys of the schema: the groups (``train.*`` ...) with their fields (and fixed choices), then
    the plain keys."""
    groups, plain = [], []
    for f in dataclasses.fields(BenchConfig):
        if f.name == "explicit_keys":
            continue
        default = _default(f)
        if dataclasses.is_dataclass(default):
            names = ", ".join(_key_text(g) for g in dataclasses.fields(default))
            groups.append(f"  {f.name + '.*':<11} {names}")
        else:
            plain.append(f.name)
    return groups + [f"  keys        {', '.join(plain)}"]


def help_text() -> str:
    lines = [
        "usage: python run_benchmark.py [COMMAND] [sweep=NAME] [key=value ...]",
        "",
        "commands:",
        *(f"  {name:<9} {text}" for name, text in COMMANDS.items()),
        "",
        "config groups (bench/config/schema.py; python run_benchmark.py list shows the registered names):",
        *config_groups(),
        "",
        GRAMMAR,
        "",
        "methods: <peft>, <distiller> (= adapter student + distiller) or <peft>+<distiller>[+<distiller>...]",
    ]
    for name in PEFT_METHODS.names():
        lines.append(f"  peft {name}:")
        lines += options_lines(PEFT_METHODS.get(name).Options)
    for name in DISTILLERS.names():
        lines.append(f"  distiller {name}:")
        lines += options_lines(DISTILLERS.get(name).Options)
    return "\n".join(lines)
