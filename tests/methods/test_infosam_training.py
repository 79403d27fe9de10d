"""InfoSAM inside the trainer: gradient routes, frozen teacher, cache equivalence, relation transfer."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch

from bench.contracts.dataset import DATASETS
from bench.data.batches import PromptedDataset, collate
from bench.runs.results import RunDir
from bench.runs.runner import build_parts, execute_run
from bench.runs.sweep import load_config, run_configs
from bench.train.trainer import compute_loss
from tests.tiny_runs import sweep_args


def config(tmp_path, *extra):
    return load_config(sweep_args(tmp_path, "methods=[adapter+infosam]", *extra))


def checksum(module: torch.nn.Module) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().numpy().tobytes())
    return digest.hexdigest()


def one_batch(run, parts):
    data = DATASETS.get(run.dataset)("train", run.data)
    prompted = PromptedDataset(data, parts.student, run.seed, train=True, box_jitter=5.0)
    return collate([prompted[i] for i in range(4)])


@pytest.mark.parametrize("term", ["l_r", "l_d"])
def test_gradient_routes(tmp_path, term):
    """L_d reaches the student and the relation module; L_r only the relation module; never the teacher."""
    run = run_configs(config(tmp_path))[0]
    parts = build_parts(run, torch.device("cpu"))
    terms = compute_loss(parts, one_batch(run, parts), True, torch.device("cpu"), run.train)
    assert set(terms) == {"seg", "l_r", "l_d"}
    terms[term].backward()
    student_grads = [p.grad for n, p in parts.student.named_parameters() if p.requires_grad and "adapter" in n]
    relation_grads = [p.grad for p in parts.distiller.relation.parameters()]
    assert all(g is not None and g.abs().sum() > 0 for g in relation_grads)
    if term == "l_d":
        assert any(g is not None and g.abs().sum() > 0 for g in student_grads)
    else:
        assert all(g is None or g.abs().sum() == 0 for g in student_grads)
    assert all(p.grad is None and not p.requires_grad for p in parts.teacher.parameters())


def test_teacher_unchanged_by_a_run_and_relation_saved(tmp_path, monkeypatch):
    import bench.runs.runner

    seen = {}
    original = bench.runs.runner.build_parts

    def spy(run, device, task=None):
        parts = original(run, device, task)
        seen["parts"], seen["before"] = parts, checksum(parts.teacher)
        return parts

    monkeypatch.setattr(bench.runs.runner, "build_parts", spy)
    cfg = config(tmp_path)
    run = run_configs(cfg)[0]
    record = execute_run(run, cfg.runs_dir)
    assert checksum(seen["parts"].teacher) == seen["before"]
    log = RunDir(cfg.runs_dir, run).path / "train_log.csv"
    header = log.read_text().splitlines()[0].split(",")
    assert {"seg", "l_r", "l_d"} <= set(header)
    assert np.isfinite(list(record["metrics"].values())).all()
    assert (RunDir(cfg.runs_dir, run).path / "relation.pt").is_file()


def test_frozen_transferred_relation_module_stays_fixed(tmp_path):
    """Table 6: a relation module trained on one dataset, loaded frozen into another run."""
    cfg = config(tmp_path)
    src = run_configs(cfg)[0]
    execute_run(src, cfg.runs_dir)
    ckpt = RunDir(cfg.runs_dir, src).path / "relation.pt"
    saved = torch.load(ckpt, weights_only=True)
    cfg2 = config(tmp_path, "datasets=[synth_leaf]", f"distill.relation_ckpt={ckpt}", "distill.relation_frozen=true")
    run = run_configs(cfg2)[0]
    execute_run(run, cfg2.runs_dir)
    after = torch.load(RunDir(cfg2.runs_dir, run).path / "relation.pt", weights_only=True)
    assert saved.keys() == after.keys()
    for key in saved:
        torch.testing.assert_close(saved[key], after[key], rtol=0, atol=0)


@pytest.mark.numerics
def test_cached_and_uncached_runs_follow_the_same_loss_curve(tmp_path):
    curves = {}
    for cached in (True, False):
        cfg = config(tmp_path / str(cached), f"data.encoder_cache={str(cached).lower()}", "train.log_every=1")
        run = run_configs(cfg)[0]
        execute_run(run, cfg.runs_dir)
        lines = (RunDir(cfg.runs_dir, run).path / "train_log.csv").read_text().splitlines()
        col = lines[0].split(",").index("loss")
        curves[cached] = np.array([float(line.split(",")[col]) for line in lines[1:]])
    assert len(curves[True]) == 4
    # cached states are fp16: equal up to fp16 rounding, not bit-identical
    np.testing.assert_allclose(curves[True], curves[False], rtol=2e-2, atol=2e-3)


def test_relation_maps_exported_at_chosen_epochs(tmp_path):
    cfg = config(tmp_path, "distill.export_epochs=[2]")
    run = run_configs(cfg)[0]
    execute_run(run, cfg.runs_dir)
    out = RunDir(cfg.runs_dir, run).path / "relation_maps"
    assert sorted(p.name for p in out.iterdir()) == ["epoch_002.npz", "epoch_002.png"]
    maps = np.load(out / "epoch_002.npz")
    assert maps["teacher"].shape == maps["student"].shape == (4, 8, 8)  # tiny_sam: 8x8 embedding
    # each map is an l2-normalised relation vector
    np.testing.assert_allclose(np.linalg.norm(maps["teacher"].reshape(4, -1), axis=1), 1.0, rtol=1e-4)
    assert not np.allclose(maps["teacher"], maps["student"])


def test_table6_sweep_step_hands_the_relation_module_to_the_transfer_rows(tmp_path):
    """The sweep names ``publish_relation_modules`` in ``after_runs``: the launcher calls it after the runs of
    the first pass (the sources train, the transfer rows fail on the missing file), which publishes their
    relation modules; the second pass trains the transfer rows from them. A report never calls it, and a
    sweep without the step publishes nothing."""
    from bench.runs.launcher import launch
    from reports.report import build_report

    args = [a for a in sweep_args(tmp_path) if not a.startswith(("sweep=", "methods=", "datasets="))]
    cfg = load_config([*args, "sweep=table6", "seeds=[0]", "train.epochs=1", "datasets=[synth_polyp,synth_leaf]"])
    assert cfg.after_runs == ["publish_relation_modules"]
    first = launch(cfg)
    assert sum(o.error is None for o in first) == 2  # the two plain InfoSAM (source) runs
    relation = Path(cfg.runs_dir) / "_relation"
    assert sorted(p.name for p in relation.iterdir()) == ["synth_leaf_s0.pt", "synth_polyp_s0.pt"]
    source = next(r for r in run_configs(cfg) if r.dataset == "synth_leaf" and not r.variant)
    assert (relation / "synth_leaf_s0.pt").read_bytes() == (
        RunDir(cfg.runs_dir, source).path / "relation.pt"
    ).read_bytes()
    second = launch(cfg)
    assert len(second) == 4 and all(o.error is None for o in second)  # the transfer rows, now trained
    assert all(RunDir(cfg.runs_dir, r).is_complete() for r in run_configs(cfg))

    (relation / "synth_leaf_s0.pt").unlink()
    build_report(cfg)  # a report only reads: it publishes nothing
    assert not (relation / "synth_leaf_s0.pt").exists()

    cfg.after_runs = []  # the step runs only where a sweep names it
    again = launch(cfg)  # the rows loading the absent file run again (and fail on it); nothing is published
    assert len(again) == 2 and all("synth_leaf_s0.pt" in o.error for o in again)
    assert not (relation / "synth_leaf_s0.pt").exists()
