"""Bad values are refused before launch with one line naming the key (issue 20 rows 2-6, 14): the rules are the
schema's field metadata (bench/config/schema.py), checked by one walker (bench/config/checks.py) at load time."""

from __future__ import annotations

import dataclasses
import logging
import shutil
from typing import Any

import pytest

import bench.runs.sweep
from bench.app.cli import cmd_list, main
from bench.config import BenchConfig, ConfigError, Range, RunConfig, run_from_dict, to_dict
from bench.runs.sweep import load_config, run_configs


@pytest.mark.parametrize(
    "override, message",
    [
        ("train.epochs=-1", "train.epochs must be >= 1, got -1"),
        ("train.batch_size=0", "train.batch_size must be >= 1, got 0"),
        ("train.batch_size=-1", "train.batch_size must be >= 1, got -1"),
        ("train.log_every=0", "train.log_every must be >= 1, got 0"),
        ("train.box_prob=7", "train.box_prob must be <= 1, got 7.0"),
        ("train.lr=0", "train.lr must be > 0, got 0.0"),
        ("train.lr=nan", "train.lr must be a finite number, got nan"),
        ("eval.batch_size=0", "eval.batch_size must be >= 1, got 0"),
        ("seeds=[0,-2]", "seeds must be >= 0, got -2"),
        ("launcher.max_parallel=0", "launcher.max_parallel must be >= 1, got 0"),
        # checks that the launcher and the runner made once a run had started (issue 29)
        ("launcher=nope", "unknown launcher.name 'nope'; valid: local, inline, slurm"),
        ("launcher.gpus_per_run=0", "launcher.gpus_per_run must be >= 1, got 0"),
        ("launcher.threads_per_job=0", "launcher.threads_per_job must be >= 1, got 0"),
        ("eval.prompt=boxes", "unknown eval.prompt 'boxes'; valid: box, points, none"),
        ("data.folder.eval_prompt=none", "unknown data.folder.eval_prompt 'none'; valid: box, points"),
        ("train.optimizer=sgd", "unknown train.optimizer 'sgd'; valid: adam, adamw"),
        ("report.checkpoint=best", "unknown report.checkpoint 'best'; valid: reported, best_of_last"),
        (
            "train.epochs=",
            "override train.epochs= has no value (use train.epochs=null for none, train.epochs='' for an empty string)",
        ),
        (
            "methods=[adapter",
            "malformed override 'methods=[adapter': no viable alternative at input '[adapter' "
            "(expected key=value, e.g. train.epochs=2)",
        ),
    ],
)
def test_bad_values_are_refused_naming_the_key(override, message):
    with pytest.raises(ConfigError) as info:
        load_config(["sweep=smoke", override])
    assert str(info.value) == message


def _rules(cls: type, prefix: str = "") -> list[tuple[str, Any]]:
    """(dotted key, Range or choices) of every schema field that carries a rule, nested sections included."""
    out = []
    for f in dataclasses.fields(cls):
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        if dataclasses.is_dataclass(default):
            out += _rules(type(default), f"{prefix}{f.name}.")
        out += [(prefix + f.name, f.metadata[k]) for k in ("range", "choices") if k in f.metadata]
    return out


def _breaking(rule: Any) -> Any:
    """A value that breaks ``rule``: just below a Range's low end (at it when ``above``) or above its high
    end; a string outside the choices."""
    if not isinstance(rule, Range):
        return "nope"
    if rule.low is not None:
        return int(rule.low) if rule.above else int(rule.low) - 1
    return int(rule.high) + 1


RULES = _rules(BenchConfig)


def test_the_schema_carries_the_rules_of_every_section():
    keys = {key for key, _ in RULES}
    assert {"seed", "seeds", "train.lr", "eval.prompt", "launcher.name", "report.checkpoint"} <= keys
    assert {"data.synth.val_size", "data.folder.test_fraction", "slurm.mem_gb", "backbone.mask_tokens"} <= keys
    # the protocol-level strings are schema choices too: one place checks them, at load time
    assert {"data.preprocess", "train.schedule", "train.cosine_horizon", "eval.select", "report.metrics"} <= keys


@pytest.mark.parametrize("key, rule", RULES, ids=[key for key, _ in RULES])
def test_every_rule_of_the_schema_is_checked_at_load_time(key, rule):
    value = _breaking(rule)
    with pytest.raises(ConfigError) as info:
        load_config(["sweep=smoke", f"{key}={[value] if key == 'seeds' else value}"])
    expected = f"unknown {key} 'nope'; valid: " if not isinstance(rule, Range) else f"{key} must be "
    assert str(info.value).startswith(expected), str(info.value)


def test_null_and_every_choice_pass_where_the_schema_allows_them():
    assert load_config(["sweep=smoke", "eval.prompt=null"]).eval.prompt is None
    for prompt in ("box", "points", "none"):
        assert load_config(["sweep=smoke", f"eval.prompt={prompt}"]).eval.prompt == prompt
    assert load_config(["sweep=smoke", "launcher.threads_per_job=null"]).launcher.threads_per_job is None


def test_a_bad_choice_in_a_grid_point_or_a_row_is_refused_before_any_run(tmp_path):
    cfg = load_config(["sweep=smoke", "grid={eval.prompt: [box, boxes]}"])
    with pytest.raises(ConfigError, match="unknown eval.prompt 'boxes'; valid: box, points, none"):
        run_configs(cfg)
    cfg = load_config(["sweep=smoke", "methods=[{name: adapter, set: {train.optimizer: sgd}}]"])
    with pytest.raises(ConfigError, match="unknown train.optimizer 'sgd'"):
        run_configs(cfg)


def test_a_bad_launcher_exits_2_before_anything_runs(capsys, tmp_path):
    runs = tmp_path / "runs"
    assert main(["run", "sweep=smoke", "launcher=nope", f"runs_dir={runs}"]) == 2
    assert capsys.readouterr().err == "error: unknown launcher.name 'nope'; valid: local, inline, slurm\n"
    assert not runs.exists()


def test_a_run_config_read_back_is_checked_too():
    data = to_dict(RunConfig())
    assert run_from_dict(data) == RunConfig()
    data["eval"]["prompt"] = "boxes"
    with pytest.raises(ConfigError, match="unknown eval.prompt 'boxes'"):
        run_from_dict(data)
    data["eval"]["prompt"], data["train"]["batch_size"] = None, 0
    with pytest.raises(ConfigError, match="train.batch_size must be >= 1, got 0"):
        run_from_dict(data)


def test_a_type_error_names_the_key():
    with pytest.raises(ConfigError, match="'train.batch_size'"):
        load_config(["train.batch_size=four"])


def test_a_grid_point_out_of_range_is_refused(tmp_path):
    cfg = load_config(["sweep=smoke", "grid={train.box_prob: [0.5, 2]}"])
    with pytest.raises(ConfigError, match="train.box_prob must be <= 1, got 2"):
        run_configs(cfg)


def test_the_cli_prints_one_line_and_exits_2(capsys):
    assert main(["status", "sweep=smoke", "train.epochs=-1"]) == 2
    err = capsys.readouterr().err
    assert err == "error: train.epochs must be >= 1, got -1\n"


def test_a_scalar_for_a_list_key_is_a_one_element_list():
    cfg = load_config(["sweep=smoke", "methods=adapter", "datasets=synth_polyp", "seeds=3"])
    assert (cfg.methods, cfg.datasets, cfg.seeds) == (["adapter"], ["synth_polyp"], [3])


def test_duplicate_methods_datasets_seeds_run_once(caplog):
    with caplog.at_level(logging.WARNING):
        cfg = load_config(["sweep=smoke", "methods=[adapter,adapter]", "datasets=[synth_polyp]", "seeds=[0,0,1]"])
    assert cfg.methods == ["adapter"] and cfg.seeds == [0, 1]
    assert len(run_configs(cfg)) == 2
    assert "methods lists 'adapter' more than once; it runs once" in caplog.text


@pytest.mark.parametrize(
    "overrides",
    [["methods=[adapter,{name: adapter}]"], ["methods=[adapter]", "train.lr=1e-4,1e-4"]],
    ids=["a_row_as_name_and_as_mapping", "a_repeated_grid_value"],
)
def test_two_spellings_of_one_run_run_once(overrides, caplog, tmp_path):
    args = ["sweep=smoke", "datasets=[synth_polyp]", "seeds=[0]", f"runs_dir={tmp_path}", *overrides]
    with caplog.at_level(logging.WARNING):
        runs = run_configs(load_config(args))
    assert len(runs) == 1
    assert "more than once; it runs once" in caplog.text


@pytest.fixture
def sweeps_copy(tmp_path, monkeypatch):
    folder = tmp_path / "sweeps"
    folder.mkdir()
    for name in ("smoke", "demo"):
        shutil.copy(bench.runs.sweep.SWEEPS_DIR / f"{name}.yaml", folder)
    (folder / "bad.yaml").write_text("methods: [adapter\ndatasets: [synth_polyp]\n")
    monkeypatch.setattr(bench.runs.sweep, "SWEEPS_DIR", folder)
    return folder


def test_a_malformed_sweep_file_is_one_line_naming_file_and_line(sweeps_copy):
    with pytest.raises(ConfigError) as info:
        load_config(["sweep=bad"])
    assert str(info.value).startswith(f"{sweeps_copy / 'bad.yaml'}:2: malformed YAML: ")
    assert "\n" not in str(info.value)


def test_list_marks_the_broken_sweep_and_lists_the_others(sweeps_copy):
    lines = {line.split()[0]: line for line in cmd_list([]).splitlines() if line.startswith("  ")}
    assert "BROKEN:" in lines["bad"] and "bad.yaml:2" in lines["bad"]
    assert lines["smoke"].rstrip().endswith("runs") and lines["demo"].rstrip().endswith("runs")
