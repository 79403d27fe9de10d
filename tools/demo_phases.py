"""Benchmark command: ``python -m tools.demo_phases [key=value ...]`` runs the demo cold and prints where its time goes.

The demo (``python run_benchmark.py``, or any sweep given as ``sweep=NAME``) runs in a fresh process with an
empty runs folder and an empty data cache under a temporary directory, so nothing is reused from earlier runs (the
Python bytecode cache and the OS file cache are warm as after any first command). It prints the command's own
output, which ends with the phase breakdown (:mod:`bench.phases`: imports, data generation, training,
validation selection, test evaluation with the scoring time per metric definition, report tables, figures),
and then the wall time of the whole process, measured from outside.

Examples::

    python -m tools.demo_phases                      # the demo as a newcomer runs it
    python -m tools.demo_phases train.precision=bf16 # the same with bf16 autocast (CPUs with AMX / AVX512-BF16)
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main(argv: list[str]) -> int:
    with tempfile.TemporaryDirectory(prefix="samfit-demo-phases-") as tmp:
        cmd = [
            sys.executable,
            "run_benchmark.py",
            f"runs_dir={tmp}/runs",
            f"data.cache_dir={tmp}/cache",
            *argv,
        ]
        start = time.perf_counter()
        done = subprocess.run(cmd, cwd=REPO, stdout=subprocess.PIPE, text=True, check=False)
        wall = time.perf_counter() - start
    sys.stdout.write(done.stdout)
    sys.stdout.write(f"\ncold command wall time, measured from outside: {wall:.1f} s (exit code {done.returncode})\n")
    return done.returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
