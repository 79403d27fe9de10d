"""Memory switches and measurements: activation checkpointing, gradient accumulation, peak memory.

* ``train.grad_checkpoint=true`` recomputes the activations of every trainable encoder block in the backward
  pass instead of keeping them (``torch.utils.checkpoint``, non-reentrant): the same gradients for about one
  more encoder forward, and the memory of a 1024-px ViT-L/H with a teacher beside it.
* ``train.grad_accumulation=K`` splits each batch into K micro-batches and sums their gradients before one
  optimizer step; only for losses that are means over samples (the structure loss). A distiller whose loss is
  over the batch (InfoSAM's B×B Gram matrices, PKT, SemCKD ...) would see K smaller batches and compute a
  different loss, so it is refused unless its class declares ``per_sample_loss = True``.
* :func:`peak_memory_mb`: CUDA's max allocated memory on a GPU, the process's peak RSS on the CPU.
"""

from __future__ import annotations

import logging
import resource
from typing import Any, Optional

import torch
from torch.utils.checkpoint import checkpoint

from bench.config import ConfigError

log = logging.getLogger(__name__)


def checkpoint_trainable_blocks(model: Any) -> int:
    """Activation checkpointing of every encoder block with a trainable parameter (in place); returns how many.
    Forward hooks on the blocks (the features distillers read) still fire: the block's ``__call__`` is kept."""
    n = 0
    for block in model.encoder_blocks():
        if not any(p.requires_grad for p in block.parameters()):
            continue
        forward = block.forward

        def checkpointed(*args: Any, _forward: Any = forward, **kwargs: Any) -> Any:
            if torch.is_grad_enabled():
                return checkpoint(_forward, *args, use_reentrant=False, **kwargs)
            return _forward(*args, **kwargs)

        block.forward = checkpointed
        n += 1
    log.info("activation checkpointing on %d trainable encoder blocks", n)
    return n


def check_accumulation(steps: int, batch_size: int, distiller: Optional[type], method: str) -> None:
    """Raise :class:`ConfigError` unless ``train.grad_accumulation=steps`` is valid for this method."""
    if steps < 1:
        raise ConfigError("train.grad_accumulation must be >= 1")
    if steps == 1:
        return
    if batch_size % steps:
        raise ConfigError(f"train.grad_accumulation={steps} does not split train.batch_size={batch_size} evenly")
    if distiller is not None and not getattr(distiller, "per_sample_loss", False):
        raise ConfigError(
            f"train.grad_accumulation={steps} refused for {method}: its distiller "
            f"({distiller.__name__}) computes its loss over the whole batch (e.g. B×B relations), which "
            f"micro-batches would change; use launcher.gpus_per_run (DDP gathers the batch) or "
            f"train.grad_checkpoint=true"
        )


def micro_batches(batch: dict[str, Any], steps: int) -> list[dict[str, Any]]:
    """``batch`` cut into ``steps`` consecutive parts as equal as possible (tensors along dim 0, lists by
    slice); empty parts are left out (a batch cut short by empty masks)."""
    n = len(batch["valid"])
    bounds = [i * n // steps for i in range(steps + 1)]
    return [{k: v[a:b] for k, v in batch.items()} for a, b in zip(bounds, bounds[1:]) if b > a]


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_mb(device: torch.device) -> tuple[float, str]:
    """(peak memory in MiB, what was measured): CUDA max allocated on a GPU, else this process's peak RSS."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20, "cuda_max_allocated"
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "cpu_peak_rss"
