"""Backbone families × methods (issue 7): SAM (tiny_sam), SAM2 Hiera (tiny_sam2), TinyViT (tiny_tinyvit).

* every registered PEFT method and every registered distiller (with the default adapter student)
  either trains one step on each family's small variant, or is refused by the launcher's check with
  the reason it declares (``unsupported``);
* the SAM2 backbone equals the official ``SAM2Base`` image path (``forward_image`` +
  ``_prepare_backbone_features`` + ``no_mem_embed`` + ``sam_mask_decoder``), z_m is the first *mask*
  token, and a cached encoder prefix gives exactly the same result;
* Hiera-specific PEFT wrappers (pooled parallel adapter branch, VPT prompts in ``MultiScaleAttention``);
* checkpoints round-trip in the official layouts (``sam2.1_hiera_*.pt`` with ``"model"``, MobileSAM's
  plain state dict); a file of another architecture raises ``CheckpointError`` naming the keys;
* (slow) one forward of every full-size backbone at its native size.
"""

from __future__ import annotations

import copy
import time

import numpy as np
import pytest
import torch

from bench.app.cli import main, validate_names
from bench.backbones import BACKBONES, CheckpointError, Prompts, backbone_family, build_backbone
from bench.backbones.sam2 import HIGH_RES_S0, HIGH_RES_S1, Sam2Hiera
from bench.backbones.tiny import tiny_sam2_model, tiny_tinyvit_model
from bench.config import BackboneConfig, ConfigError, DataConfig, RunConfig, TrainConfig
from bench.contracts.distill import DISTILLERS
from bench.contracts.peft import PEFT_METHODS, build_peft
from bench.data.encoders import CachedEncoder
from bench.runs.runner import build_parts
from bench.runs.sweep import load_config
from bench.train.trainer import compute_loss

pytestmark = pytest.mark.numerics  # the whole file runs again under other kernels in CI

SMALL = {"sam": "tiny_sam", "sam2": "tiny_sam2", "tinyvit": "tiny_tinyvit"}
CPU = torch.device("cpu")


def _batch(size: int, b: int = 2) -> dict:
    g = torch.Generator().manual_seed(0)
    box = torch.tensor([[0.2, 0.25, 0.7, 0.8], [0.1, 0.3, 0.6, 0.9]])[:b] * size
    target = torch.zeros(b, size, size)
    for i, (x0, y0, x1, y1) in enumerate(box.round().long().tolist()):
        target[i, y0:y1, x0:x1] = 1
    return {
        "image": torch.randn(b, 3, size, size, generator=g),
        "target": target,
        "box": box,
        "points": ((box[:, :2] + box[:, 2:]) / 2)[:, None],
        "labels": torch.ones(b, 1, dtype=torch.int64),
    }


def _refusal(method: str, backbone: str) -> str | None:
    """The launcher's answer for ``method`` on ``backbone``: None = accepted, else the error text."""
    cfg = load_config(["sweep=smoke", f"backbone={backbone}", f"methods=[{method}]", "datasets=[synth_polyp]"])
    try:
        validate_names(cfg)
    except ConfigError as err:
        return str(err)
    return None


def _declared(method: str, family: str) -> str | None:
    peft, _, distiller = method.partition("+")
    reasons = [PEFT_METHODS.get(peft).unsupported.get(family)]
    if distiller:
        reasons.append(DISTILLERS.get(distiller).unsupported.get(family))
    return next((r for r in reasons if r), None)


def _train_one_step(method: str, backbone: str) -> None:
    run = RunConfig(
        method=method, backbone=BackboneConfig(name=backbone, random_init=True), data=DataConfig(encoder_cache=False)
    )
    parts = build_parts(run, CPU)
    params = parts.trainable()
    batch = _batch(parts.student.img_size)
    if not params:  # zero_shot: nothing to train, the prediction carries no gradient
        terms = compute_loss(parts, batch, True, CPU, TrainConfig())
        assert not any(t.requires_grad for t in terms.values())
        return
    before = [p.detach().clone() for p in params]
    opt = torch.optim.Adam(params, lr=1e-3)
    terms = compute_loss(parts, batch, True, CPU, TrainConfig())
    loss = torch.stack([t.float() for t in terms.values()]).sum()
    assert torch.isfinite(loss), {k: float(v) for k, v in terms.items()}
    opt.zero_grad()
    loss.backward()
    opt.step()
    assert any(not torch.equal(b, p) for b, p in zip(before, params)), "no trainable parameter moved"
    if parts.distiller is not None:
        assert set(terms) - {"seg"}, "the distiller returned no loss term"


MATRIX = [(f, m) for f in SMALL for m in PEFT_METHODS.names()] + [
    (f, f"adapter+{d}") for f in SMALL for d in DISTILLERS.names()
]


@pytest.mark.parametrize("family, method", MATRIX)
def test_every_method_trains_a_step_or_is_refused(family, method):
    backbone = SMALL[family]
    reason = _declared(method, family)
    refusal = _refusal(method, backbone)
    if reason is not None:
        assert refusal is not None and reason in refusal and family in refusal
        return
    assert refusal is None
    _train_one_step(method, backbone)


def test_every_registered_backbone_declares_its_family():
    families = {name: backbone_family(name) for name in BACKBONES.names()}
    expected = {"sam_vit_b", "sam_vit_l", "sam_vit_h", "tiny_sam"} | {
        f"sam2_hiera_{v}" for v in ("t", "s", "b_plus", "l")
    }
    assert expected | {"mobilesam", "litemedsam", "tiny_sam2", "tiny_tinyvit"} <= set(families)
    assert all(families[n] == "sam" for n in ("sam_vit_b", "sam_vit_l", "sam_vit_h", "tiny_sam"))
    assert all(families[n] == "sam2" for n in families if n.startswith(("sam2_", "tiny_sam2")))
    assert families["mobilesam"] == families["litemedsam"] == families["tiny_tinyvit"] == "tinyvit"
    for family, name in SMALL.items():  # the built model agrees with its registration
        assert build_backbone(BackboneConfig(name=name, random_init=True)).family == family


def test_launcher_refuses_a_declared_combination_with_its_reason(monkeypatch, capsys):
    lora, infosam = PEFT_METHODS.get("lora"), DISTILLERS.get("infosam")
    monkeypatch.setattr(lora, "unsupported", {"sam2": "no fused qkv here (test)"})
    assert "no fused qkv here (test)" in _refusal("lora", "tiny_sam2")
    assert _refusal("lora", "tiny_sam") is None
    assert "no fused qkv here (test)" in _refusal("lora+infosam", "tiny_sam2")
    # a distiller is checked against the teacher's family too
    monkeypatch.setattr(infosam, "unsupported", {"tinyvit": "teacher test reason"})
    cfg = load_config(["sweep=smoke", "backbone=tiny_sam", "methods=[infosam]", "teacher.backbone=tiny_tinyvit"])
    with pytest.raises(ConfigError, match="teacher backbone 'tiny_tinyvit' .*teacher test reason"):
        validate_names(cfg)
    # the CLI turns it into a one-line error before launching anything
    code = main(["run", "sweep=smoke", "backbone=tiny_sam2", "methods=[lora]", "launcher=inline"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0 and "no fused qkv here (test)" in err


# ------------------------------------------------------------------------------------- SAM2 image path
def _official(model: torch.nn.Module, images: torch.Tensor, boxes: torch.Tensor):
    """SAM2ImagePredictor.set_image + _predict (multimask_output=False), batched one box per image."""
    out = model.forward_image(images)
    _, vision_feats, _, _ = model._prepare_backbone_features(out)
    vision_feats[-1] = vision_feats[-1] + model.no_mem_embed
    sizes = [f.shape[-2:] for f in out["backbone_fpn"][-3:]]
    feats = [f.permute(1, 2, 0).reshape(images.shape[0], -1, *s) for f, s in zip(vision_feats, sizes)]
    labels = torch.tensor([[2, 3]], dtype=torch.int).repeat(images.shape[0], 1)
    sparse, dense = model.sam_prompt_encoder(points=(boxes.reshape(-1, 2, 2), labels), boxes=None, masks=None)
    masks, iou, tokens, _ = model.sam_mask_decoder(
        image_embeddings=feats[-1],
        image_pe=model.sam_prompt_encoder.get_dense_pe(),
        sparse_prompt_embeddings=sparse,
        dense_prompt_embeddings=dense,
        multimask_output=False,
        repeat_image=False,
        high_res_features=feats[:-1],
    )
    return feats, masks, iou, tokens[:, 0]


def test_sam2_backbone_equals_the_official_image_path():
    model = tiny_sam2_model().eval()
    backbone = build_backbone(BackboneConfig(name="tiny_sam2"))
    images, boxes = _batch(128)["image"], _batch(128)["box"]
    with torch.no_grad():
        feats, masks, iou, token = _official(model, images, boxes)
        z, ours = backbone.encode(images)
        out = backbone.decode(z, Prompts(boxes=boxes), ours)
    assert (
        z.shape == (2, 32, 8, 8)
        and ours[HIGH_RES_S0].shape == (2, 4, 32, 32)
        and ours[HIGH_RES_S1].shape == (2, 8, 16, 16)
    )
    torch.testing.assert_close(z, feats[2], rtol=0, atol=1e-6)
    torch.testing.assert_close(ours[HIGH_RES_S0], feats[0], rtol=0, atol=1e-6)
    torch.testing.assert_close(ours[HIGH_RES_S1], feats[1], rtol=0, atol=1e-6)
    torch.testing.assert_close(out.logits, masks, rtol=0, atol=1e-5)
    torch.testing.assert_close(out.iou, iou, rtol=0, atol=1e-6)
    torch.testing.assert_close(out.mask_token, token, rtol=0, atol=1e-6)


def test_sam2_mask_token_is_the_first_mask_token_not_the_object_score_token():
    backbone = build_backbone(BackboneConfig(name="tiny_sam2"))
    dec = backbone.mask_decoder
    assert dec.pred_obj_scores  # tokens = [obj_score, iou, mask_0..3]
    captured = {}

    def keep(module, inputs, output) -> None:
        captured["hs"] = output[0]

    handle = dec.transformer.register_forward_hook(keep)
    batch = _batch(128)
    with torch.no_grad():
        z, feats = backbone.encode(batch["image"])
        out = backbone.decode(z, Prompts(points=batch["points"], labels=batch["labels"]), feats)
    handle.remove()
    hs = captured["hs"]
    torch.testing.assert_close(out.mask_token, hs[:, 2], rtol=0, atol=0)
    assert (out.mask_token - hs[:, 0]).abs().max() > 1e-3 and (out.mask_token - hs[:, 1]).abs().max() > 1e-3


def test_sam2_decode_without_the_high_res_features_of_the_batch_raises():
    backbone = build_backbone(BackboneConfig(name="tiny_sam2"))
    images, boxes = _batch(128)["image"], _batch(128)["box"]
    with torch.no_grad():
        z, feats = backbone.encode(images)
        a = backbone.decode(z, Prompts(boxes=boxes), feats).logits
        b = backbone.decode(*backbone.encode(images)[:1], Prompts(boxes=boxes)).logits  # right after encode
        assert torch.equal(a, b)
        with pytest.raises(ValueError, match="high-resolution features"):
            backbone.decode(z, Prompts(boxes=boxes))  # nothing recorded any more


def test_sam2_cached_prefix_matches_at_every_cut(tmp_path):
    backbone = build_backbone(BackboneConfig(name="tiny_sam2"))
    images = _batch(128)["image"]
    n = len(backbone.encoder_steps())
    assert n == 1 + 6 + 3
    with torch.no_grad():
        z, feats = backbone.encode(images, blocks=(1, 4))
        for k in range(n + 1):
            state, early = backbone.encode_prefix(images, k, blocks=(1, 4))
            assert state.dim() == (4 if k == 0 else 2)
            z2, late = backbone.encode(state, start=k, blocks=(1, 4))
            both = {**early, **late}
            # Not bitwise: a cut packs the multi-scale state into one (B, N) tensor and unpacks it as strided
            # views, so the neck's convolutions may take another kernel (another summation order) than on the
            # uncut run. Float32 rounding only: torch's float32 tolerance (rtol 1.3e-6, atol 1e-5), through
            # ~10 shallow steps of unit-scale values (one ulp is 1.2e-7 there).
            assert set(both) == set(feats), k
            for key, value in (("z", z2), *both.items()):
                ref = z if key == "z" else feats[key]
                torch.testing.assert_close(value, ref, rtol=1.3e-6, atol=1e-5, msg=lambda m: f"cut {k}, {key}: {m}")
        with pytest.raises(ValueError, match="cached state"):
            backbone.encode(torch.zeros(2, 5), start=3)
    # the adapter student: the frozen prefix ends before block 2; the decoder trains conv_s0/s1, so the
    # high-resolution step is never cached
    build_peft("adapter", {}).apply(backbone)
    assert backbone.frozen_prefix() == 3
    torch.manual_seed(0)
    for p in backbone.parameters():
        if p.requires_grad:
            p.data.add_(0.01 * torch.randn_like(p))  # away from identity, so a stale prefix would show
    encoder = CachedEncoder(backbone, str(tmp_path), blocks=(4,))
    assert encoder.stop == 3
    with torch.no_grad():
        rounded = backbone.encode_prefix(images, 3)[0].half().float()  # the cache stores fp16
        z, feats = backbone.encode(rounded, start=3, blocks=(4,))
        for _ in range(2):  # cold, then warm
            zc, fc = encoder(images)
            for key in (4, HIGH_RES_S0, HIGH_RES_S1):
                torch.testing.assert_close(fc[key], feats[key], rtol=0, atol=1e-6)
            torch.testing.assert_close(zc, z, rtol=0, atol=1e-6)
    assert encoder.cache.hits == 2 and encoder.cache.misses == 2


def test_sam2_preprocessing_squashes_to_the_square_input():
    backbone = build_backbone(BackboneConfig(name="tiny_sam2"))
    image = np.zeros((60, 200, 3), dtype=np.uint8)
    image[:, 100:] = 255
    x = backbone.preprocess_image(image)
    assert backbone.resized_shape(60, 200) == (128, 128) and x.shape == (3, 128, 128)
    assert x[0, :, 70:].min() > 2.0 and x[0, :, :58].max() < -2.0  # no padding: the right half fills the input
    logits = torch.zeros(1, 1, 32, 32)
    logits[..., 16:] = 5.0
    up = backbone.postprocess(logits, (60, 200))
    assert up.shape == (1, 1, 60, 200) and up[0, 0, :, 110:].min() > 4 and up[0, 0, :, :90].max() < 1


# ------------------------------------------------------------------------------------- Hiera PEFT
def _pooling_block(backbone: Sam2Hiera) -> int:
    return next(i for i, b in enumerate(backbone.encoder_blocks()) if b.q_stride and b.dim != b.dim_out)


def test_parallel_adapter_on_hiera_pools_its_branch_and_is_identity_at_init():
    base = build_backbone(BackboneConfig(name="tiny_sam2"))
    model = copy.deepcopy(base)
    build_peft("adapter", {"placement": "parallel", "start_block": 0}).apply(model)
    i = _pooling_block(model)
    blk = model.encoder_blocks()[i]
    assert blk.attn.adapter.down.in_features == blk.dim and blk.attn.adapter.up.out_features == blk.dim_out
    batch = _batch(128)
    with torch.no_grad():
        z0, _ = base.encode(batch["image"])
        z1, _ = model.encode(batch["image"])
    torch.testing.assert_close(z1, z0, rtol=0, atol=1e-6)
    z, feats = model.encode(batch["image"])
    model.decode(z, Prompts(boxes=batch["box"]), feats).logits.square().mean().backward()
    assert blk.attn.adapter.up.weight.grad.abs().max() > 0


def test_vpt_on_hiera_attends_to_prompt_keys_as_in_float64_reference():
    model = build_backbone(BackboneConfig(name="tiny_sam2"))
    build_peft("vpt", {"num_tokens": 3}).apply(model)
    blk = model.encoder_blocks()[_pooling_block(model)]
    wrapper, a = blk.attn, blk.attn.base_layer
    x = torch.randn(2, 4, 4, a.dim, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        out = wrapper(x).double().numpy()
    f64 = lambda t: t.detach().double().numpy()  # noqa: E731
    w, bias = f64(a.qkv.weight), f64(a.qkv.bias)
    heads, d = a.num_heads, a.dim_out // a.num_heads
    qkv = f64(x) @ w.T + bias  # (2, 4, 4, 3 * dim_out)
    q = qkv[..., : a.dim_out].reshape(2, 2, 2, 2, 2, a.dim_out).max(axis=(2, 4))  # 2x2 max pool → (2, 2, 2, C)
    k, v = qkv[..., a.dim_out : 2 * a.dim_out].reshape(2, 16, -1), qkv[..., 2 * a.dim_out :].reshape(2, 16, -1)
    norm = blk.norm1
    p = f64(wrapper.prompts)
    pn = (p - p.mean(-1, keepdims=True)) / np.sqrt(p.var(-1, keepdims=True) + norm.eps) * f64(norm.weight) + f64(
        norm.bias
    )
    pqkv = pn @ w.T + bias
    k = np.concatenate([k, np.broadcast_to(pqkv[:, a.dim_out : 2 * a.dim_out], (2, 3, a.dim_out))], 1)
    v = np.concatenate([v, np.broadcast_to(pqkv[:, 2 * a.dim_out :], (2, 3, a.dim_out))], 1)
    q = q.reshape(2, 4, heads, d).transpose(0, 2, 1, 3)
    k, v = (t.reshape(2, 19, heads, d).transpose(0, 2, 1, 3) for t in (k, v))
    logits = q @ k.transpose(0, 1, 3, 2) / np.sqrt(d)
    attn = np.exp(logits - logits.max(-1, keepdims=True))
    attn /= attn.sum(-1, keepdims=True)
    ref = (attn @ v).transpose(0, 2, 1, 3).reshape(2, 2, 2, a.dim_out) @ f64(a.proj.weight).T + f64(a.proj.bias)
    np.testing.assert_allclose(out, ref, rtol=0, atol=1e-5)


def test_sam_adapter_on_hiera_keys_shared_projections_by_block_input_width():
    model = build_backbone(BackboneConfig(name="tiny_sam2"))
    build_peft("sam_adapter", {"scale_factor": 4}).apply(model)
    shared = model.image_encoder.sam_adapter_shared
    assert sorted(int(k) for k in shared) == [16, 32, 64]  # block inputs; the last stage's 128 is only an output
    blk = model.encoder_blocks()[_pooling_block(model)]
    assert blk.shared_mlp.out_features == blk.dim  # the prompt is added at the block input width


# ------------------------------------------------------------------------------------- checkpoints
def test_sam2_checkpoint_round_trip_in_the_official_layout(tmp_path):
    model = tiny_sam2_model()
    torch.manual_seed(3)
    for p in model.parameters():
        p.data.add_(0.05 * torch.randn_like(p))
    path = tmp_path / "sam2.1_hiera_tiny_test.pt"
    torch.save({"model": model.state_dict()}, path)
    loaded = build_backbone(BackboneConfig(name="tiny_sam2", checkpoint=str(path)))
    for name, value in loaded.state_dict().items():
        src = "sam_prompt_encoder" if name.startswith("prompt_encoder.") else "sam_mask_decoder"
        key = name if name.startswith(("image_encoder.", "no_mem_embed")) else name.replace(name.split(".")[0], src, 1)
        assert torch.equal(value, model.state_dict()[key]), name
    assert loaded.weights_id != "tiny_sam2_seed0"
    # the video modules are part of the official file: a file without them is another architecture
    partial = {k: v for k, v in model.state_dict().items() if not k.startswith("memory_")}
    torch.save({"model": partial}, tmp_path / "partial.pt")
    with pytest.raises(CheckpointError, match=r"missing key\(s\) \['memory_attention"):
        build_backbone(BackboneConfig(name="tiny_sam2", checkpoint=str(tmp_path / "partial.pt")))
    torch.save(model.state_dict(), tmp_path / "bare.pt")
    with pytest.raises(CheckpointError, match="no 'model' entry"):
        build_backbone(BackboneConfig(name="tiny_sam2", checkpoint=str(tmp_path / "bare.pt")))
    torch.save({"model": tiny_tinyvit_model().state_dict()}, tmp_path / "tinyvit.pt")
    with pytest.raises(CheckpointError, match="unexpected key"):
        build_backbone(BackboneConfig(name="tiny_sam2", checkpoint=str(tmp_path / "tinyvit.pt")))


def test_mobilesam_layout_and_checkpoint_round_trip(tmp_path):
    model = tiny_tinyvit_model()
    enc = model.image_encoder
    conv = enc.patch_embed.seq[0].c
    assert conv.kernel_size == (3, 3) and conv.stride == (2, 2)  # the original TinyViT patch embedding
    assert {"image_encoder.norm_head.weight", "image_encoder.head.bias"} <= set(model.state_dict())
    assert model.normalization == "sam" and model.prompt_encoder.image_embedding_size == (8, 8)
    torch.manual_seed(4)
    for p in model.parameters():
        p.data.add_(0.05 * torch.randn_like(p))
    torch.save(model.state_dict(), tmp_path / "mobile_sam.pt")  # MobileSAM ships a plain state dict
    loaded = build_backbone(BackboneConfig(name="tiny_tinyvit", checkpoint=str(tmp_path / "mobile_sam.pt")))
    images = _batch(128)["image"]
    with torch.no_grad():
        torch.testing.assert_close(loaded.encode(images)[0], model.eval().encode(images)[0], rtol=0, atol=0)
        assert loaded.encode(images)[0].shape == (2, 256, 8, 8)


@pytest.mark.slow
def test_mobilesam_rejects_a_litemedsam_checkpoint():
    from bench.backbones.litemedsam import bundled_litemedsam_path

    with pytest.raises(CheckpointError, match=r"missing key\(s\) \['image_encoder.head.bias'"):
        build_backbone(BackboneConfig(name="mobilesam", checkpoint=bundled_litemedsam_path()))


# ------------------------------------------------------------------------------------- full size (slow)
FULL = ["sam_vit_b", "sam_vit_l", "sam_vit_h", "sam2_hiera_t", "sam2_hiera_s", "sam2_hiera_b_plus", "sam2_hiera_l"]


@pytest.mark.slow
@pytest.mark.parametrize("name", FULL + ["mobilesam", "litemedsam"])
def test_full_size_backbone_forward(name):
    torch.manual_seed(0)
    t0 = time.time()
    backbone = build_backbone(BackboneConfig(name=name, random_init=name != "litemedsam"))
    s = backbone.img_size
    assert s == (256 if name == "litemedsam" else 1024)
    built = time.time() - t0
    images = torch.randn(1, 3, s, s)
    box = torch.tensor([[0.2, 0.3, 0.6, 0.8]]) * s
    t0 = time.time()
    with torch.no_grad():
        z, feats = backbone.encode(images)
        out = backbone.decode(z, Prompts(boxes=box), feats)
    print(f"\n{name}: built {built:.1f}s, forward {time.time() - t0:.1f}s")
    assert z.shape == (1, 256, 64, 64) and out.logits.shape == (1, 1, 256, 256) and out.mask_token.shape == (1, 256)
    assert torch.isfinite(out.logits).all() and torch.isfinite(out.iou).all()
    if name.startswith("sam2"):
        assert feats[HIGH_RES_S0].shape == (1, 32, 256, 256) and feats[HIGH_RES_S1].shape == (1, 64, 128, 128)
