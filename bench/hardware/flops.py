"""FLOP counting and the compute a plan assumes: device peaks, the measured MFU store, a CPU matmul rate.

* :func:`count` runs a function under ``torch.utils.flop_counter.FlopCounterMode`` (every ``aten`` matmul and
  convolution, forward and backward) and adds up the bytes autograd saves for the backward pass.
* :func:`fake_mode` is a ``FakeTensorMode``: modules built and run inside it have shapes and dtypes but no
  storage, so a full-size SAM step is counted in seconds without its memory (CPU device, so autocast works).
* :data:`GPUS` is the bf16 dense tensor-core peak of the GPUs ``plan gpu=`` knows; :data:`PEAK_TFLOPS` maps a
  ``torch.cuda.get_device_name()`` to its peak (``tools.gpu_check``).
* The MFU store (:func:`mfu_file`): ``tools.gpu_check`` writes the measured model FLOPs utilisation per GPU kind
  into ``$SAMFIT_MFU_FILE``, else ``$XDG_CACHE_HOME/samfit-bench/mfu.json`` (``~/.cache/samfit-bench/mfu.json``);
  ``plan`` reads it.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import torch
from torch.utils.flop_counter import FlopCounterMode

from bench.config import ConfigError
from bench.fileio import atomic_write

log = logging.getLogger(__name__)

MFU_ENV = "SAMFIT_MFU_FILE"
DEFAULT_MFU = 0.3  # an assumption until tools.gpu_check has measured the GPU

# Dense bf16 tensor-core peak (TFLOP/s) by a substring of torch.cuda.get_device_name(), from the vendors' spec
# sheets; the first match wins, so more specific names come first.
PEAK_TFLOPS: tuple[tuple[str, float], ...] = (
    ("H100 PCIe", 756.0),
    ("H100", 989.0),
    ("H200", 989.0),
    ("A100", 312.0),
    ("A800", 312.0),
    ("L40S", 362.0),
    ("L40", 181.0),
    ("A6000", 155.0),
    ("RTX 4090", 165.0),
    ("RTX 3090", 71.0),
    ("A10", 125.0),
    ("L4", 121.0),
    ("V100", 125.0),  # fp16 (no bf16 tensor cores)
    ("T4", 65.0),  # fp16
)


@dataclass(frozen=True)
class Gpu:
    """A GPU kind ``plan gpu=`` knows: its name, bf16 dense peak (TFLOP/s) and the device-name substring that
    identifies it (``tools.gpu_check`` files its measured MFU under the key whose ``match`` the name contains)."""

    label: str
    peak_tflops: float
    match: str


GPUS: dict[str, Gpu] = {
    "h100": Gpu("H100 SXM", 989.0, "H100"),
    "h200": Gpu("H200", 989.0, "H200"),
    "a100": Gpu("A100", 312.0, "A100"),
}
DEVICES = (*GPUS, "cpu")


def gpu(name: str) -> Optional[Gpu]:
    """The GPU ``name`` (None for ``cpu``); ConfigError listing the choices otherwise."""
    if name == "cpu":
        return None
    if name not in GPUS:
        raise ConfigError(f"unknown gpu={name!r}; valid choices: {', '.join(DEVICES)}")
    return GPUS[name]


def gpu_key(device_name: str) -> Optional[str]:
    """The :data:`GPUS` key of a ``torch.cuda.get_device_name()`` (None for another GPU or an H100 PCIe)."""
    if "PCIe" in device_name:
        return None
    return next((key for key, g in GPUS.items() if g.match in device_name), None)


def peak_for_name(device_name: str) -> Optional[float]:
    """Dense bf16 peak (TFLOP/s) of a CUDA device by its name (:data:`PEAK_TFLOPS`), None if unknown."""
    return next((peak for key, peak in PEAK_TFLOPS if key in device_name), None)


def mfu_file() -> Path:
    """Where measured MFUs are kept: ``$SAMFIT_MFU_FILE``, else ``<XDG cache>/samfit-bench/mfu.json``."""
    if os.environ.get(MFU_ENV):
        return Path(os.environ[MFU_ENV])
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "samfit-bench" / "mfu.json"


def read_mfus(path: Optional[Path] = None) -> dict[str, dict[str, Any]]:
    """The stored measurements by GPU key (empty when the file is absent; a damaged file is warned about)."""
    path = path or mfu_file()
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as err:
        log.warning("%s: unreadable (%s); MFU values are assumed", path, err)
        return {}
    return {k: v for k, v in data.items() if isinstance(v, dict) and isinstance(v.get("mfu"), (int, float))}


def store_mfu(key: str, mfu: float, device_name: str, details: dict[str, Any], path: Optional[Path] = None) -> Path:
    """Record ``mfu`` measured on GPU kind ``key`` today (other GPUs' entries kept); returns the file."""
    path = path or mfu_file()
    data = read_mfus(path)
    data[key] = {"mfu": mfu, "device": device_name, "date": datetime.date.today().isoformat(), **details}
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, (json.dumps(data, indent=2, sort_keys=True) + "\n").encode())
    return path


def cpu_matmul_tflops(n: int = 512, repeat: int = 5) -> float:
    """The fp32 matmul rate of this CPU (TFLOP/s, best of ``repeat`` ``n``×``n`` products): the cpu peak."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b  # warm-up
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        for _ in range(4):
            a @ b
        best = min(best, (time.perf_counter() - t) / 4)
    return 2 * n**3 / best / 1e12


@dataclass
class Count:
    """What :func:`count` measured: FLOPs, the FLOPs per ``aten`` op and per module (the counter's names, e.g.
    ``Block.attn``, summed over the blocks; forward attribution is exact, backward attribution is not), and the
    bytes saved for backward."""

    flops: float  # an int from the counter; a plan's closed-form terms may add fractions
    by_op: dict[str, int]
    by_module: dict[str, int]
    saved_bytes: int


def count(fn: Callable[[], Any]) -> Count:
    """FLOPs of ``fn()`` (forward and whatever backward it runs) and the bytes of the tensors autograd saves."""
    saved: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        saved[id(t)] = t.numel() * t.element_size()
        return t

    with FlopCounterMode(display=False) as counter, torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    counts = counter.get_flop_counts()
    by_op = {str(op): int(n) for op, n in counts.get("Global", {}).items()}
    by_module = {name: int(sum(ops.values())) for name, ops in counts.items() if name != "Global"}
    return Count(int(counter.get_total_flops()), by_op, by_module, sum(saved.values()))


def fake_mode() -> Any:
    """A ``FakeTensorMode`` (not entered): tensors made inside it have metadata only; real inputs are converted on
    use. Modules are built outside it (:func:`build_light`) and converted with :func:`to_fake`."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    return FakeTensorMode(allow_non_fake_inputs=True)


def build_light(build: Callable[[], Any]) -> Any:
    """``build()`` with its tensors on the meta device (no storage, no init cost), or on the CPU (random init)
    when the builder reads a value (TinyViT's and SAM2 Hiera's ``linspace(...).item()``, the latter wrapped by
    Hydra's ``InstantiationException``); :func:`to_fake` makes either runnable."""
    try:
        with torch.device("meta"):
            return build()
    except Exception as err:  # noqa: BLE001 - Hydra wraps the RuntimeError; a real builder error recurs below
        log.debug("meta build failed (%s); building on the CPU", err)
        return build()


def to_fake(module: torch.nn.Module, mode: Any, device: torch.device = torch.device("cpu")) -> torch.nn.Module:
    """Replace ``module``'s parameters and buffers by fake tensors of the same shape on ``device`` (in place;
    tied parameters stay tied; ``requires_grad`` kept)."""
    converter = mode.fake_tensor_converter
    done: dict[int, torch.Tensor] = {}

    def fake(t: torch.Tensor) -> torch.Tensor:
        if id(t) not in done:
            data = t.detach()
            done[id(t)] = converter.from_meta_and_device(mode, data, device) if data.is_meta else mode.from_tensor(data)
        return done[id(t)]

    params: dict[int, torch.nn.Parameter] = {}
    for m in module.modules():
        for name, p in list(m._parameters.items()):
            if p is not None:
                if id(p) not in params:
                    params[id(p)] = torch.nn.Parameter(fake(p), requires_grad=p.requires_grad)
                m._parameters[name] = params[id(p)]
        for name, b in list(m._buffers.items()):
            if b is not None:
                m._buffers[name] = fake(b)
    return module
