"""``run_benchmark.py export run=RUN_DIR out=FILE``: a self-contained checkpoint of a fine-tuned run.

Methods whose change folds into the pretrained layers (``lora``: ``W + (α/r)·B A`` into ``attn.qkv``;
``ssf``: ``γ ⊙ (W x + b) + β`` into the preceding Linear / LayerNorm; ``bitfit``, ``decoder_only``,
``zero_shot``: nothing to fold) are exported as the plain state dict of the official model:

* SAM ViT (``sam_vit_*``, ``tiny_sam``): the ``Sam`` state dict that
  ``segment_anything.sam_model_registry[...](checkpoint=FILE)`` loads;
* SAM 2.1 (``sam2_hiera_*``, ``tiny_sam2``): ``{"model": SAM2Base state dict}`` as ``build_sam2`` loads
  it (the video modules keep their pretrained values);
* TinyViT SAMs (``litemedsam``, ``mobilesam``): the plain state dict their checkpoints use
  (``backbone.checkpoint=FILE`` loads it strictly).

Other methods add modules the official classes do not have: the file then holds the method's trained
tensors and the run config (``format: samfit-peft``), and :func:`rebuild` (``from bench.use.export import
rebuild; model = rebuild(FILE)``) builds the pretrained backbone, applies the method and loads them.
Every export is checked before it is written: the merged model is rebuilt from the file's tensors and
must give the same logits as the run's model (max |diff| printed).
"""

from __future__ import annotations

import copy
import logging
from pathlib import Path
from typing import Any, Optional

import torch
from torch import nn

from bench.backbones import Backbone, Prompts, build_backbone
from bench.config import ConfigError, run_from_dict, to_dict
from bench.config.overrides import command_args
from bench.contracts.peft import PEFT_METHODS, Foldable
from bench.contracts.weights import resolve_checkpoint
from bench.fileio import atomic_torch_save
from bench.runs.runner import build_student
from bench.tasks.base import task_from_record
from bench.use.trained import TrainedModel, load_trained

log = logging.getLogger(__name__)

PEFT_FORMAT = "samfit-peft"
# refusal threshold of the self-check, relative to the largest logit: a folding bug gives O(1) differences,
# float32 re-association of a correct fold ~1e-7 of the logits' scale
RELATIVE_TOLERANCE = 1e-5
FORMATS = ("pt", "onnx", "hf")  # export format=: the checkpoint file (default), two ONNX graphs, a SamModel folder
TASK_KEYS = ("task", "classes", "ignore_index", "report_metrics")  # a multi-class run's record rebuild reads


def _fold(module: nn.Module) -> Optional[nn.Module]:
    """The plain layer equal to a PEFT wrapper (:class:`bench.contracts.peft.Foldable`), or None."""
    return module.fold() if isinstance(module, Foldable) else None


def merge(model: Backbone) -> Backbone:
    """A copy of ``model`` with every LoRA / SSF wrapper folded into its layer (same outputs)."""
    merged = copy.deepcopy(model)
    wrappers = [name for name, m in merged.named_modules() if _fold(m) is not None and name]
    for name in sorted(wrappers, key=lambda n: -n.count(".")):  # innermost first
        parent_name, _, child = name.rpartition(".")
        parent = merged.get_submodule(parent_name) if parent_name else merged
        folded = _fold(getattr(parent, child))
        setattr(parent, child, folded)
    return merged


def probe_images(size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Two fixed random model inputs (2, 3, S, S) and their boxes (2, 4) in the input frame."""
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(0))
    return x, torch.tensor([[0.1, 0.2, 0.7, 0.9], [0.3, 0.1, 0.9, 0.6]]) * size


def logits(model: Backbone, x: torch.Tensor, boxes: torch.Tensor, blocks: tuple[int, ...] = ()) -> torch.Tensor:
    """Low-resolution logits (B, 1, h, w) of ``model`` for inputs ``x`` and ``boxes``; a multi-class model's
    (``task_head``) promptless query masks (B, Q, h, w) and class logits, flattened and concatenated."""
    with torch.no_grad():
        z, feats = model.encode(x, blocks=blocks)
        head = getattr(model, "task_head", None)
        if head is not None:  # a semantic run: every query's mask and class logits
            out = model.decode_queries(z, feats)
            cls = head.class_logits(out.tokens)
            return out.masks.flatten(1) if cls is None else torch.cat([out.masks.flatten(1), cls.flatten(1)], 1)
        return model.decode(z, Prompts(boxes=boxes), feats).logits


def _probe(a: Backbone, b: Backbone, blocks: tuple[int, ...] = ()) -> tuple[float, float]:
    """(max |logits difference| of two models on :func:`probe_images`, the tolerance it must stay under)."""
    x, boxes = probe_images(a.img_size)
    want = logits(a, x, boxes, blocks)
    diff = float((want - logits(b, x, boxes, blocks)).abs().max())
    return diff, RELATIVE_TOLERANCE * max(1.0, float(want.abs().max()))


def export_trained(trained: TrainedModel, out: str | Path) -> str:
    """Write the export of ``trained`` to ``out`` (see the module docstring); returns the report text."""
    out = Path(out)
    model = trained.model
    plain_ok = trained.task is None  # a multi-class head and its mask tokens are not in the official classes
    if plain_ok and PEFT_METHODS.meta(trained.peft_name).get("mergeable") and model.decoder_extension is None:
        merged = merge(model)
        plain = merged.state_dict()
        if model.family == "sam2":
            payload: Any = {"model": merged.official_state(resolve_checkpoint(trained.run.backbone))}
            kind = "SAM2Base state dict under 'model' (sam2.build_sam.build_sam2 loads it)"
        else:
            payload = plain
            kind = (
                "plain Sam state dict (segment_anything.sam_model_registry loads it)"
                if model.family == "sam"
                else "plain state dict (backbone.checkpoint=FILE loads it)"
            )
        check = build_backbone(_plain_config(trained))
        check.load_state_dict(plain, strict=True)
        check.eval()
        diff, tol = _probe(model, check)
    else:
        trainable = torch.load(trained.run_dir / "checkpoint.pt", map_location="cpu", weights_only=True)
        payload = {
            "format": PEFT_FORMAT,
            "run_config": to_dict(trained.run),
            "trainable": trainable["parts"]["student"],
            "rebuild": "from bench.use.export import rebuild; model = rebuild(FILE)",
        }
        if trained.task is not None:  # what rebuild needs to shape the decoder and attach the head
            payload["task_record"] = {k: trained.record[k] for k in TASK_KEYS if k in (trained.record or {})}
        kind = (
            f"{trained.peft_name} tensors + run config; rebuild: from bench.use.export import rebuild; rebuild('{out}')"
        )
        out.parent.mkdir(parents=True, exist_ok=True)
        atomic_torch_save(out, payload)
        blocks = tuple(trained.peft.feature_blocks(model))
        diff, tol = _probe(model, rebuild(out), blocks)
        if diff > tol:
            out.unlink()
            raise ConfigError(f"export: the rebuilt model differs from the run's by {diff:.2e}; nothing written")
        return _report(out, kind, diff)
    if diff > tol:
        raise ConfigError(f"export: the merged model differs from the run's by {diff:.2e} > {tol:.1e}; nothing written")
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_torch_save(out, payload)
    return _report(out, kind, diff)


def _plain_config(trained: TrainedModel):
    """The run's backbone config with random weights: the merged tensors replace every weight anyway."""
    import dataclasses

    cfg = trained.run.backbone
    if cfg.name == "litemedsam":  # bundled weights, no random variant
        return cfg
    return dataclasses.replace(cfg, checkpoint=None, random_init=True)


def _report(out: Path, kind: str, diff: float) -> str:
    return f"{out}\n  {kind}\n  max |logits diff| vs the run's model: {diff:.3g}"


def rebuild(path: str | Path, checkpoints_dir: Optional[str] = None) -> Backbone:
    """The fine-tuned model of a ``samfit-peft`` export (needs the pretrained backbone weights)."""
    payload = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(payload, dict) or payload.get("format") != PEFT_FORMAT:
        raise ConfigError(f"{path} is not a {PEFT_FORMAT} export (a merged export loads with the official loader)")
    run = run_from_dict(payload["run_config"])
    if checkpoints_dir:
        run.backbone.checkpoints_dir = checkpoints_dir
    model, _, _ = build_student(run, task_from_record(payload.get("task_record", {}), run))
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, value in payload["trainable"].items():
            params[name].copy_(value)
    model.requires_grad_(False)
    return model.eval()


def export_as(trained: TrainedModel, out: str | Path, format: str = "pt") -> str:
    """Export ``trained`` in ``format`` (:data:`FORMATS`): ``pt`` the checkpoint file above, ``onnx`` two ONNX
    graphs (:mod:`bench.use.export_onnx`), ``hf`` a ``transformers.SamModel`` folder (:mod:`bench.use.export_hf`)."""
    if format not in FORMATS:
        raise ConfigError(f"export: format={format!r} is not one of {', '.join(FORMATS)}")
    if format == "pt":
        return export_trained(trained, out)
    if format == "onnx":
        from bench.use.export_onnx import export_onnx

        return export_onnx(merge(trained.model), tuple(trained.peft.feature_blocks(trained.model)), out)
    from bench.use.export_hf import export_hf

    if trained.task is not None:
        raise ConfigError("export format=hf: multi-class runs have a class head SamModel does not have; use format=pt")
    mergeable = bool(PEFT_METHODS.meta(trained.peft_name).get("mergeable"))
    if not mergeable or trained.model.decoder_extension is not None:
        folding = ", ".join(n for n in PEFT_METHODS.names() if PEFT_METHODS.meta(n).get("mergeable"))
        raise ConfigError(
            f"export format=hf: method {trained.peft_name!r} adds modules transformers' SamModel does not have; "
            f"format=hf takes the methods that fold into plain layers ({folding}); format=onnx or format=pt "
            "export any method"
        )
    return export_hf(merge(trained.model), out)


def export_command(args: list[str]) -> str:
    """``export run=RUN_DIR out=FILE|DIR [format=pt|onnx|hf] [checkpoints_dir=DIR]``."""
    pairs = command_args(args)
    run_dir, out = pairs.pop("run", ""), pairs.pop("out", "")
    checkpoints_dir = pairs.pop("checkpoints_dir", None)
    format = pairs.pop("format", "pt")
    if pairs:
        raise ConfigError(
            f"export: unknown key(s) {', '.join(sorted(pairs))}; valid: run, out, format, checkpoints_dir"
        )
    if format not in FORMATS:
        raise ConfigError(f"export: format={format!r} is not one of {', '.join(FORMATS)}")
    if not run_dir or not out:
        raise ConfigError("export needs run=RUN_DIR and out=FILE (out=DIR for format=onnx / hf)")
    return export_as(load_trained(run_dir, checkpoints_dir), out, format)
