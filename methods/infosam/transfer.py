"""Table 6 (InfoSAM-T): hand the relation module of a finished InfoSAM run to the runs that load it.

A row that loads a frozen relation module names it by a path that does not depend on run hashes::

    distill.relation_ckpt: "${runs_dir}/_relation/<source dataset>_s\\${seed}.pt"

(``${runs_dir}`` is filled in when the sweep loads, ``\\${seed}`` per run; see ``sweeps/table6.yaml``).
:func:`publish_relation_modules` copies ``relation.pt`` of the matching source run — same sweep, same
method, the source dataset and seed, no row label, no ``relation_ckpt`` of its own — to that path once the
source run is complete. It is a sweep step (:mod:`bench.contracts.sweep_steps`): ``sweeps/table6.yaml``
names it in ``after_runs:``, so the launcher calls it at the end of every ``run`` of that sweep (under Slurm
at the start of the next ``run``); the loading rows therefore run on the sweep's second pass (on the first
they fail with a missing file). ``report`` does not call it.
"""

from __future__ import annotations

import logging
import re
import shutil
from pathlib import Path

from bench.config import BenchConfig, RunConfig
from bench.contracts.sweep_steps import SWEEP_STEPS
from bench.runs.results import RunDir

log = logging.getLogger(__name__)

_SOURCE = re.compile(r"^(?P<dataset>.+)_s(?P<seed>\d+)\.pt$")


@SWEEP_STEPS.register("publish_relation_modules")
def publish_relation_modules(cfg: BenchConfig, runs: list[RunConfig]) -> list[Path]:
    """Copy source relation modules to the ``_relation/`` paths the sweep's runs load; returns the copies."""
    folder = (Path(cfg.runs_dir) / "_relation").resolve()
    sources = {(r.method, r.dataset, r.seed): r for r in runs if not r.variant and not r.distill.get("relation_ckpt")}
    written = []
    for run in runs:
        ckpt = run.distill.get("relation_ckpt")
        if not ckpt or Path(ckpt).exists() or Path(ckpt).resolve().parent != folder:
            continue
        match = _SOURCE.match(Path(ckpt).name)
        source = sources.get((run.method, match["dataset"], int(match["seed"]))) if match else None
        if source is None:
            log.warning("%s loads %s, but the sweep has no source run for it", RunDir(cfg.runs_dir, run).name, ckpt)
            continue
        src = RunDir(cfg.runs_dir, source)
        if not (src.is_complete() and (src.path / "relation.pt").is_file()):
            continue
        folder.mkdir(parents=True, exist_ok=True)
        tmp = Path(ckpt).with_suffix(".tmp")
        shutil.copyfile(src.path / "relation.pt", tmp)
        tmp.replace(ckpt)
        log.info("relation module of %s published as %s", src.name, ckpt)
        written.append(Path(ckpt))
    return written
