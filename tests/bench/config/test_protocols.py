"""Named protocols: the preset, per-method defaults, the InfoSAM box jitter, preprocessing, schedule,
checkpoint selection and a whole tiny run under ``protocol=infosam``."""

from __future__ import annotations

import json
import sys
from collections import Counter

import numpy as np
import pytest
import torch

from bench.config import ConfigError, TrainConfig
from bench.contracts.methods import method_options
from bench.data.prompts import mask_box, translate_box
from bench.eval.selection import EpochSelector
from bench.runs.runner import execute_run
from bench.runs.sweep import load_config, run_configs, run_hash
from bench.train.trainer import cosine_horizon
from tests.tiny_runs import single_run, sweep, sweep_args


# ----------------------------------------------------------------------------- config
def test_the_infosam_preset_sits_under_the_sweep_and_the_command_line(tmp_path):
    clean, info = sweep(tmp_path), sweep(tmp_path, "protocol=infosam")
    assert clean.protocol == "clean" and clean.train.structure_loss == "weighted" and clean.eval.select == "val_best"
    assert info.train.structure_loss == "unweighted_bce" and info.train.precision == "fp32"
    assert (info.train.box_jitter_form, info.eval.box_jitter_form, info.eval.box_jitter) == ("translate",) * 2 + (5.0,)
    assert (info.data.preprocess, info.data.cache_dtype, info.train.cosine_horizon) == ("infosam", "fp32", "infosam")
    assert info.eval.select == "test_last"
    assert sweep(tmp_path, "protocol=infosam", "train.precision=bf16").train.precision == "bf16"  # the user wins
    assert run_hash(single_run(clean)) != run_hash(single_run(info))
    assert load_config(["sweep=table1"]).protocol == "infosam"
    assert load_config(["sweep=demo"]).protocol == "clean"


def test_protocols_are_one_file_each_in_order():
    from bench.config.protocols import protocols_in_order
    from bench.eval.evaluate import definitions

    found = [(p.name, p.metrics, p.score and p.score.__module__) for p in protocols_in_order()]
    assert found == [
        ("clean", "clean", None),  # the base definition, scored for every run (bench.eval.metrics)
        ("infosam", "infosam", "bench.eval.metrics_infosam"),
        ("convlora", "convlora", "bench.eval.metrics_convlora"),
    ]
    assert list(definitions()) == ["clean", "infosam", "convlora"]  # per_image.csv's column order
    assert set(sys.modules) >= {"protocols.clean", "protocols.infosam", "protocols.convlora"}  # one file each


def test_bad_protocol_values_are_one_line_errors(tmp_path):
    with pytest.raises(ConfigError, match="unknown protocol 'nope'; valid: clean, infosam, convlora$"):
        sweep(tmp_path, "protocol=nope")
    with pytest.raises(ConfigError, match="unknown eval.select 'best'; valid: last, val_best, test_last"):
        sweep(tmp_path, "eval.select=best")
    with pytest.raises(ConfigError, match="unknown report.metrics 'paper'"):
        sweep(tmp_path, "metrics=paper")
    cfg = sweep(tmp_path)
    cfg.methods = [{"name": "adapter", "set": {"protocol": "infosam"}}]
    with pytest.raises(ConfigError, match="cannot change the protocol"):
        run_configs(cfg)


def test_protocol_method_defaults_fill_only_what_the_run_leaves_unset():
    assert method_options("adapter", {}, {}, "clean")[1].zero_init is True
    assert method_options("adapter", {}, {}, "infosam")[1].zero_init is False  # common.Adapter's default init
    assert method_options("adapter+infosam", {}, {}, "infosam")[1].zero_init is False
    assert method_options("adapter", {"zero_init": True}, {}, "infosam")[1].zero_init is True
    assert method_options("lora", {}, {}, "infosam")[1].form == "fused"
    assert method_options("bitfit", {}, {}, "infosam")[1] is not None  # no such option: nothing added


# ----------------------------------------------------------------------------- prompts
def test_translate_jitter_is_the_public_codes_integer_shift():
    h, w = 300, 400  # longest side 400 -> the 1024-px frame scales by 2.56
    mask = np.zeros((h, w), dtype=np.uint8)
    mask[100:180, 150:300] = 1
    box = mask_box(mask)
    scale = 1024 / 400
    ref = np.round(box * scale)
    rng = np.random.default_rng(0)
    shifts = Counter()
    for _ in range(4000):
        moved = np.round(translate_box(box, 5.0, (h, w), rng) * scale)
        dx, dy = moved[:2] - ref[:2]
        assert moved[2] - ref[2] == dx and moved[3] - ref[3] == dy  # the whole box moves
        shifts[(int(dx), int(dy))] += 1
    # m = min(5, int(0.1 * min(w, h) * 5)) = 5; numpy's randint excludes m: shifts in {-5, ..., 4}
    assert {d for pair in shifts for d in pair} == set(range(-5, 5))
    counts = np.array([sum(c for (dx, _), c in shifts.items() if dx == v) for v in range(-5, 5)])
    assert counts.min() > 300 and counts.max() < 500  # uniform: 400 expected each
    # a thin box: m = int(0.5 * 6) = 3
    thin = np.array([10, 10, 16, 200], dtype=np.float32)
    got = {tuple(np.round(translate_box(thin, 5.0, (1024, 1024), rng)[:2] - thin[:2])) for _ in range(500)}
    assert {d for pair in got for d in pair} == set(range(-3, 3))
    # under 2 px: the public code raises (randint(0, 0)); here the box stays exact
    tiny = np.array([10, 10, 11, 11], dtype=np.float32)
    np.testing.assert_array_equal(translate_box(tiny, 5.0, (1024, 1024), rng), tiny)
    # clipped at 0 only
    corner = np.array([0, 0, 50, 50], dtype=np.float32)
    assert all((translate_box(corner, 5.0, (1024, 1024), rng)[:2] >= 0).all() for _ in range(50))


def test_infosam_test_boxes_are_jittered_identically_for_every_method_and_seed(tmp_path):
    from bench.backbones import build_backbone
    from bench.config import BackboneConfig
    from bench.contracts.dataset import DATASETS
    from bench.data.batches import PromptedDataset

    cfg = sweep(tmp_path, "protocol=infosam")
    test = DATASETS.get("synth_polyp")("test", cfg.data)
    model = build_backbone(BackboneConfig(name="tiny_sam"))

    def boxes(seed: int, jitter: float) -> np.ndarray:
        data = PromptedDataset(test, model, seed, train=False, box_jitter=jitter, jitter_form="translate")
        return np.stack([data[i]["box"].numpy() for i in range(len(data))])

    exact = boxes(0, 0.0)
    a, b = boxes(0, 5.0), boxes(3, 5.0)
    np.testing.assert_array_equal(a, b)  # seeded by the image name only
    assert not np.array_equal(a, exact)  # and really jittered


# ----------------------------------------------------------------------------- preprocessing, schedule, cache
def test_infosam_preprocessing_is_bgr_and_pads_before_normalising():
    from bench.backbones import build_backbone
    from bench.config import BackboneConfig

    model = build_backbone(BackboneConfig(name="tiny_sam"))  # SAM normalisation, 64-px input
    image = np.zeros((32, 64, 3), dtype=np.uint8)
    image[..., 0] = 200  # red
    sam = model.preprocess_image(image)
    model.preprocess = "infosam"
    info = model.preprocess_image(image)
    mean, std = model.pixel_mean, model.pixel_std
    np.testing.assert_allclose(sam[:, :32, :].mean(axis=(1, 2)), (np.array([200, 0, 0]) - mean) / std, rtol=1e-6)
    np.testing.assert_allclose(info[:, :32, :].mean(axis=(1, 2)), (np.array([0, 0, 200]) - mean) / std, rtol=1e-6)
    assert np.all(sam[:, 32:, :] == 0)  # SAM: zero after normalisation
    np.testing.assert_allclose(info[:, 32:, :].mean(axis=(1, 2)), -mean / std, rtol=1e-6)  # InfoSAM: raw zeros
    mask = np.zeros((32, 64), dtype=np.uint8)
    mask[8:20, 8:40] = 1
    assert set(np.unique(model.preprocess_mask(mask))) <= {0.0, 1.0}


def test_cosine_horizon_of_the_public_code():
    cfg = TrainConfig(epochs=10, batch_size=4)
    assert cosine_horizon(cfg, 900, 225) == 2250
    infosam = TrainConfig(epochs=10, batch_size=4, cosine_horizon="infosam")
    assert cosine_horizon(infosam, 900, 225) == 10 * (900 // 4 + 1)


@pytest.mark.numerics
def test_fp32_cache_stores_the_exact_states(tmp_path):
    from bench.backbones import build_backbone
    from bench.config import BackboneConfig
    from bench.data.cache import EncoderCache

    model = build_backbone(BackboneConfig(name="tiny_sam"))
    images = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = model.encode_prefix(images, 3)[0]
        got, _ = EncoderCache(tmp_path, model, 3, dtype="fp32")(images)
        half, _ = EncoderCache(tmp_path, model, 3, dtype="fp16")(images)
        warm, _ = EncoderCache(tmp_path, model, 3, dtype="fp32")(images)
    assert torch.equal(got, expected) and torch.equal(warm, expected)  # same function, no rounding
    assert not torch.equal(half, expected)
    assert len({p.parent.parent.parent.name for p in tmp_path.rglob("*.npy")}) == 2  # separate entries


# ----------------------------------------------------------------------------- checkpoint selection
def _fake_means(value: float) -> dict:
    return {"clean": {"sm": value - 0.1, "iou": 0.5}, "infosam": {"sm": value, "iou": 0.4}}


def test_best_of_last_k_on_a_fake_run():
    scores = {6: 0.70, 7: 0.74, 8: 0.73, 9: 0.74, 10: 0.71}
    current = {"epoch": 0}
    sel = EpochSelector("test_last", epochs=10, k=5, metric="sm", definition="infosam")
    sel.evaluate = lambda: ([{"name": "a", "epoch": current["epoch"]}], _fake_means(scores[current["epoch"]]))
    for epoch in range(1, 11):
        current["epoch"] = epoch
        sel.after_epoch(epoch)
    assert sel.candidates == [6, 7, 8, 9, 10] and sorted(sel.history) == [6, 7, 8, 9, 10]
    assert sel.best_epoch == 7  # 0.74 twice: the earlier epoch
    record = sel.record("text")
    assert record["reported_epoch"] == 10 and record["best_epoch"] == 7 and record["split"] == "test"
    again = EpochSelector("test_last", epochs=10, k=5, metric="sm", definition="infosam")
    again.load_state_dict(sel.state_dict())
    assert again.best_epoch == 7 and again.rows[9] == [{"name": "a", "epoch": 9}]
    # lower is better for BER; val_best keeps the best epoch's state
    snap = {"n": 0}
    val = EpochSelector("val_best", epochs=3, k=5, metric="ber", definition="clean")
    val.snapshot = lambda: {"state": snap["n"]}
    for epoch, ber in zip((1, 2, 3), (0.3, 0.1, 0.2)):
        snap["n"] = epoch
        val.evaluate = lambda ber=ber: ([], {"clean": {"ber": ber}})
        val.after_epoch(epoch)
    assert val.best_epoch == 2 and val.best_state == {"state": 2}


def test_a_tiny_run_under_the_infosam_protocol_keeps_every_scored_epoch(tmp_path):
    cfg = sweep(tmp_path, "protocol=infosam", "train.epochs=3", "eval.select_epochs=2")
    run = single_run(cfg)
    record = execute_run(run, cfg.runs_dir)
    from bench.runs.results import RunDir

    path = RunDir(cfg.runs_dir, run).path
    assert record["protocol"] == "infosam" and set(record["metrics_by_definition"]) == {"clean", "infosam", "convlora"}
    sel = record["selection"]
    assert sel["rule"] == "test_last" and sel["candidates"] == [2, 3] and set(sel["by_epoch"]) == {"2", "3"}
    assert (path / "per_image_epoch2.csv").is_file() and (path / "per_image_epoch3.csv").is_file()
    last = record["metrics_by_definition"]["infosam"]
    assert record["metrics"]["sm"] == last["sm"] == sel["by_epoch"]["3"]["infosam"]["sm"]
    assert record["metrics"]["mae"] == record["metrics_by_definition"]["clean"]["mae"]  # not an InfoSAM metric
    best = sel["by_epoch"][str(sel["best_epoch"])]["infosam"]["sm"]
    assert record["metrics_best_of_last"]["sm"] == best == max(sel["by_epoch"][e]["infosam"]["sm"] for e in "23")
    header = (path / "per_image.csv").read_text().splitlines()[0].split(",")
    assert "sm" in header and "infosam.sm" in header and "infosam.iou" in header
    assert json.loads((path / "metrics.json").read_text())["metric_definition"] == "infosam"


def test_clean_runs_report_the_validation_choice(tmp_path):
    cfg = sweep(tmp_path, "train.epochs=3", "eval.select_epochs=2")
    record = execute_run(single_run(cfg), cfg.runs_dir)
    sel = record["selection"]
    assert sel["rule"] == "val_best" and sel["split"] == "val" and sel["candidates"] == [2, 3]
    assert sel["reported_epoch"] == sel["best_epoch"] in (2, 3)
    assert "metrics_best_of_last" not in record


def test_report_names_the_protocol_and_shows_paper_values_only_under_it(tmp_path):
    from reports.report import build_report
    from tests.reports.fake_runs import write_run

    base = [a for a in sweep_args(tmp_path) if not a.startswith(("sweep=", "methods=", "datasets="))]
    base += ["sweep=table1", "methods=[adapter]", "datasets=[synth_polyp]", "seeds=[0]"]
    by_def = {"clean": {"sm": 0.7, "em_adp": 0.5, "wfm": 0.5}, "infosam": {"sm": 0.8, "em_adp": 0.6, "wfm": 0.6}}
    for protocol in ("infosam", "clean"):
        cfg = load_config([*base, f"protocol={protocol}", f"runs_dir={tmp_path / protocol}"])
        (run,) = run_configs(cfg)
        rd = write_run(cfg.runs_dir, run, {**by_def["clean"], **by_def[protocol]})
        data = json.loads((rd.path / "metrics.json").read_text())
        data.update({"protocol": protocol, "metric_definition": protocol, "metrics_by_definition": by_def})
        (rd.path / "metrics.json").write_text(json.dumps(data))
    info = build_report(load_config([*base, "protocol=infosam", f"runs_dir={tmp_path / 'infosam'}"]))
    assert "Protocol infosam: public InfoSAM code" in info and "checkpoint: last epoch" in info
    assert "**80.0** (paper 93.4, Δ −13.4)" in info  # Kvasir S_α of the adapter row
    clean_view = build_report(
        load_config([*base, "protocol=infosam", "metrics=clean", f"runs_dir={tmp_path / 'infosam'}"])
    )
    assert "clean metric definitions" in clean_view and "**70.0**" in clean_view and "(paper" not in clean_view
    clean = build_report(load_config([*base, "protocol=clean", f"runs_dir={tmp_path / 'clean'}"]))
    assert "Protocol clean:" in clean and "**70.0**" in clean and "(paper" not in clean
    assert "not the paper's protocol" in clean


# ----------------------------------------------------------------------------- Conv-LoRA recipe switches
def test_poly_schedule_decays_linearly_to_min_lr_with_adamw():
    from bench.train.trainer import make_optimizer

    param = torch.nn.Parameter(torch.zeros(3))
    cfg = TrainConfig(epochs=2, lr=1e-4, min_lr=0.0, optimizer="adamw", weight_decay=1e-4, schedule="poly")
    opt, sched = make_optimizer(cfg, [param], n_samples=20, n_steps=5)
    assert isinstance(opt, torch.optim.AdamW) and opt.param_groups[0]["weight_decay"] == 1e-4
    lrs = []
    for _ in range(10):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    np.testing.assert_allclose(lrs, [1e-4 * (1 - k / 10) for k in range(10)], rtol=1e-12)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-18)


def test_hflip_flips_training_samples_reproducibly(tmp_path):
    from bench.backbones import build_backbone
    from bench.config import BackboneConfig
    from bench.contracts.dataset import DATASETS
    from bench.data.batches import PromptedDataset

    cfg = sweep(tmp_path)
    train = DATASETS.get("synth_polyp")("train", cfg.data)
    model = build_backbone(BackboneConfig(name="tiny_sam"))
    plain = PromptedDataset(train, model, 0, train=True)
    flips = PromptedDataset(train, model, 0, train=True, hflip=True)
    flipped = 0
    for epoch in range(3):
        plain.epoch = flips.epoch = epoch
        for i in range(len(train)):
            a, b = plain[i]["target"], flips[i]["target"]
            h, w = model.resized_shape(*train[i]["mask"].shape)
            if not torch.equal(a, b):
                flipped += 1
                torch.testing.assert_close(b[:h, :w], a[:h, :w].flip(-1), rtol=0, atol=0)
            assert torch.equal(flips[i]["target"], b)  # the same decision when drawn again
    assert 0.25 < flipped / (3 * len(train)) < 0.75
    assert not PromptedDataset(train, model, 0, train=False, hflip=True).hflip  # never at test time


def test_square_preprocessing_and_input_resolution_scoring(tmp_path, monkeypatch):
    import bench.eval.evaluate as ev
    from bench.backbones import build_backbone
    from bench.config import BackboneConfig
    from bench.contracts.dataset import DATASETS
    from bench.data.batches import PromptedDataset
    from bench.data.encoders import CachedEncoder

    model = build_backbone(BackboneConfig(name="tiny_sam"))
    model.preprocess = "square"
    image = np.full((20, 60, 3), 128, dtype=np.uint8)
    assert model.resized_shape(20, 60) == (64, 64)
    x = model.preprocess_image(image)
    assert x.shape == (3, 64, 64) and np.allclose(x[:, -1, :], x[:, 0, :])  # no padding rows
    cfg = sweep(tmp_path)
    test = DATASETS.get("synth_polyp")("test", cfg.data)
    seen: list[tuple[int, int]] = []
    original_add = ev.Scorer.add
    monkeypatch.setattr(
        ev.Scorer, "add", lambda self, n, logits, gt: (seen.append(gt.shape), original_add(self, n, logits, gt))[1]
    )
    data = PromptedDataset(test, model, 0, train=False)
    rows, means = ev.evaluate(model, CachedEncoder(model, None), data, True, torch.device("cpu"), resolution="input")
    assert seen == [(64, 64)] * len(test) and len(rows) == len(test)
    seen.clear()
    ev.evaluate(model, CachedEncoder(model, None), data, True, torch.device("cpu"))
    assert seen == [test[i]["mask"].shape for i in range(len(test))]


def test_promptless_sam2_decode_runs_on_the_whole_batch():
    """(SAM's promptless path equals the official decoder: tests/bench/backbones/test_backbones.py.)"""
    from bench.backbones import Prompts, build_backbone
    from bench.config import BackboneConfig

    sam2 = build_backbone(BackboneConfig(name="tiny_sam2")).eval()
    with torch.no_grad():
        z2, feats = sam2.encode(torch.randn(2, 3, 128, 128))
        out = sam2.decode(z2, Prompts(), feats)
    assert out.logits.shape[0] == 2 and torch.isfinite(out.logits).all()


def test_one_mask_token_decoder_as_conv_lora():
    from bench.backbones import Prompts, build_backbone
    from bench.config import BackboneConfig

    full = build_backbone(BackboneConfig(name="tiny_sam"))
    one = build_backbone(BackboneConfig(name="tiny_sam", mask_tokens=1))
    dec = one.mask_decoder
    assert dec.mask_tokens.weight.shape[0] == 1 and len(dec.output_hypernetworks_mlps) == 1
    torch.testing.assert_close(dec.mask_tokens.weight[0], full.mask_decoder.mask_tokens.weight[0], rtol=0, atol=0)
    images = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        z, _ = one.encode(images)
        boxes = Prompts(boxes=torch.tensor([[8.0, 8.0, 40.0, 50.0], [0.0, 4.0, 30.0, 60.0]]))
        a, b = one.decode(z, boxes), full.decode(z, boxes)
    assert a.logits.shape == b.logits.shape
    assert (a.logits - b.logits).abs().max() > 1e-4  # three fewer tokens in the two-way attention
    with pytest.raises(ConfigError, match="mask_tokens must be in 1..4"):
        build_backbone(BackboneConfig(name="tiny_sam", mask_tokens=5))


def test_protocol_dataset_values_never_override_explicit_keys(tmp_path, monkeypatch):
    import bench.config.protocols as protocols

    table = {"*": {"train.lr": 1e-4}, "polyp": {"train.epochs": 30, "train.weight_decay": 0.5}}
    patched = protocols.Protocol(name="clean", summary="x", dataset_values=table)
    monkeypatch.setitem(protocols.PROTOCOL_REGISTRY._entries_loaded(), "clean", patched)
    cfg = sweep(tmp_path)  # the smoke sweep file sets train.epochs: 2
    (run,) = run_configs(cfg)
    assert (run.train.lr, run.train.weight_decay, run.train.epochs) == (1e-4, 0.5, 2)
    (run,) = run_configs(sweep(tmp_path, "train.weight_decay=0.1"))  # the command line wins
    assert (run.train.lr, run.train.weight_decay) == (1e-4, 0.1)
    cfg.datasets = ["synth_leaf"]  # another family: only the "*" values
    (run,) = run_configs(cfg)
    assert (run.train.lr, run.train.weight_decay) == (1e-4, 0.0)


# ----------------------------------------------------------------------------- protocol convlora
def test_the_convlora_protocol_as_the_public_code(tmp_path):
    cfg = sweep(tmp_path, "protocol=convlora", "methods=[convlora]")
    (run,) = run_configs(cfg)
    assert (run.train.prompt, run.eval.prompt, run.backbone.mask_tokens, run.data.preprocess) == (
        "none",
        "none",
        1,
        "square",
    )
    assert (run.train.optimizer, run.train.weight_decay, run.train.schedule, run.train.min_lr) == (
        "adamw",
        1e-4,
        "poly",
        0.0,
    )
    assert run.train.lr == 1e-4 and run.train.epochs == 2  # polyp: 30 epochs, but the smoke sweep sets 2
    assert (run.eval.select, run.eval.patience, run.eval.resolution) == ("val_best", 10, "input")
    spec, options, _ = method_options(run.method, run.peft, run.distill, run.protocol)
    assert (options.r, options.alpha, options.num_experts) == (3, 32.0, 8)
    road = load_config(["sweep=convlora_table", "datasets=[synth_road,synth_camo]", "methods=[lora]"])
    by_dataset = {r.dataset: r for r in run_configs(road)}
    assert (by_dataset["synth_road"].train.epochs, by_dataset["synth_road"].train.lr) == (20, 3e-4)
    assert (by_dataset["synth_camo"].train.epochs, by_dataset["synth_camo"].train.lr) == (20, 1e-4)
    assert method_options("lora", {}, {}, "convlora")[1].form == "fused"


def test_a_tiny_promptless_run_under_the_convlora_protocol(tmp_path):
    cfg = sweep(tmp_path, "protocol=convlora", "methods=[convlora]", "train.epochs=3")
    record = execute_run(single_run(cfg), cfg.runs_dir)
    assert record["metric_definition"] == "convlora" and record["eval_prompt"] == "none"
    assert record["report_metrics"] == ["sm", "em_mean", "wfm", "mae"]  # what its script evaluates on polyps
    assert set(record["metrics_by_definition"]) == {"clean", "infosam", "convlora"}
    assert record["metrics"]["em_mean"] == record["metrics_by_definition"]["convlora"]["em_mean"]
    sel = record["selection"]
    assert sel["rule"] == "val_best" and sel["candidates"] == [1, 2, 3]
    assert record["trainable_params"] > 0


def test_patience_stops_training_when_validation_stalls():
    sel = EpochSelector("val_best", epochs=30, k=100, metric="iou", definition="clean", patience=2)
    sel.snapshot = dict
    scores = iter([0.5, 0.6, 0.55, 0.58, 0.7])
    for epoch in range(1, 5):
        value = next(scores)
        sel.evaluate = lambda value=value: ([], {"clean": {"iou": value}})
        sel.after_epoch(epoch)
        assert sel.stop_early() == (epoch == 4)  # best at 2, then 3 and 4 are not better
    assert sel.record("x")["stopped_early_after"] == 4


def test_balanced_bce_is_the_public_bbce_per_image():
    from bench.train.losses import structure_loss

    logits = torch.tensor([[[[2.0, -1.0], [0.5, -3.0]]], [[[0.0, 1.0], [-2.0, 4.0]]]])
    target = torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]], [[[1.0, 1.0], [0.0, 1.0]]]])
    expected = []
    for x, t in zip(logits.flatten(1).double().numpy(), target.flatten(1).double().numpy()):
        pos, neg = t.sum() + 1e-10, (1 - t).sum()
        sp = np.log1p(np.exp(-np.abs(x))) + np.maximum(-x, 0)  # -log sigmoid(x)
        sn = sp + x  # -log(1 - sigmoid(x))
        bce = np.mean(neg / pos * t * sp + (1 - t) * sn)
        expected.append(pos / (pos + neg) * bce)
    got = structure_loss(logits, target, "balanced_bce")
    assert float(got) == pytest.approx(np.mean(expected), rel=1e-6)


def test_promptless_one_token_decode_equals_the_official_sam_forward():
    """Conv-LoRA's decoding (one mask token, no prompt) against segment_anything's own ``Sam.forward`` (its
    preprocessing, encoder, prompt encoder with no prompt, decoder) on an official ``Sam`` whose decoder is
    built with one mask token (``MaskDecoder(num_multimask_outputs=0)``) and loaded, strictly, with the
    suite's weights. Same modules and operations; 1e-5 covers float32 re-association in the step-wise encode."""
    from segment_anything.modeling import Sam

    from bench.backbones import Prompts, build_backbone
    from bench.backbones.tiny import tiny_sam_decoder
    from bench.config import BackboneConfig

    one = build_backbone(BackboneConfig(name="tiny_sam", mask_tokens=1))
    decoder = tiny_sam_decoder(num_multimask_outputs=0)  # segment_anything's MaskDecoder with one mask token
    state = one.mask_decoder.state_dict()
    for key in ("iou_prediction_head.layers.2.weight", "iou_prediction_head.layers.2.bias"):
        state[key] = state[key][:1]  # the suite keeps SAM's 4-output IoU head (frozen, no loss reads it)
    decoder.load_state_dict(state)
    official = Sam(one.image_encoder, one.prompt_encoder, decoder).eval()
    images = 255 * torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        outputs = official([{"image": im, "original_size": (64, 64)} for im in images], multimask_output=False)
        z, _ = one.encode(torch.stack([official.preprocess(im) for im in images]))
        ours = one.decode(z, Prompts())
    for i, out in enumerate(outputs):
        torch.testing.assert_close(ours.logits[i], out["low_res_logits"][0], rtol=0, atol=1e-5)
