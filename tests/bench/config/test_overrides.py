"""Command-line overrides in Hydra's grammar (bench.config.overrides) as load_config applies them."""

from __future__ import annotations

import pytest

from bench.config import ConfigError, TrainConfig
from bench.runs.sweep import load_config, run_configs


def test_a_comma_list_is_a_sweep_value_for_list_keys():
    cfg = load_config(["sweep=smoke", "seeds=0,1,2", "methods=adapter,lora", "datasets=synth_polyp"])
    assert cfg.seeds == [0, 1, 2] and cfg.methods == ["adapter", "lora"]
    assert len(run_configs(cfg)) == 6


def test_a_comma_list_on_a_scalar_key_is_a_grid_axis():
    cfg = load_config(["sweep=smoke", "methods=adapter", "datasets=synth_polyp", "seeds=0", "train.lr=1e-4,2e-4"])
    assert cfg.grid == {"train.lr": [1e-4, 2e-4]}
    assert [run.train.lr for run in run_configs(cfg)] == [1e-4, 2e-4]


def test_plus_adds_a_key_and_refuses_one_already_set():
    assert load_config(["sweep=smoke", "+peft.r=8"]).peft == {"r": 8}
    with pytest.raises(ConfigError, match="train.epochs is already set; use train.epochs="):
        load_config(["sweep=smoke", "+train.epochs=3"])


def test_tilde_resets_a_schema_key_and_removes_a_free_form_one():
    assert load_config(["sweep=smoke", "train.epochs=7"]).train.epochs == 7
    assert load_config(["sweep=smoke", "train.epochs=7", "~train.epochs"]).train.epochs == TrainConfig.epochs
    assert load_config(["sweep=smoke", "peft.r=8", "peft.alpha=4", "~peft.r"]).peft == {"alpha": 4}
    with pytest.raises(ConfigError, match="peft.nope is not set"):
        load_config(["sweep=smoke", "~peft.nope"])


def test_quotes_keep_commas_and_spaces_and_an_empty_value_is_explicit():
    cfg = load_config(["sweep=smoke", "data.root='my data, v2'", "train.device=cuda:0"])
    assert cfg.data.root == "my data, v2" and cfg.train.device == "cuda:0"
    assert load_config(["sweep=smoke", "data.root=''"]).data.root == ""
    with pytest.raises(ConfigError, match="has no value"):
        load_config(["sweep=smoke", "data.root="])


def test_the_older_forms_keep_working():
    cfg = load_config(["sweep=smoke", "methods=[adapter,lora]", "launcher=inline", "device=cpu", "metrics=clean"])
    assert cfg.methods == ["adapter", "lora"] and cfg.launcher.name == "inline"
    assert cfg.train.device == "cpu" and cfg.report.metrics == "clean"


def test_sweep_takes_one_name():
    with pytest.raises(ConfigError, match="sweep takes one name"):
        load_config(["sweep=smoke,demo"])


def test_help_prints_the_commands_groups_grammar_and_option_help(capsys):
    from bench.app.cli import COMMANDS, main

    assert main(["--help"]) == 0 and main(["-h"]) == 0
    text = capsys.readouterr().out
    assert all(f"\n  {command} " in text for command in COMMANDS)
    assert "  train.*     epochs, batch_size" in text and "key=a,b,c" in text
    assert "    r = 4  rank of each low-rank update (InfoSAM: 4)" in text  # LoraOptions' metadata help


def test_list_method_prints_that_methods_options_namespaced_per_part(capsys):
    from bench.app.cli import main

    assert main(["list", "method=lora+tinysam+rm"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "method lora+tinysam+rm: PEFT lora + distiller(s) tinysam, rm"
    assert "  distill.tinysam.* (tinysam)" in lines and "  distill.rm.* (rm)" in lines
    assert "    lambda2 = 0.5  weight λ2 of L_d (Eq. 14)" in lines
    assert main(["list", "method=nope"]) == 2
