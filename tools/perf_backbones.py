"""Benchmark command: ``python -m tools.perf_backbones [names=a,b,...] [repeat=N] [threads=N]``.

Forward time per image of every full-size backbone at its native input size on this machine, with
random weights (the timing does not depend on them): the image encoder (``encode``) and one box-prompt
decoder pass (``decode``), batch 1, fp32, no gradient. Prints one Markdown table row per backbone:
build time, parameter count, encoder and decoder seconds (median of ``repeat`` calls after one warm-up).
"""

from __future__ import annotations

import logging
import statistics
import sys
import time
from typing import Callable

import torch

from bench.backbones import Prompts, build_backbone
from bench.config import BackboneConfig, ConfigError
from bench.config.overrides import command_args
from bench.logs import setup_logging

BACKBONES = [
    "sam_vit_b",
    "sam_vit_l",
    "sam_vit_h",
    "sam2_hiera_t",
    "sam2_hiera_s",
    "sam2_hiera_b_plus",
    "sam2_hiera_l",
    "mobilesam",
    "litemedsam",
]


def median_seconds(fn: Callable[[], object], repeat: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def measure(name: str, repeat: int) -> dict[str, float]:
    """Build ``name`` at its native size and time one encoder and one decoder pass on one image."""
    t0 = time.perf_counter()
    backbone = build_backbone(BackboneConfig(name=name, random_init=name != "litemedsam"))
    built = time.perf_counter() - t0
    s = backbone.img_size
    image = torch.randn(1, 3, s, s, generator=torch.Generator().manual_seed(0))
    prompts = Prompts(boxes=torch.tensor([[0.2, 0.3, 0.6, 0.8]]) * s)
    with torch.no_grad():
        z, feats = backbone.encode(image)
        encode = median_seconds(lambda: backbone.encode(image), repeat)
        decode = median_seconds(lambda: backbone.decode(z, prompts, feats), repeat)
    params = sum(p.numel() for p in backbone.parameters()) / 1e6
    return {"size": s, "build": built, "params": params, "encode": encode, "decode": decode}


def main(argv: list[str] | None = None) -> int:
    setup_logging(logging.ERROR)  # random-weight warnings would interleave with the table
    try:
        args = command_args(list(sys.argv[1:] if argv is None else argv))
        names = args.pop("names", ",".join(BACKBONES)).split(",")
        repeat = int(args.pop("repeat", "3"))
        threads = int(args.pop("threads", str(torch.get_num_threads())))
        if args:
            raise ConfigError(f"unknown option(s) {sorted(args)}; valid: names, repeat, threads")
    except (ConfigError, ValueError) as err:
        sys.stderr.write(f"error: {err}\n")
        return 2
    torch.set_num_threads(threads)
    print(f"forward time per image, batch 1, fp32, {threads} thread(s), median of {repeat} after 1 warm-up")
    print("| backbone | input | params (M) | build (s) | encoder (s) | decoder (s) | total (s) |")
    print("|---|---|---|---|---|---|---|")
    for name in names:
        r = measure(name, repeat)
        print(
            f"| {name} | {r['size']} | {r['params']:.1f} | {r['build']:.1f} | {r['encode']:.3f} | "
            f"{r['decode']:.3f} | {r['encode'] + r['decode']:.3f} |",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
