"""End-to-end runs on tiny_sam and tiny synthetic data: resume, skip, cache, failures, launchers, Slurm params."""

from __future__ import annotations

import json
import os

import pytest
import torch

import bench.data.encoders
import bench.runs.runner
import bench.train.trainer
from bench.config import ConfigError
from bench.data.cache import EncoderCache
from bench.runs.launcher import launch, make_executor, slurm_parameters
from bench.runs.results import FAILED_FILE, METRICS_FILE, RunDir
from bench.runs.runner import execute_run
from bench.runs.sweep import run_configs
from bench.train.trainer import NonFiniteLossError
from tests.tiny_runs import REPO, metric_values, single_run, sweep, sweep_args  # noqa: F401


class Interrupted(Exception):
    pass


# ----------------------------------------------------------------------------- (a) resume
def test_interrupted_run_resumes_to_the_same_result(tmp_path, monkeypatch):
    cfg_a = sweep(tmp_path, runs="a")
    cfg_b = sweep(tmp_path, runs="b")
    run = single_run(cfg_a)
    assert single_run(cfg_b) == run
    record_a = execute_run(run, cfg_a.runs_dir)
    dir_a, dir_b = RunDir(cfg_a.runs_dir, run).path, RunDir(cfg_b.runs_dir, run).path
    assert dir_a.name == dir_b.name

    real_save = bench.train.trainer.save_checkpoint
    saved_epochs: list[int] = []

    def save_then_stop(path, payload):
        real_save(path, payload)
        saved_epochs.append(payload["epoch"])
        if payload["epoch"] == 1:
            raise Interrupted("preempted after epoch 1")

    monkeypatch.setattr(bench.train.trainer, "save_checkpoint", save_then_stop)
    with pytest.raises(Interrupted):
        execute_run(run, cfg_b.runs_dir)
    assert saved_epochs == [1]
    assert not (dir_b / METRICS_FILE).exists()
    assert (dir_b / "checkpoint.pt").is_file()
    assert "Interrupted" in json.loads((dir_b / FAILED_FILE).read_text())["error"]

    record_b = execute_run(run, cfg_b.runs_dir)
    assert saved_epochs == [1, 2]  # the second call trained epoch 2 only: it resumed
    assert not (dir_b / FAILED_FILE).exists()
    assert record_b["metrics"] == record_a["metrics"]
    assert metric_values(dir_b) == metric_values(dir_a)
    assert (dir_b / "train_log.csv").read_text() == (dir_a / "train_log.csv").read_text()
    assert (dir_b / "per_image.csv").read_text() == (dir_a / "per_image.csv").read_text()
    # the log covers both epochs, including the one trained before the interruption
    lines = (dir_b / "train_log.csv").read_text().splitlines()
    assert lines[0].startswith("epoch,step,lr,loss") and {ln.split(",")[0] for ln in lines[1:]} == {"1", "2"}


# ----------------------------------------------------------------------------- (b) skip complete runs
def test_complete_run_is_skipped(tmp_path, monkeypatch):
    cfg = sweep(tmp_path, "train.epochs=1")
    outcomes = launch(cfg)
    assert len(outcomes) == 1 and outcomes[0].error is None
    run = single_run(cfg)
    rd = RunDir(cfg.runs_dir, run)
    assert rd.is_complete()
    assert outcomes[0].record == rd.read_metrics()
    assert launch(cfg) == []  # nothing pending

    def must_not_train(*args, **kwargs):
        raise AssertionError("a complete run was trained again")

    monkeypatch.setattr(bench.runs.runner, "train", must_not_train)
    monkeypatch.setattr(bench.runs.runner, "build_parts", must_not_train)
    mtime = (rd.path / METRICS_FILE).stat().st_mtime_ns
    assert execute_run(run, cfg.runs_dir) == rd.read_metrics()
    assert (rd.path / METRICS_FILE).stat().st_mtime_ns == mtime
    # a different config is not complete: the patched trainer is reached (and its failure reported)
    other = launch(sweep(tmp_path, "train.epochs=1", "train.lr=0.001"))
    assert len(other) == 1 and "a complete run was trained again" in other[0].error


def test_unknown_launcher_raises(tmp_path):
    with pytest.raises(ConfigError, match="no_such_launcher"):
        launch(sweep(tmp_path, "launcher=no_such_launcher"))


# ----------------------------------------------------------------------------- (c) encoder cache
@pytest.mark.numerics
def test_cold_and_warm_cache_give_identical_results(tmp_path, monkeypatch):
    caches: list[EncoderCache] = []

    class Recording(EncoderCache):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            caches.append(self)

    monkeypatch.setattr(bench.data.encoders, "EncoderCache", Recording)
    cold_cfg, warm_cfg = sweep(tmp_path, runs="cold"), sweep(tmp_path, runs="warm")
    run = single_run(cold_cfg)
    cold = execute_run(run, cold_cfg.runs_dir)
    assert len(caches) == 1
    cold_cache = caches.pop()
    assert cold_cache.stop == 3  # patch embedding + blocks 0, 1 are frozen by the adapter (start_block 2)
    assert cold_cache.misses == 8 + 4 + 4  # every train, validation and test image computed once
    entries = list(cold_cache.dir.rglob("*.npy"))
    assert len(entries) == 16

    warm = execute_run(run, warm_cfg.runs_dir)
    warm_cache = caches.pop()
    assert warm_cache.dir == cold_cache.dir
    # 2 epochs of 8 training images, the 4 validation images after each epoch (eval.select=val_best), 4 test
    assert warm_cache.misses == 0 and warm_cache.hits == 2 * 8 + 2 * 4 + 4
    assert warm["metrics"] == cold["metrics"]
    cold_dir, warm_dir = RunDir(cold_cfg.runs_dir, run).path, RunDir(warm_cfg.runs_dir, run).path
    assert (cold_dir / "train_log.csv").read_text() == (warm_dir / "train_log.csv").read_text()


@pytest.mark.numerics
def test_cache_entries_are_the_fp16_frozen_prefix(tmp_path):
    from bench.backbones import build_backbone
    from bench.config import BackboneConfig

    backbone = build_backbone(BackboneConfig(name="tiny_sam"))
    images = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    cache = EncoderCache(tmp_path, backbone, stop=2)
    first, _ = cache(images)
    second, _ = EncoderCache(tmp_path, backbone, stop=2)(images)
    expected = backbone.encode_prefix(images, 2)[0].detach().half().float()
    assert torch.equal(first, expected) and torch.equal(second, expected)
    assert (cache.hits, cache.misses) == (0, 2)
    other = EncoderCache(tmp_path, backbone, stop=3)  # another cut point never reads these entries
    other(images)
    assert other.misses == 2


def test_cache_entries_computed_another_way_are_never_read(tmp_path):
    """States computed under bf16 autocast (or other kernels) are other floats: a fp32 run must miss them."""
    from bench.backbones import build_backbone
    from bench.config import BackboneConfig
    from bench.hardware.accel import compute_tag

    cpu = torch.device("cpu")
    assert compute_tag(cpu, "auto", True) == "cpu-fp32-cl" and compute_tag(cpu, "bf16", False) == "cpu-bf16"
    backbone = build_backbone(BackboneConfig(name="tiny_sam"))
    images = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        EncoderCache(tmp_path, backbone, stop=2, compute=compute_tag(cpu, "bf16", True))(images)
    fp32 = EncoderCache(tmp_path, backbone, stop=2, compute=compute_tag(cpu, "auto", True))
    got, _ = fp32(images)
    assert (fp32.hits, fp32.misses) == (0, 2)
    assert torch.equal(got, backbone.encode_prefix(images, 2)[0].detach().half().float())


@pytest.mark.numerics
def test_cached_block_outputs_equal_the_live_ones_and_share_the_state(tmp_path):
    from bench.backbones import build_backbone
    from bench.config import BackboneConfig
    from bench.data.encoders import CachedEncoder

    teacher = build_backbone(BackboneConfig(name="tiny_sam"))
    teacher.requires_grad_(False)
    images = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        z, live = teacher.encode(images, blocks=(1, 3))
        encoder = CachedEncoder(teacher, str(tmp_path), blocks=(3, 1))
        assert encoder.stop == len(teacher.encoder_steps()) and encoder.cache.blocks == (1, 3)
        cold_z, cold = encoder(images)
        warm_z, warm = CachedEncoder(teacher, str(tmp_path), blocks=(1, 3))(images)
        # a request for other blocks reuses the stored state and computes only the new block file
        other = CachedEncoder(teacher, str(tmp_path), blocks=(1,))
        other_z, _ = other(images)
    assert other.cache.hits == 2
    for got_z, got in ((cold_z, cold), (warm_z, warm)):
        torch.testing.assert_close(got_z, z.half().float(), rtol=0, atol=0)
        assert set(got) == {1, 3}
        for b in (1, 3):
            torch.testing.assert_close(got[b], live[b].half().float(), rtol=0, atol=0)
    assert torch.equal(other_z, cold_z)
    with pytest.raises(ValueError, match="requested block"):
        CachedEncoder(teacher, str(tmp_path), blocks=(7,))


# ----------------------------------------------------------------------------- (d) non-finite loss
def test_nan_loss_fails_the_run(tmp_path, monkeypatch):
    def nan_loss(logits, target, variant="weighted"):
        return logits.sum() * float("nan")

    monkeypatch.setattr(bench.train.trainer, "structure_loss", nan_loss)
    cfg = sweep(tmp_path)
    run = single_run(cfg)
    with pytest.raises(NonFiniteLossError, match="nan"):
        execute_run(run, cfg.runs_dir)
    rd = RunDir(cfg.runs_dir, run)
    assert not rd.is_complete()
    error = json.loads((rd.path / FAILED_FILE).read_text())["error"]
    assert error.startswith("NonFiniteLossError") and "epoch 1 step 1" in error
    assert not (rd.path / "checkpoint.pt").exists()  # stopped before the first epoch ended


def test_nan_loss_is_reported_by_the_inline_launcher(tmp_path, monkeypatch):
    monkeypatch.setattr(bench.train.trainer, "structure_loss", lambda logits, target, variant: logits.sum() / 0.0)
    outcomes = launch(sweep(tmp_path, "methods=[decoder_only]"))
    assert len(outcomes) == 1 and outcomes[0].record is None
    assert outcomes[0].error.startswith("NonFiniteLossError")


# ----------------------------------------------------------------------------- (e) local launcher
def test_local_launcher_runs_in_a_subprocess(tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    cfg = sweep(tmp_path, "launcher.name=local", "methods=[zero_shot]", "data.synth.test_size=2")
    outcomes = launch(cfg)
    assert len(outcomes) == 1
    assert outcomes[0].error is None, outcomes[0].error
    rd = RunDir(cfg.runs_dir, single_run(cfg))
    assert rd.is_complete()
    assert outcomes[0].record == rd.read_metrics()
    assert rd.read_metrics()["num_test_images"] == 2
    # it ran elsewhere: submitit wrote the job's logs and result
    assert list((tmp_path / "submitit").rglob("*_result.pkl"))


def test_local_launcher_groups_runs_and_isolates_failures(tmp_path, monkeypatch):
    """Two runs in one job: the bad one fails with its reason, the good one still completes."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    cfg = sweep(
        tmp_path,
        "launcher.name=local",
        "launcher.runs_per_job=2",
        "methods=[zero_shot,adapter]",
        "data.synth.test_size=2",
        "peft.ratio=0.5",
    )
    outcomes = launch(cfg)
    assert [o.run.method for o in outcomes] == ["zero_shot", "adapter"]
    assert len(list((tmp_path / "submitit").glob("*_submitted.pkl"))) == 1  # one job for both runs
    zero, adapter = outcomes
    assert "peft method 'zero_shot'" in zero.error and "ratio" in zero.error
    assert adapter.error is None and RunDir(cfg.runs_dir, adapter.run).is_complete()


# ----------------------------------------------------------------------------- (f) Slurm parameters
SLURM_OVERRIDES = (
    "launcher.name=slurm",
    "launcher.timeout_min=30",
    "slurm.partition=gpu",
    "slurm.account=proj1",
    "slurm.qos=high",
    "slurm.array_parallelism=4",
    "slurm.constraint=a100",
    "slurm.setup=[module load cuda,source env/bin/activate]",
    "slurm.additional={reservation: r1, exclusive: true}",
)


def test_slurm_parameters_map_to_submitit_names(tmp_path):
    params = slurm_parameters(sweep(tmp_path, *SLURM_OVERRIDES))
    assert params["slurm_partition"] == "gpu"
    assert params["slurm_account"] == "proj1"
    assert params["slurm_qos"] == "high"
    assert params["slurm_constraint"] == "a100"
    assert params["slurm_array_parallelism"] == 4
    assert params["slurm_setup"] == ["module load cuda", "source env/bin/activate"]
    assert params["slurm_additional_parameters"] == {"reservation": "r1", "exclusive": True}
    assert params["timeout_min"] == 30 and params["gpus_per_node"] == 1
    # unset optional keys are left out rather than passed as None
    plain = slurm_parameters(sweep(tmp_path, "launcher.name=slurm"))
    assert not {"slurm_partition", "slurm_account", "slurm_qos", "slurm_setup", "slurm_additional_parameters"} & set(
        plain
    )


def test_make_executor_accepts_the_slurm_parameters(tmp_path):
    executor = make_executor(sweep(tmp_path, *SLURM_OVERRIDES), cluster="debug")
    assert executor.cluster == "debug"


def test_slurm_parameters_reach_the_sbatch_script(tmp_path, monkeypatch):
    from submitit.slurm.slurm import SlurmExecutor

    monkeypatch.setattr(SlurmExecutor, "affinity", classmethod(lambda cls: 2))  # pretend srun exists
    executor = make_executor(sweep(tmp_path, *SLURM_OVERRIDES))
    assert executor.cluster == "slurm"
    text = executor._executor._make_submission_file_text("python job.py", "uid")
    for line in (
        "#SBATCH --partition=gpu",
        "#SBATCH --account=proj1",
        "#SBATCH --qos=high",
        "#SBATCH --constraint=a100",
        "#SBATCH --reservation=r1",
        "#SBATCH --time=30",
        "#SBATCH --gpus-per-node=1",
        "module load cuda",
        "source env/bin/activate",
    ):
        assert line in text, line
    assert executor._executor.parameters["array_parallelism"] == 4


def test_epochs_default_to_the_dataset_protocol(tmp_path):
    """train.epochs unset: 20 epochs on a road dataset (the paper's protocol), 10 elsewhere."""
    for dataset, expected in (("synth_road", 20), ("synth_polyp", 10)):
        cfg = sweep(
            tmp_path, f"datasets=[{dataset}]", "train.epochs=null", "train.max_steps_per_epoch=1", "train.log_every=1"
        )
        run = single_run(cfg)
        assert run.train.epochs is None
        execute_run(run, cfg.runs_dir)
        lines = (RunDir(cfg.runs_dir, run).path / "train_log.csv").read_text().splitlines()[1:]
        assert sorted({int(line.split(",")[0]) for line in lines}) == list(range(1, expected + 1))


def test_jobs_are_dealt_out_so_parallel_jobs_get_the_same_mix_of_methods(tmp_path):
    from bench.runs.launcher import _groups

    cfg = sweep(tmp_path, "methods=[zero_shot,decoder_only,adapter,adapter+infosam]", "seeds=[0,1]")
    runs = run_configs(cfg)  # method by method
    groups = _groups(runs, 4)
    assert [len(g) for g in groups] == [4, 4]
    assert sorted(r.method for r in groups[0]) == sorted(r.method for r in groups[1])
    assert sorted((r.method, r.seed) for g in groups for r in g) == sorted((r.method, r.seed) for r in runs)
    assert [len(g) for g in _groups(runs, 3)] == [3, 3, 2] and _groups(runs, 8) == [runs]


def test_threads_per_job_sets_the_job_threads_and_is_checked(tmp_path):
    from bench.runs.launcher import RunJob

    before = torch.get_num_threads()
    try:
        assert RunJob()([], str(tmp_path), threads=2) == []
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    with pytest.raises(ConfigError, match="threads_per_job"):
        launch(sweep(tmp_path, "launcher.threads_per_job=0"))
