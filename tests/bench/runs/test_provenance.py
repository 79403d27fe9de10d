"""The reproducibility record of ``metrics.json`` and the mixed-provenance warnings of status/report."""

from __future__ import annotations

import json

import torch

from bench.app.cli import main
from bench.runs.provenance import gpu_driver, gpu_record, mixed_provenance
from bench.runs.source import REPO, archive_commit


def test_metrics_json_records_code_packages_device_weights_and_command(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("SAMFIT_COMMAND", raising=False)
    args = ["sweep=smoke", "methods=[zero_shot]", f"runs_dir={tmp_path / 'runs'}", "launcher=inline"]
    assert main(args + [f"data.cache_dir={tmp_path / 'cache'}"]) == 0
    (record,) = [json.loads(p.read_text()) for p in (tmp_path / "runs").glob("*/metrics.json")]
    prov = record["provenance"]
    source = prov["source"]  # a checkout, or a source archive (git archive, "Download ZIP") without .git
    assert source["kind"] in ("git", "archive") and len(source["digest"]) == 64 and prov["commit"] == source["commit"]
    if source["kind"] == "git":
        assert len(prov["commit"]) == 40 and isinstance(prov["dirty"], bool)
    else:  # the commit git archive wrote into .git_archival.txt (None in a copy made otherwise); dirty unknown
        assert prov["commit"] == archive_commit(REPO) and prov["dirty"] is None
    assert prov["torch"]["version"] == torch.__version__ and prov["torch"]["cuda"] == torch.version.cuda
    assert "cudnn" in prov["torch"] and prov["gpu"] is None  # a CPU run: no GPU name, no driver
    assert set(prov["packages"]) == {"torch", "torchvision", "segment_anything", "sam2", "py_sod_metrics", "numpy"}
    assert prov["packages"]["torch"].startswith("2.") and prov["device"].startswith("cpu")
    assert prov["student_weights"] == {
        "backbone": "tiny_sam",
        "checkpoint": None,
        "sha256": None,
        "weights_id": "tiny_sam_seed0",
        "random_init": False,
        "random_by_method": False,
    }
    assert prov["command"].startswith("python run_benchmark.py sweep=smoke 'methods=[zero_shot]' runs_dir=")


def _record(
    run: str, commit: str = "a" * 40, torch: str = "2.1", sha: str = "s1", random: bool = False, digest: str = "d1"
) -> dict:
    weights = {"backbone": "sam_vit_b", "sha256": sha, "weights_id": sha[:16], "random_init": random}
    prov = {"commit": commit, "dirty": False, "packages": {"torch": torch}, "student_weights": weights}
    return {"run": run, "provenance": {**prov, "source": {"kind": "git", "digest": digest, "commit": commit}}}


def test_agreeing_runs_give_no_warning():
    assert mixed_provenance([_record("a"), _record("b")]) == []


def test_different_commits_packages_and_weights_are_each_named():
    notes = mixed_provenance([_record("a"), _record("b", commit="b" * 40, torch="2.2", sha="s2")])
    text = "\n".join(notes)
    assert "different commits" in text and "a" * 40 in text and "b" * 40 in text
    assert "different torch versions: 2.1, 2.2" in text
    assert "different sam_vit_b weights: s1, s2" in text


def test_different_source_digests_are_named_and_old_records_without_one_are_not_compared():
    archive = _record("b", commit=None, digest="d2")
    archive["provenance"]["source"]["kind"] = "archive"
    assert "runs come from different source trees (digest): d1, d2" in mixed_provenance([_record("a"), archive])
    old = _record("old")
    del old["provenance"]["source"]
    assert mixed_provenance([_record("a"), old]) == []


def test_random_init_runs_and_runs_without_a_record_are_marked():
    notes = mixed_provenance([_record("r", random=True, sha=""), {"run": "old"}])
    assert any("RANDOM" in n and "r" in n for n in notes)
    assert any("1 run(s) have no provenance record" in n for n in notes)


def test_status_warns_when_the_runs_of_a_table_differ(tmp_path, capsys):
    runs = tmp_path / "runs"
    base = ["sweep=smoke", f"runs_dir={runs}", "launcher=inline", f"data.cache_dir={tmp_path / 'c'}"]
    assert main(base) == 0
    first = sorted(runs.glob("*/metrics.json"))[0]
    record = json.loads(first.read_text())
    record["provenance"]["packages"]["numpy"] = "0.0-other"
    first.write_text(json.dumps(record))
    capsys.readouterr()
    assert main(["status", *base]) == 0
    assert "warning: runs come from different numpy versions" in capsys.readouterr().out


def test_the_gpu_driver_comes_from_nvidia_smi_and_is_none_when_it_is_absent_or_fails(tmp_path, monkeypatch):
    smi = tmp_path / "nvidia-smi"
    monkeypatch.setenv("PATH", str(tmp_path))
    assert gpu_driver() is None  # absent
    smi.write_text("#!/bin/sh\necho 550.54.15\necho 550.54.15\n")
    smi.chmod(0o755)
    assert gpu_driver() == "550.54.15"
    smi.write_text("#!/bin/sh\necho 'NVIDIA-SMI has failed' >&2\nexit 9\n")
    assert gpu_driver() is None
    assert gpu_record(None) is None and gpu_record(torch.device("cpu")) is None
