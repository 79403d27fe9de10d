"""Bad values are refused before launch with one line naming the key (issue 20 rows 2-6, 14)."""

from __future__ import annotations

import logging
import shutil

import pytest

import bench.runs.sweep
from bench.app.cli import cmd_list, main
from bench.config import ConfigError
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
