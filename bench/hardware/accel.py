"""Execution switches that change speed, never the model: device, autocast, memory format, compilation.

Every run reads them from ``train.*`` (``device``, ``precision``, ``channels_last``, ``compile``,
``compile_backend``); none of them enters a run's hash, since they change results only at float
rounding level (bf16 autocast excepted: ``precision`` is hashed).
"""

from __future__ import annotations

import logging
import re
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path

import torch
from torch import nn

from bench.config import ConfigError, TrainConfig

log = logging.getLogger(__name__)

PRECISIONS = ("auto", "bf16", "fp32")
_DEVICE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")


def check_device(name: str, present: bool = True) -> None:
    """Raise :class:`ConfigError` unless ``name`` is a device name (auto, cpu, cuda, cuda:N) and, with
    ``present``, a device this machine has."""
    if not _DEVICE.match(name):
        raise ConfigError(f"unknown train.device {name!r}; valid: auto, cpu, cuda, cuda:N")
    if present and name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"train.device={name} but torch sees no CUDA device on this machine")
        index = int(name.partition(":")[2] or 0)
        if index >= torch.cuda.device_count():
            raise ConfigError(f"train.device={name} but only {torch.cuda.device_count()} CUDA device(s) exist")


def check_execution(train: TrainConfig, present: bool = True) -> None:
    """Validate a run's execution switches before it is launched (see :func:`check_device`)."""
    check_device(train.device, present)
    check_precision(train.precision)
    if train.compile:
        check_compile_backend(train.compile_backend)


def check_precision(precision: str) -> None:
    if precision not in PRECISIONS:
        raise ConfigError(f"unknown train.precision {precision!r}; valid: {', '.join(PRECISIONS)}")


def check_compile_backend(backend: str) -> None:
    if backend not in torch.compiler.list_backends(exclude_tags=()):
        valid = ", ".join(torch.compiler.list_backends())
        raise ConfigError(f"unknown train.compile_backend {backend!r}; valid: {valid} (or a debug backend: eager)")


def pick_device(name: str) -> torch.device:
    """``auto`` = the first CUDA device when there is one, else the CPU."""
    check_device(name)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def autocast_for(device: torch.device, precision: str) -> AbstractContextManager:
    """The autocast context of ``train.precision`` on ``device``."""
    check_precision(precision)
    if precision == "bf16" or (precision == "auto" and device.type == "cuda"):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return nullcontext()


def compute_tag(device: torch.device, precision: str, channels_last: bool) -> str:
    """How encoder states are computed, e.g. ``cpu-fp32-cl``: device type, bf16 autocast or fp32, and
    channels-last; the encoder cache keys its entries by it (other kernels give other floats)."""
    dtype = "fp32" if isinstance(autocast_for(device, precision), nullcontext) else "bf16"
    return f"{device.type}-{dtype}{'-cl' if channels_last else ''}"


def images_to(images: torch.Tensor, device: torch.device, channels_last: bool) -> torch.Tensor:
    """A (B, 3, S, S) image batch on ``device``, channels-last when asked (asynchronous copy from pinned
    memory on a GPU)."""
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    return images.to(device, non_blocking=True, memory_format=fmt)


_CONVS = (nn.Conv2d, nn.ConvTranspose2d)


def channels_last_convs(model: nn.Module) -> int:
    """Store the weights of every 2-D convolution channels-last (in place); returns how many.

    Only convolutions: they are what the memory format speeds up (TinyViT's MBConv blocks and
    patch merging, every patch embedding, the decoder's upscaling), and other 4-D parameters (SAM's
    absolute position embedding) keep the layout the official code indexes.
    """
    n = 0
    for module in model.modules():
        if isinstance(module, _CONVS):
            module.to(memory_format=torch.channels_last)
            n += 1
    return n


def compile_backbone(model: nn.Module, backend: str) -> int:
    """``torch.compile`` each encoder block and the mask decoder's transformer in place
    (``nn.Module.compile``: parameters, state-dict keys and PEFT modules are unchanged); returns how
    many modules. Block by block keeps the per-block features the distillers read."""
    check_compile_backend(backend)
    targets = list(model.encoder_blocks()) + [model.mask_decoder.transformer]  # type: ignore[operator]
    for module in targets:
        module.compile(backend=backend)
    log.info("compiled %d modules with torch.compile(backend=%r)", len(targets), backend)
    return len(targets)


def cpu_has_bf16(cpuinfo: str = "/proc/cpuinfo") -> bool:
    """Whether this CPU computes bf16 natively (AMX or AVX512-BF16 in ``/proc/cpuinfo``); elsewhere torch
    emulates it and a bf16 step is slower than fp32."""
    try:
        flags = Path(cpuinfo).read_text().split()
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def bf16_hint(runs: list[TrainConfig]) -> str:
    """A line for the end of a CPU sweep in fp32 on a CPU with native bf16: how to get its speed (and what it
    costs: bf16 numbers differ from fp32 ones in the last digits, so tables are equal across machines only in fp32)."""
    on_cpu_fp32 = [t for t in runs if t.device in ("auto", "cpu") and t.precision in ("auto", "fp32")]
    if not on_cpu_fp32 or torch.cuda.is_available() or not cpu_has_bf16():
        return ""
    return (
        "fp32 on the CPU (the default: tables equal across machines). This CPU has native bf16 (AMX / AVX512-BF16): "
        "add train.precision=bf16 for ~1.5x faster steps, with results that differ from fp32 ones in the last digits."
    )
