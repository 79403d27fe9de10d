"""One run on N processes with torch DDP: process group, data and evaluation shards, batch gathering.

A run executes unchanged under ``torchrun --nproc_per_node=N`` (or N Slurm tasks: submitit's
``TorchDistributedEnvironment`` exports the same variables), or with ``launcher.gpus_per_run=N`` through
torch's elastic launcher (:func:`bench.runs.launcher.run_ranks`). NCCL on GPUs, gloo on the CPU.

* The global batch is ``train.batch_size``; rank r takes samples ``r*b .. (r+1)*b`` of each batch
  (b = batch_size / world size), so the union of the ranks' batches is the single-process batch.
* Batch-level losses (InfoSAM's B×B Gram matrices, PKT, SemCKD ...) see the whole batch: the trainer
  passes :func:`gather_features` of student and teacher (and the gathered batch) to the distiller, an
  all-gather that keeps gradients (``torch.distributed.nn.functional.all_gather``). Every rank then
  computes the same distillation loss; with DDP's gradient average the update equals the 1-process one.
* The frozen teacher and the encoder caches stay outside DDP (the teacher is not a submodule of
  :class:`LossModule`).
* Evaluation is sharded (image i on rank i mod N) and the per-image rows are gathered back into the
  dataset's order before the means are taken (:func:`sharded_evaluate`).
* Only rank 0 writes the run directory (:class:`bench.runs.results.FollowerRunDir` on the other ranks).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Callable, Optional, TypeVar

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from bench.config import ConfigError
from bench.contracts.distill import Features

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class World:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def env_world() -> World:
    """The rank and world size torchrun (or an exported submitit environment) put in the environment."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    return World(int(os.environ.get("RANK", "0")), size, int(os.environ.get("LOCAL_RANK", "0")))


def world() -> World:
    """This process's place in the initialised process group, or the single-process world."""
    if dist.is_available() and dist.is_initialized():
        return World(dist.get_rank(), dist.get_world_size(), env_world().local_rank)
    return World()


def setup(device_name: str) -> World:
    """Join the process group when the environment describes more than one rank (idempotent).

    NCCL when the run trains on a GPU, gloo otherwise; on a GPU each rank takes ``cuda:LOCAL_RANK``.
    """
    env = env_world()
    if env.world_size <= 1 or dist.is_initialized():
        return world()
    on_gpu = device_name.startswith("cuda") or (device_name == "auto" and torch.cuda.is_available())
    if on_gpu:
        torch.cuda.set_device(env.local_rank)
    dist.init_process_group("nccl" if on_gpu else "gloo", timeout=timedelta(minutes=30))
    log.info("rank %d of %d joined the process group (%s)", env.rank, env.world_size, dist.get_backend())
    return world()


def rank_device(device: torch.device) -> torch.device:
    """``cuda`` becomes this rank's own GPU under DDP."""
    if device.type == "cuda" and world().world_size > 1:
        return torch.device("cuda", env_world().local_rank)
    return device


def check_batch(batch_size: int, size: int) -> int:
    """Samples per rank; the global batch must split evenly."""
    if batch_size % size:
        raise ConfigError(f"train.batch_size={batch_size} does not split over {size} ranks; use a multiple of {size}")
    return batch_size // size


def shard_order(order: list[int], batch_size: int) -> list[int]:
    """This rank's part of each consecutive batch of ``order`` (rank r: samples r*b .. (r+1)*b - 1)."""
    w = world()
    if w.world_size == 1:
        return order
    b = check_batch(batch_size, w.world_size)
    return [
        i for start in range(0, len(order), batch_size) for i in order[start + w.rank * b : start + (w.rank + 1) * b]
    ]


def _gather(x: torch.Tensor) -> torch.Tensor:
    if x.requires_grad:
        import torch.distributed.nn.functional as dist_fn

        # gathered as contiguous rows: gloo's backward (all-to-all) of a strided tensor, e.g. a channels-last
        # embedding, returns the gradient in the wrong element order
        flat = x.contiguous().reshape(x.shape[0], -1)
        return torch.cat(dist_fn.all_gather(flat), dim=0).reshape(-1, *x.shape[1:])
    parts = [torch.empty_like(x) for _ in range(world().world_size)]
    dist.all_gather(parts, x.contiguous())
    return torch.cat(parts, dim=0)


def gather_features(f: Optional[Features]) -> Optional[Features]:
    """The whole batch's features on every rank, in batch order; gradients flow back to each rank's part."""
    if f is None or world().world_size == 1:
        return f
    return Features(
        _gather(f.embedding),
        _gather(f.mask_token),
        _gather(f.logits),
        _gather(f.iou),
        {k: _gather(v) for k, v in f.blocks.items()},
    )


def gather_batch(batch: dict[str, Any]) -> dict[str, Any]:
    """The whole batch on every rank: tensors concatenated along dim 0, lists joined."""
    if world().world_size == 1:
        return batch
    out: dict[str, Any] = {}
    for key, value in batch.items():
        if isinstance(value, torch.Tensor):
            out[key] = _gather(value)
        else:
            parts: list[Any] = [None] * world().world_size
            dist.all_gather_object(parts, list(value))
            out[key] = [v for part in parts for v in part]
    return out


def mean_over_ranks(values: dict[str, float]) -> dict[str, float]:
    """Average of each value over the ranks (the per-rank structure loss -> the global batch mean)."""
    if world().world_size == 1:
        return values
    t = torch.tensor(list(values.values()), dtype=torch.float64)
    dist.all_reduce(t)
    return dict(zip(values, (t / world().world_size).tolist()))


def gather_objects(value: T) -> list[T]:
    """Every rank's picklable ``value``, in rank order (``[value]`` on one process)."""
    if world().world_size == 1:
        return [value]
    parts: list[Any] = [None] * world().world_size
    dist.all_gather_object(parts, value)
    return parts


def balance_valid(batch: dict[str, Any]) -> tuple[dict[str, Any], list[int], int]:
    """When the ranks keep unequal numbers of samples (empty masks dropped), share the whole batch's
    valid samples out again: every rank gets ``K // N`` of the ``K`` valid ones, in batch order.

    Returns the gathered batch, this rank's indices into it and how many valid samples are left over
    (``K mod N``: not trained on at this step, as a 1-process run would).
    """
    full = gather_batch(batch)
    valid = full["valid"].nonzero().flatten().tolist()
    w = world()
    per = len(valid) // w.world_size
    return full, valid[w.rank * per : (w.rank + 1) * per], len(valid) - per * w.world_size


def all_equal(flag: int) -> list[int]:
    """Every rank's ``flag`` (e.g. its batch size after dropping empty masks)."""
    if world().world_size == 1:
        return [flag]
    t = torch.tensor([flag], dtype=torch.int64)
    parts = [torch.zeros_like(t) for _ in range(world().world_size)]
    dist.all_gather(parts, t)
    return [int(p) for p in parts]


def barrier() -> None:
    if world().world_size > 1:
        dist.barrier()


def broadcast(value: T) -> T:
    """Rank 0's ``value`` on every rank."""
    if world().world_size == 1:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


class LossModule(nn.Module):
    """What DDP wraps: the student and the distiller (the trainable parts), not the frozen teacher.

    ``forward`` returns the named loss terms of one batch (``compute``, the trainer's loss function).
    """

    def __init__(self, parts: Any, compute: Callable[..., dict[str, torch.Tensor]]) -> None:
        super().__init__()
        self.student = parts.student
        self.distiller = parts.distiller
        self._parts = [parts]  # a list: not registered, so the teacher stays outside DDP
        self._compute = compute

    def forward(self, *args: Any) -> dict[str, torch.Tensor]:
        return self._compute(self._parts[0], *args)


def wrap_ddp(parts: Any, compute: Callable[..., dict[str, torch.Tensor]], device: torch.device) -> Optional[nn.Module]:
    """A :class:`torch.nn.parallel.DistributedDataParallel` around :class:`LossModule`, or None on one rank."""
    if world().world_size == 1:
        return None
    ids = [device.index] if device.type == "cuda" else None
    # unused: trainable parameters a method's loss does not reach (e.g. the IoU head)
    return nn.parallel.DistributedDataParallel(LossModule(parts, compute), device_ids=ids, find_unused_parameters=True)


def sharded_evaluate(
    evaluate_shard: Callable[[Any], tuple[list[dict[str, Any]], dict[str, dict[str, float]]]], data: Any
) -> tuple[list[dict[str, Any]], dict[str, dict[str, float]]]:
    """Evaluate image i on rank i mod N, gather the per-image rows in dataset order, then take the means
    (never a mean of per-rank means)."""
    w = world()
    if w.world_size == 1:
        return evaluate_shard(data)
    from torch.utils.data import Subset

    indices = list(range(w.rank, len(data), w.world_size))
    rows, _ = evaluate_shard(Subset(data, indices))
    gathered: list[Any] = [None] * w.world_size
    dist.all_gather_object(gathered, list(zip(indices, rows)))
    ordered = [row for _, row in sorted((pair for part in gathered for pair in part), key=lambda p: p[0])]
    return ordered, row_means(ordered)


def row_means(rows: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Means by definition of merged per-image rows (``clean`` keys unprefixed, others ``<definition>.<key>``),
    as :class:`bench.eval.evaluate.Scorer` computes them."""
    from bench.eval.evaluate import definitions
    from bench.eval.metrics import BASE_DEFINITION

    names = definitions()
    means: dict[str, dict[str, float]] = {name: {} for name in names}
    if not rows:
        return means
    for key in rows[0]:
        if key == "name":
            continue
        definition, _, metric = (
            key.rpartition(".") if "." in key and key.split(".")[0] in names else (BASE_DEFINITION, "", key)
        )
        means[definition][metric] = float(np.mean([r[key] for r in rows]))
    return means
