"""Tests for bench/config/ (schema, digest, rows) and the name checks of bench/app/cli.py: defaults, overrides,
errors, run expansion, hashes."""

from __future__ import annotations

import contextlib
import hashlib
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from bench.app import cli
from bench.config import BenchConfig, ConfigError, RunConfig, TrainConfig, config_digest, dump_yaml, to_dict
from bench.config.overrides import command_args
from bench.hardware.accel import autocast_for
from bench.runs.sweep import load_config, run_configs, run_hash, run_name

REPO = Path(__file__).resolve().parents[3]


# ----------------------------------------------------------------------------- defaults and overrides
def test_demo_sweep_defaults_come_from_the_yaml_on_top_of_the_schema():
    cfg = load_config([])
    assert isinstance(cfg, BenchConfig)
    assert cfg.sweep == "demo"
    # from sweeps/demo.yaml (differ from the dataclass defaults)
    assert cfg.methods == ["zero_shot", "decoder_only", "adapter", "adapter+infosam"]
    assert cfg.datasets == ["synth_camo", "synth_polyp", "synth_leaf", "synth_road"]
    assert cfg.backbone.name == "litemedsam"
    assert cfg.backbone.img_size == 64
    assert cfg.train.epochs == 7
    # the demo leaves precision to the schema's "auto": no bf16 autocast on a CPU (emulated on AVX2 CPUs)
    assert cfg.train.precision == "auto"
    assert isinstance(autocast_for(torch.device("cpu"), cfg.train.precision), contextlib.nullcontext)
    # untouched schema defaults
    assert cfg.train.batch_size == 4
    assert cfg.train.lr == pytest.approx(2e-4)
    assert cfg.train.min_lr == pytest.approx(2e-5)
    assert cfg.launcher.name == "local"
    assert cfg.seeds == [0]


def test_overrides_apply_on_top_of_the_sweep():
    cfg = load_config(
        [
            "train.epochs=2",
            "datasets=[synth_polyp]",
            "launcher=inline",
            "seeds=[0,1]",
            "train.lr=0.001",
            "backbone.img_size=256",
        ]
    )
    assert cfg.train.epochs == 2
    assert isinstance(cfg.train.epochs, int)
    assert cfg.datasets == ["synth_polyp"]
    assert cfg.seeds == [0, 1]
    assert cfg.train.lr == pytest.approx(1e-3)
    assert cfg.backbone.img_size == 256
    # shorthand sets only the name; the other launcher keys keep the sweep's values and the defaults
    assert cfg.launcher.name == "inline"
    assert (cfg.launcher.max_parallel, cfg.launcher.runs_per_job, cfg.launcher.threads_per_job) == (2, 8, 1)
    assert cfg.launcher.timeout_min == 240
    # keys not overridden still come from the sweep file
    assert cfg.methods == ["zero_shot", "decoder_only", "adapter", "adapter+infosam"]


def test_later_override_wins_and_dotted_launcher_key_works():
    cfg = load_config(["train.epochs=2", "train.epochs=5", "launcher.name=slurm", "launcher.max_parallel=3"])
    assert cfg.train.epochs == 5
    assert cfg.launcher.name == "slurm"
    assert cfg.launcher.max_parallel == 3


def test_command_args_keep_everything_after_the_first_equals_sign():
    assert command_args(["a.b=x=y", "c="]) == {"a.b": "x=y", "c": ""}


# ----------------------------------------------------------------------------- config errors
@pytest.mark.parametrize(
    "override, must_contain",
    [
        ("foo=1", ["'foo'", "train", "methods"]),  # unknown top-level key, valid keys listed
        ("train.epochz=2", ["'train.epochz'", "epochs", "batch_size"]),  # unknown nested key
        ("launcher.nme=x", ["'launcher.nme'", "name", "max_parallel"]),
        ("train.epochs=abc", ["'train.epochs'", "abc"]),  # wrong type
        ("train.lr=fast", ["'train.lr'", "fast"]),
        ("seeds=[a]", ["seeds", "'a'"]),
    ],
)
def test_bad_override_raises_config_error_naming_the_key(override, must_contain):
    with pytest.raises(ConfigError) as info:
        load_config([override])
    message = str(info.value)
    for part in must_contain:
        assert part in message, f"{part!r} not in {message!r}"


@pytest.mark.parametrize("word", ["train.epochs", "=2", " train.epochs=2"])
def test_malformed_override_raises_naming_it(word):
    with pytest.raises(ConfigError) as info:
        load_config([word])
    assert repr(word) in str(info.value)
    assert "key=value" in str(info.value)


def test_unknown_sweep_lists_the_valid_ones():
    with pytest.raises(ConfigError) as info:
        load_config(["sweep=no_such_sweep"])
    assert "'no_such_sweep'" in str(info.value)
    assert "demo" in str(info.value)


def test_config_error_is_a_value_error():
    # callers that only know ValueError still catch configuration mistakes
    assert issubclass(ConfigError, ValueError)


# ----------------------------------------------------------------------------- CLI name checks
@pytest.mark.parametrize(
    "override, bad, valid",
    [
        ("methods=[no_such_method]", "no_such_method", ["adapter", "decoder_only", "zero_shot"]),
        ("methods=[adapter,no_such_peft+infosam]", "no_such_peft", ["adapter", "zero_shot"]),
        ("datasets=[no_such_dataset]", "no_such_dataset", ["synth_polyp", "synth_road"]),
        ("backbone.name=no_such_backbone", "no_such_backbone", ["tiny_sam", "litemedsam"]),
        ("teacher.backbone=no_such_teacher", "no_such_teacher", ["tiny_sam", "litemedsam"]),
    ],
)
def test_cli_unknown_name_exits_2_with_one_line_error(override, bad, valid, capsys, tmp_path):
    runs = tmp_path / "runs"
    code = cli.main(["run", override, "launcher=inline", f"runs_dir={runs}", f"data.cache_dir={tmp_path / 'c'}"])
    out, err = capsys.readouterr()
    assert code == 2
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ")
    assert repr(bad) in lines[0]
    for name in valid:
        assert name in lines[0]
    assert out == ""
    assert not runs.exists()  # nothing was launched


def test_cli_config_error_exits_2(capsys):
    code = cli.main(["train.epochz=1"])
    _, err = capsys.readouterr()
    assert code == 2
    assert err.startswith("error: ") and "train.epochz" in err


def test_cli_default_command_is_run(capsys, monkeypatch):
    seen = []
    monkeypatch.setattr(cli, "cmd_run", lambda args: seen.append(args) or "ran")
    assert cli.main(["train.epochs=1"]) == 0
    assert seen == [["train.epochs=1"]]
    assert capsys.readouterr().out == "ran\n"


# ----------------------------------------------------------------------------- run expansion
def test_run_expansion_is_methods_x_datasets_x_seeds_x_grid():
    cfg = load_config(["methods=[zero_shot,adapter]", "datasets=[synth_polyp,synth_leaf]", "seeds=[0,1,2]"])
    cfg.grid = {"train.lr": [1e-4, 2e-4], "train.epochs": [1, 2, 3]}
    runs = run_configs(cfg)
    assert len(runs) == 2 * 2 * 3 * 2 * 3
    assert all(isinstance(r, RunConfig) for r in runs)
    combos = {(r.method, r.dataset, r.seed, r.train.lr, r.train.epochs) for r in runs}
    assert len(combos) == len(runs)  # every combination exactly once
    assert {r.method for r in runs} == {"zero_shot", "adapter"}
    assert {r.train.epochs for r in runs} == {1, 2, 3}
    assert len({run_hash(r) for r in runs}) == len(runs)
    # methods vary slowest, grid points fastest
    assert [r.method for r in runs[:36]] == ["zero_shot"] * 36
    assert [r.train.epochs for r in runs[:3]] == [1, 2, 3]
    # sweep-level run keys reach every run
    assert all(r.backbone.name == "litemedsam" for r in runs)


def test_run_expansion_without_grid():
    cfg = load_config(["methods=[adapter]", "datasets=[synth_polyp]", "seeds=[3,4]", "train.epochs=7"])
    runs = run_configs(cfg)
    assert [(r.method, r.dataset, r.seed, r.train.epochs) for r in runs] == [
        ("adapter", "synth_polyp", 3, 7),
        ("adapter", "synth_polyp", 4, 7),
    ]


def test_grid_with_unknown_key_raises():
    cfg = load_config(["methods=[adapter]", "datasets=[synth_polyp]"])
    cfg.grid = {"train.no_such_key": [1, 2]}
    with pytest.raises(ConfigError, match="train.no_such_key"):
        run_configs(cfg)


# ----------------------------------------------------------------------------- run hash
def _run(**train) -> RunConfig:
    return RunConfig(method="adapter", dataset="synth_polyp", seed=0, train=TrainConfig(**train))


def test_run_hash_is_stable_across_calls_and_objects():
    a, b = _run(), _run()
    assert a is not b
    h = run_hash(a)
    assert len(h) == 10 and all(c in "0123456789abcdef" for c in h)
    assert run_hash(a) == h == run_hash(b)
    assert run_name(a) == f"synth_polyp__adapter__s0__{h}"


def test_run_hash_is_stable_across_processes():
    code = (
        "from bench.config import RunConfig; from bench.runs.sweep import run_hash; "
        "print(run_hash(RunConfig(method='adapter', dataset='synth_polyp', seed=0)))"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345", "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == run_hash(_run())


def test_the_schema_defaults_and_field_order_are_pinned():
    # the digest of the defaults (sorted JSON) and the YAML every run directory stores (field order) before and
    # after issue 29 (the YAML pin moved once more with issue 25's task.*, data.coco.*, data.folder.classes keys,
    # which stay out of the digest at their defaults, and with issue 28's data.hold_out_val and
    # train.weight_decay_groups, likewise, and with eval.also_test and the sweep's test_sets; and with issue 27's
    # train.tensorboard, which is in UNHASHED_KEYS, so the digest did not move, and the sweep's report.name, no run
    # key): a changed default or a reordered field re-runs every sweep, so it must be on purpose
    assert config_digest(to_dict(RunConfig())) == "ab1a0b8139"
    assert hashlib.sha256(dump_yaml(BenchConfig()).encode()).hexdigest()[:16] == "6f67de5db08d34b3"
    assert dump_yaml(RunConfig()).startswith("method: adapter\ndataset: synth_polyp\nprotocol: clean\nseed: 0\n")


def test_help_lists_the_fixed_choices_of_the_schema():
    from bench.app.help import help_text

    text = help_text()
    assert "optimizer{adam|adamw}" in text and "  launcher.*  name{local|inline|slurm}, max_parallel" in text
    assert "prompt{box|points|none}" in text and "batch_size," in text  # keys without choices stay bare


def test_run_hash_ignores_execution_only_keys():
    base = _run()
    h = run_hash(base)
    assert run_hash(_run(num_workers=4)) == h
    assert run_hash(_run(log_every=1)) == h
    assert run_hash(_run(device="cpu")) == h
    assert run_hash(replace(base, data=replace(base.data, cache_dir="/elsewhere", root="/data2"))) == h


def test_run_hash_changes_with_anything_that_changes_the_result():
    h = run_hash(_run())
    changed = [
        _run(lr=1e-3),
        _run(epochs=11),
        _run(structure_loss="unweighted_bce"),
        replace(_run(), seed=1),
        replace(_run(), method="decoder_only"),
        replace(_run(), peft={"ratio": 0.5}),
    ]
    hashes = [run_hash(r) for r in changed]
    assert h not in hashes
    assert len(set(hashes)) == len(hashes)


# ----------------------------------------------------------------------------- table rows with their own overrides
def test_method_entries_with_overrides_become_labelled_rows():
    cfg = load_config(["sweep=table4", "datasets=[synth_polyp]", "seeds=[0]"])
    runs = run_configs(cfg)
    assert [r.method for r in runs] == ["adapter"] + ["adapter+infosam"] * 3
    assert runs[1].distill == {"use_ld": False}
    assert runs[2].distill == {"use_lr": False, "lr_relation": "fixed_dot"}
    assert runs[3].distill == {}
    labels = [r.variant for r in runs]
    assert labels[0] == "" and len(set(labels)) == 4
    assert len({run_hash(r) for r in runs}) == 4


def test_grid_points_are_labelled_and_hashed_apart():
    cfg = load_config(["sweep=table11", "datasets=[synth_polyp]", "seeds=[0]"])
    runs = run_configs(cfg)
    assert [r.distill["alpha"] for r in runs] == [1.01, 2.0, 3.0]
    assert [r.variant for r in runs] == ["distill.alpha=1.01", "distill.alpha=2.0", "distill.alpha=3.0"]
    assert len({run_hash(r) for r in runs}) == 3


def test_bad_method_entry_raises():
    cfg = load_config(["methods=[{nam: adapter}]"])
    with pytest.raises(ConfigError, match="bad methods entry"):
        run_configs(cfg)


def test_cli_rejects_bad_method_options_before_launching(capsys, tmp_path):
    code = cli.main(["run", "methods=[zero_shot,adapter]", "peft.ratio=0.5", f"runs_dir={tmp_path}"])
    err = capsys.readouterr().err
    assert code == 2
    assert "zero_shot" in err and "ratio" in err
    assert not any(tmp_path.iterdir())


def test_cli_missing_checkpoint_exits_2_before_launching(capsys, tmp_path):
    runs = tmp_path / "runs"
    code = cli.main(
        ["run", "sweep=smoke", "backbone.checkpoint=/no/such/sam.pth", "launcher=inline", f"runs_dir={runs}"]
    )
    _, err = capsys.readouterr()
    assert code == 2 and err.splitlines() == ["error: backbone.checkpoint: checkpoint file not found: /no/such/sam.pth"]
    assert not runs.exists()


def test_cli_wrong_architecture_checkpoint_fails_the_run_naming_the_keys(capsys, tmp_path):
    import torch

    from bench.backbones import build_backbone
    from bench.config import BackboneConfig

    state = build_backbone(BackboneConfig(name="tiny_sam")).state_dict()
    state.pop("mask_decoder.iou_token.weight")
    state["extra.weight"] = torch.zeros(1)
    bad = tmp_path / "other_model.pth"
    torch.save(state, bad)
    args = ["run", "sweep=smoke", "methods=[zero_shot]", f"backbone.checkpoint={bad}", "launcher=inline"]
    code = cli.main([*args, f"runs_dir={tmp_path / 'runs'}", f"data.cache_dir={tmp_path / 'c'}"])
    out, _ = capsys.readouterr()
    failed = [line for line in out.splitlines() if "FAILED" in line]
    assert code == 1 and len(failed) == 1
    assert "does not fit" in failed[0] and "mask_decoder.iou_token.weight" in failed[0] and "extra.weight" in failed[0]


def test_cli_missing_real_dataset_exits_2_before_launching(capsys, tmp_path):
    runs = tmp_path / "runs"
    code = cli.main(["run", "sweep=smoke", "datasets=[kvasir]", f"data.root={tmp_path / 'data'}", f"runs_dir={runs}"])
    _, err = capsys.readouterr()
    assert code == 2 and len(err.splitlines()) == 1
    assert "dataset 'kvasir' is missing" in err and str(tmp_path / "data") in err and "prepare dataset=kvasir" in err
    assert not runs.exists()


@pytest.mark.parametrize(
    "name, message",
    [
        ("nope", r"unknown method 'nope'; valid: a PEFT method \(adapter, .*\), a distiller \(.*infosam.*\)"),
        ("lora+nope", r"unknown method 'lora\+nope': no distiller 'nope'; valid: .*infosam"),
        ("nope+infosam", r"unknown method 'nope\+infosam': no PEFT method 'nope'; valid: adapter, .*lora"),
    ],
)
def test_unknown_method_names_the_bad_part_and_its_choices(name, message):
    from bench.contracts.methods import resolve_method

    with pytest.raises(ConfigError, match=message):
        resolve_method(name)


@pytest.mark.parametrize("name", ["demo", "table5", "lambda_grid", "table11"])
def test_run_count_is_the_number_of_runs_the_sweep_expands_to(name):
    from bench.runs.sweep import run_count

    cfg = load_config([f"sweep={name}"])
    assert run_count(cfg) == len(run_configs(cfg)) > 1
