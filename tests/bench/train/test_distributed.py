"""One run on 2 DDP ranks (gloo on the CPU) against the same run in one process; a killed rank."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bench.config import ConfigError
from bench.data.masks import read_masks
from bench.runs.launcher import launch
from bench.runs.results import RunDir
from bench.runs.sweep import run_configs, run_hash
from tests.tiny_runs import REPO, sweep, sweep_args

# adapter+infosam: InfoSAM's loss is over the batch (B x B Gram matrices), so it must see the whole batch.
ARGS = (
    "methods=[adapter+infosam]",
    "train.epochs=2",
    "train.batch_size=4",
    "train.log_every=1",
    "data.synth.train_size=8",
    "launcher.threads_per_job=1",
)
# Rounding differs between one batch of 4 and two of 2 (and in the order gradients are summed): measured
# differences are ~1e-7 relative; 1e-5 leaves room for other CPU kernels, far below a wrong reduction
# (a mean of per-rank means or an ungathered Gram matrix changes the InfoSAM terms by > 1e-2).
RTOL = 1e-5


def _log(run_dir: Path) -> list[dict[str, float]]:
    with open(run_dir / "train_log.csv") as f:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]


def _close(a: float, b: float) -> bool:
    return abs(a - b) <= RTOL * max(1.0, abs(a), abs(b))


@pytest.fixture(scope="module")
def one_and_two(tmp_path_factory):
    """The same run in one process and on 2 gloo ranks (torch's elastic launcher, launcher=inline)."""
    tmp = tmp_path_factory.mktemp("ddp")
    single = sweep(tmp, *ARGS, runs="single")
    ranked = sweep(tmp, *ARGS, "launcher.gpus_per_run=2", runs="ranked")
    (run,) = run_configs(single)
    assert run_configs(ranked) == [run] and run_hash(run_configs(ranked)[0]) == run_hash(run)  # not hashed
    (one,) = launch(single)
    (two,) = launch(ranked)
    assert one.error is None and two.error is None, (one.error, two.error)
    return tmp, run, RunDir(single.runs_dir, run).path, RunDir(ranked.runs_dir, run).path


def test_two_ranks_train_and_score_as_one_process(one_and_two):
    _, _, one, two = one_and_two
    log1, log2 = _log(one), _log(two)
    assert (
        [(r["epoch"], r["step"]) for r in log1]
        == [(r["epoch"], r["step"]) for r in log2]
        == [(1, 1), (1, 2), (2, 1), (2, 2)]
    )
    assert set(log1[0]) == set(log2[0]) and {"loss", "seg"} < set(log1[0]) and len(log1[0]) > 5  # infosam terms
    for r1, r2 in zip(log1, log2):
        for key in r1:
            assert _close(r1[key], r2[key]), (key, r1, r2)
    m1, m2 = (json.loads((d / "metrics.json").read_text()) for d in (one, two))
    assert (m1["world_size"], m2["world_size"]) == (1, 2)
    assert m1["num_test_images"] == m2["num_test_images"] == 4  # sharded evaluation gathered every image
    for definition, values in m1["metrics_by_definition"].items():
        for key, value in values.items():
            assert _close(value, m2["metrics_by_definition"][definition][key]), (definition, key)
    rows1 = (one / "per_image.csv").read_text().splitlines()
    rows2 = (two / "per_image.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows1] == [r.split(",")[0] for r in rows2]  # gathered in dataset order
    # the kept masks come from every rank's shard (rank r scores images r, r + 2, ...), written by rank 0
    kept1, kept2 = (read_masks(d) for d in (one, two))
    names = [e["name"] for e in kept1["images"]]
    assert len(names) == 4 and [e["name"] for e in kept2["images"]] == names
    for e1, e2 in zip(kept1["images"], kept2["images"]):  # logits ~1e-7 apart: a pixel at 0 may flip
        p1, p2 = (np.asarray(Image.open(e["pred"])) for e in (e1, e2))
        assert p1.shape == p2.shape and (p1 != p2).mean() < 1e-3, e1["name"]


def test_a_batch_that_does_not_split_over_the_ranks_is_refused(tmp_path):
    cfg = sweep(tmp_path, *ARGS, "train.batch_size=3", "launcher.gpus_per_run=2")
    with pytest.raises(ConfigError, match="train.batch_size=3 does not split over 2 ranks"):
        launch(cfg)


CHILD = """
import sys
from bench.logs import setup_logging
from bench.runs.sweep import load_config
from bench.runs.launcher import launch
from bench.data.masks import read_masks
setup_logging()
launch(load_config(sys.argv[1:]))
"""

# Each rank records its pid and slows its steps, so the test can kill rank 1 mid-run (the elastic launcher sets
# RANK in a rank after its interpreter started, so the patch reads it when a step runs).
SITE = """\
import os, time
if os.environ.get("SAMFIT_TEST_SLOW"):
    import bench.train.trainer as t
    _real = t.structure_loss
    def _slow(*a, **k):
        path = os.path.join({folder!r}, "rank" + os.environ.get("RANK", "-") + ".pid")
        if not os.path.exists(path):
            open(path, "w").write(str(os.getpid()))
        time.sleep(1.0)
        return _real(*a, **k)
    t.structure_loss = _slow
"""


@pytest.mark.slow  # ~1-2 min: CI runs it in its own pass (.ci/run), the README command skips it
def test_killing_one_rank_fails_the_run_loudly_and_a_relaunch_resumes(one_and_two, tmp_path):
    tmp, run, _, two = one_and_two
    args = sweep_args(tmp, *ARGS, "launcher.gpus_per_run=2", "train.epochs=3", runs="killed", cache="cache")
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(SITE.format(folder=str(tmp_path)))
    env = dict(os.environ, OMP_NUM_THREADS="1", SAMFIT_TEST_SLOW="1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(site), str(REPO), env.get("PYTHONPATH")]))
    child = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(CHILD), *args], env=env, stderr=subprocess.PIPE, text=True
    )
    cfg = sweep(tmp, *ARGS, "launcher.gpus_per_run=2", "train.epochs=3", runs="killed", cache="cache")
    (killed_run,) = run_configs(cfg)
    rd = RunDir(cfg.runs_dir, killed_run)
    try:
        end = time.time() + 180
        while not (rd.checkpoint.is_file() and (tmp_path / "rank1.pid").is_file()) and time.time() < end:
            time.sleep(0.1)
        assert rd.checkpoint.is_file(), "no epoch checkpoint before the kill"
        os.kill(int((tmp_path / "rank1.pid").read_text()), signal.SIGKILL)
        _, stderr = child.communicate(timeout=120)
    finally:
        if child.poll() is None:
            child.kill()
    assert child.returncode != 0
    assert "ChildFailedError" in stderr and "Signal 9 (SIGKILL)" in stderr  # names the dead rank's signal
    assert not rd.is_complete() and not rd.is_running()

    (outcome,) = launch(cfg)  # relaunch at full speed (this process has no slow-step patch)
    assert outcome.error is None
    assert "resumed from" in rd.log_file.read_text()
    reference = sweep(tmp, *ARGS, "launcher.gpus_per_run=2", "train.epochs=3", runs="reference", cache="cache")
    (ref,) = launch(reference)
    resumed, uninterrupted = _log(rd.path), _log(RunDir(reference.runs_dir, killed_run).path)
    assert len(resumed) == len(uninterrupted) == 6
    for r1, r2 in zip(resumed, uninterrupted):
        assert all(_close(r1[k], r2[k]) for k in r1), (r1, r2)
    assert all(_close(v, ref.record["metrics"][k]) for k, v in outcome.record["metrics"].items())


def _balance_rank(rank: int, port: int, out: str) -> None:
    """One gloo rank of the empty-mask test: rank 0 keeps 2 of its 2 samples, rank 1 one of 2."""
    import torch
    import torch.distributed as dist

    from bench.data.batches import take
    from bench.train import distributed

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        valid = torch.tensor([True, True]) if rank == 0 else torch.tensor([False, True])
        batch = {"image": torch.arange(2) + 10 * rank, "name": [f"r{rank}s{i}" for i in range(2)], "valid": valid}
        full, mine, left = distributed.balance_valid(batch)
        Path(out, f"{rank}.json").write_text(json.dumps({"names": take(full, mine)["name"], "left": left}))
    finally:
        dist.destroy_process_group()


def test_ranks_with_unequal_empty_masks_share_the_valid_samples_out_again(tmp_path):
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_balance_rank, args=(port, str(tmp_path)), nprocs=2, join=True)
    got = [json.loads((tmp_path / f"{r}.json").read_text()) for r in (0, 1)]
    # the 3 valid samples of the global batch [r0s0, r0s1, r1s0 (empty), r1s1]: one each, one left over
    assert [g["names"] for g in got] == [["r0s0"], ["r0s1"]]
    assert [g["left"] for g in got] == [1, 1]
