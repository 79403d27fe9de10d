"""Tests for bench/backbones: encoder steps, decoder outputs, pre/postprocessing, LiteMedSAM weights, checkpoints."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch

from bench.backbones import BACKBONES, Backbone, CheckpointError, Prompts, build_backbone, load_checkpoint
from bench.backbones.litemedsam import LITEMEDSAM_SHA256, build_tinyvit_sam, bundled_litemedsam_path
from bench.config import BackboneConfig, ConfigError


@pytest.fixture
def tiny() -> Backbone:
    return build_backbone(BackboneConfig(name="tiny_sam"))


def _images(n: int = 2, size: int = 64, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


BOXES = torch.tensor([[8.0, 10.0, 40.0, 50.0], [20.0, 4.0, 60.0, 30.0]])


# ----------------------------------------------------------------------------- tiny_sam: encoder
def test_registry_lists_the_backbones():
    assert {"tiny_sam", "litemedsam", "sam_vit_b", "sam_vit_l", "sam_vit_h"} <= set(BACKBONES.names())


def test_tiny_sam_is_the_same_in_every_build():
    a, b = build_backbone(BackboneConfig(name="tiny_sam")), build_backbone(BackboneConfig(name="tiny_sam"))
    sa, sb = a.state_dict(), b.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


def test_tiny_sam_rejects_another_input_size():
    with pytest.raises(ConfigError, match="64"):
        build_backbone(BackboneConfig(name="tiny_sam", img_size=128))


@torch.no_grad()
def test_encode_shapes_and_block_features(tiny):
    z, feats = tiny.encode(_images(), blocks=(0, 3))
    assert z.shape == (2, 32, 8, 8)
    assert sorted(feats) == [0, 3]
    assert all(f.shape == (2, 32, 8, 8) for f in feats.values())
    assert not torch.equal(feats[0], feats[3])
    assert len(tiny.encoder_blocks()) == 4
    assert all(hasattr(b, "attn") and hasattr(b.attn, "qkv") and hasattr(b, "mlp") for b in tiny.encoder_blocks())


@torch.no_grad()
def test_encode_matches_the_official_image_encoder_forward(tiny):
    x = _images()
    z, _ = tiny.encode(x)
    torch.testing.assert_close(z, tiny.image_encoder(x), rtol=0, atol=1e-6)


@torch.no_grad()
def test_encode_from_any_cut_point_equals_the_full_encode(tiny):
    x = _images()
    steps = tiny.encoder_steps()
    full, full_feats = tiny.encode(x, blocks=(0, 1, 2, 3))
    for k in range(len(steps) + 1):
        state, early = tiny.encode_prefix(x, k, blocks=(0, 1, 2, 3))
        z, feats = tiny.encode(state, start=k, blocks=(0, 1, 2, 3))
        assert set(early) == {s.block for s in steps[:k] if s.block is not None}
        for b in early:
            torch.testing.assert_close(early[b], full_feats[b], rtol=0, atol=1e-6)
        torch.testing.assert_close(z, full, rtol=0, atol=1e-6)
        # block outputs after the cut are still returned, and are the same
        expected = {s.block for s in steps[k:] if s.block is not None}
        assert set(feats) == expected
        for b in expected:
            torch.testing.assert_close(feats[b], full_feats[b], rtol=0, atol=1e-6)


def test_block_feature_is_the_official_block_output(tiny):
    captured = {}
    tiny.image_encoder.blocks[2].register_forward_hook(lambda m, a, out: captured.setdefault("out", out))
    with torch.no_grad():
        _, feats = tiny.encode(_images(), blocks=(2,))
    torch.testing.assert_close(feats[2], captured["out"].permute(0, 3, 1, 2))


def test_frozen_prefix_counts_leading_frozen_steps(tiny):
    n = len(tiny.encoder_steps())
    tiny.requires_grad_(False)
    assert tiny.frozen_prefix() == n
    tiny.encoder_blocks()[1].mlp.requires_grad_(True)
    assert tiny.frozen_prefix() == 2  # patch embedding, block 0
    tiny.image_encoder.patch_embed.requires_grad_(True)
    assert tiny.frozen_prefix() == 0


# ----------------------------------------------------------------------------- tiny_sam: decoder
def _official_mask_token(model: Backbone, z: torch.Tensor, prompts: Prompts, i: int) -> torch.Tensor:
    """hs[:, 1] recomputed from MaskDecoder.predict_masks' own steps (single image, box prompt)."""
    dec = model.mask_decoder
    sparse, dense = model.prompt_encoder(points=None, boxes=prompts.boxes[i : i + 1], masks=None)
    tokens = torch.cat([dec.iou_token.weight, dec.mask_tokens.weight], dim=0)
    tokens = torch.cat([tokens.unsqueeze(0).expand(sparse.size(0), -1, -1), sparse], dim=1)
    src = z[i : i + 1] + dense
    hs, _ = dec.transformer(src, model.prompt_encoder.get_dense_pe(), tokens)
    return hs[:, 1, :]


@torch.no_grad()
def test_decode_shapes_and_mask_token(tiny):
    z, _ = tiny.encode(_images())
    prompts = Prompts(boxes=BOXES)
    out = tiny.decode(z, prompts)
    assert out.logits.shape == (2, 1, 32, 32)
    assert out.iou.shape == (2, 1)
    assert out.mask_token.shape == (2, 32)
    for i in range(2):
        torch.testing.assert_close(out.mask_token[i : i + 1], _official_mask_token(tiny, z, prompts, i))
    assert not torch.allclose(out.mask_token[0], out.mask_token[1])


POINTS = torch.tensor([[[20.0, 30.0], [5.0, 5.0]], [[40.0, 12.0], [60.0, 60.0]]])
LABELS = torch.tensor([[1, 0], [1, 0]])


@pytest.mark.parametrize("kind", ["boxes", "points"])
@torch.no_grad()
def test_decode_matches_the_official_decoder_per_image(tiny, kind):
    """The batched thin decoder call equals MaskDecoder.forward image by image."""
    z, _ = tiny.encode(_images())
    prompts = Prompts(boxes=BOXES) if kind == "boxes" else Prompts(points=POINTS, labels=LABELS)
    out = tiny.decode(z, prompts)
    for i in range(2):
        if kind == "boxes":
            sparse, dense = tiny.prompt_encoder(points=None, boxes=BOXES[i : i + 1], masks=None)
        else:
            sparse, dense = tiny.prompt_encoder(points=(POINTS[i : i + 1], LABELS[i : i + 1]), boxes=None, masks=None)
        low, iou = tiny.mask_decoder(
            image_embeddings=z[i : i + 1],
            image_pe=tiny.prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=False,
        )
        torch.testing.assert_close(out.logits[i : i + 1], low)
        torch.testing.assert_close(out.iou[i : i + 1], iou)


@torch.no_grad()
def test_promptless_decode_equals_the_official_sam_path(tiny):
    """Prompts() = Sam.forward's points=None, boxes=None, masks=None, image by image."""
    z, _ = tiny.encode(_images())
    out = tiny.decode(z, Prompts())
    assert out.logits.shape == (2, 1, 32, 32)
    for i in range(2):
        sparse, dense = tiny.prompt_encoder(points=None, boxes=None, masks=None)
        assert sparse.shape[1] == 0  # no prompt token: only the no-mask dense embedding
        low, iou = tiny.mask_decoder(
            image_embeddings=z[i : i + 1],
            image_pe=tiny.prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=False,
        )
        torch.testing.assert_close(out.logits[i : i + 1], low, rtol=0, atol=1e-5)
        torch.testing.assert_close(out.iou[i : i + 1], iou, rtol=0, atol=1e-5)
    assert not torch.allclose(out.logits, tiny.decode(z, Prompts(boxes=BOXES)).logits)


@torch.no_grad()
def test_promptless_decode_on_sam2():
    model = build_backbone(BackboneConfig(name="tiny_sam2"))
    g = torch.Generator().manual_seed(0)
    images = torch.rand(2, 3, model.img_size, model.img_size, generator=g)
    z, feats = model.encode(images)
    out = model.decode(z, Prompts(), feats)
    sparse, dense = model.prompt_encoder(points=None, boxes=None, masks=None)
    assert sparse.shape == (1, 0, z.shape[1])
    assert out.logits.shape[0] == 2 and torch.isfinite(out.logits).all()
    boxed = model.decode(z, Prompts(boxes=torch.tensor([[10.0, 10.0, 60.0, 70.0]] * 2)), feats)
    assert not torch.allclose(out.logits, boxed.logits)


@torch.no_grad()
def test_decode_with_points(tiny):
    z, _ = tiny.encode(_images())
    points = torch.tensor([[[20.0, 30.0], [5.0, 5.0]], [[40.0, 12.0], [60.0, 60.0]]])
    labels = torch.tensor([[1, 0], [1, 0]])
    out = tiny.decode(z, Prompts(points=points, labels=labels))
    assert out.logits.shape == (2, 1, 32, 32) and out.mask_token.shape == (2, 32)
    flipped = tiny.decode(z, Prompts(points=points, labels=1 - labels))
    assert not torch.allclose(out.logits, flipped.logits)  # the labels reach the prompt encoder


def test_decoder_output_is_differentiable_wrt_the_decoder(tiny):
    z, _ = tiny.encode(_images())
    out = tiny.decode(z, Prompts(boxes=BOXES))
    (out.logits.sum() + out.mask_token.sum()).backward()
    assert tiny.mask_decoder.output_upscaling[0].weight.grad is not None


# ----------------------------------------------------------------------------- pre/postprocessing
def test_preprocess_image_keeps_aspect_ratio_and_pads_bottom_right_with_zeros(tiny):
    for h, w in [(40, 80), (80, 40), (64, 64), (30, 100)]:
        img = np.zeros((h, w, 3), np.uint8)
        s = min(h, w) // 2
        img[h // 4 : h // 4 + s, w // 4 : w // 4 + s] = 255  # a white square
        out = tiny.preprocess_image(img)
        assert out.shape == (3, 64, 64) and out.dtype == np.float32
        nh, nw = tiny.resized_shape(h, w)
        assert max(nh, nw) == 64
        assert abs(nh / nw - h / w) < 0.05
        assert np.all(out[:, nh:, :] == 0) and np.all(out[:, :, nw:] == 0)
        # the black background inside the image is normalised, so it is not the padding value
        assert np.all(out[:, :nh, :nw].reshape(3, -1).min(axis=1) < -1)
        ys, xs = np.nonzero(out[0] > 1.0)  # the white square, resized
        assert abs((ys.max() - ys.min()) - (xs.max() - xs.min())) <= 1  # still a square
        assert abs((ys.max() - ys.min() + 1) - s * 64 / max(h, w)) <= 2


def test_preprocess_image_normalisation(tiny):
    img = np.full((64, 64, 3), (123, 116, 103), np.uint8)
    out = tiny.preprocess_image(img)
    np.testing.assert_allclose(out[:, 0, 0], (np.array([123, 116, 103]) - tiny.pixel_mean) / tiny.pixel_std, atol=1e-5)


def test_preprocess_mask_nearest_and_padded(tiny):
    mask = np.zeros((40, 80), np.uint8)
    mask[10:30, 20:60] = 1
    out = tiny.preprocess_mask(mask)
    assert out.shape == (64, 64)
    assert set(np.unique(out)) == {0.0, 1.0}
    assert np.all(out[32:] == 0)
    ys, xs = np.nonzero(out)
    assert (ys.min(), ys.max(), xs.min(), xs.max()) == (8, 23, 16, 47)


def test_postprocess_returns_original_size_without_the_padding(tiny):
    h, w = 50, 80  # resized to (40, 64): rows 40..63 of the input are padding
    gt = np.zeros((h, w), bool)
    gt[10:30, 20:60] = True
    low = torch.full((1, 1, 32, 32), -10.0)
    low[..., 4:12, 8:24] = 10.0  # the same rectangle in the 32x32 low-res frame (scale 0.8 / 2)
    logits = tiny.postprocess(low, (h, w))
    assert logits.shape == (1, 1, h, w)
    pred = (logits[0, 0] > 0).numpy()
    iou = (pred & gt).sum() / (pred | gt).sum()
    assert iou > 0.9


# ----------------------------------------------------------------------------- LiteMedSAM
@pytest.fixture(scope="module")
def litemedsam() -> Backbone:
    return build_backbone(BackboneConfig(name="litemedsam"))


def test_litemedsam_loads_the_verified_bundled_weights(litemedsam):
    assert litemedsam.weights_id == "79d8c9dca6db4d69"
    assert LITEMEDSAM_SHA256.startswith(litemedsam.weights_id)
    path = bundled_litemedsam_path()
    digest = hashlib.sha256(open(path, "rb").read()).hexdigest()
    assert digest == LITEMEDSAM_SHA256
    state = torch.load(path, map_location="cpu", weights_only=True)
    own = litemedsam.state_dict()
    assert set(own) == set(state)
    for key in (
        "image_encoder.patch_embed.seq.0.c.weight",
        "mask_decoder.iou_token.weight",
        "prompt_encoder.point_embeddings.0.weight",
    ):
        assert torch.equal(own[key], state[key])
    assert litemedsam.normalization == "minmax"
    assert litemedsam.img_size == 256


@torch.no_grad()
def test_litemedsam_forward_at_native_size(litemedsam):
    img = np.random.default_rng(0).integers(0, 256, (200, 256, 3), dtype=np.uint8)
    x = torch.from_numpy(litemedsam.preprocess_image(img))[None]
    assert float(x.min()) == 0.0 and float(x.max()) <= 1.0  # min-max normalised
    box = Prompts(boxes=torch.tensor([[40.0, 30.0, 180.0, 150.0]]))
    z, feats = litemedsam.encode(x, blocks=(0, 9))
    out = litemedsam.decode(z, box)
    assert z.shape == (1, 256, 64, 64)
    # the step decomposition reproduces the official TinyViT forward (which only runs at 256 px)
    torch.testing.assert_close(z, litemedsam.image_encoder(x), rtol=0, atol=1e-5)
    assert feats[0].shape == (1, 128, 128, 128) and feats[9].shape == (1, 320, 64, 64)
    assert out.logits.shape == (1, 1, 256, 256) and out.iou.shape == (1, 1) and out.mask_token.shape == (1, 256)
    assert torch.isfinite(out.logits).all()
    assert litemedsam.postprocess(out.logits, (200, 256)).shape == (1, 1, 200, 256)


def test_litemedsam_at_128_px_uses_the_same_weights():
    small = build_backbone(BackboneConfig(name="litemedsam", img_size=128))
    assert small.img_size == 128 and small.weights_id == "79d8c9dca6db4d69"
    x = torch.rand(1, 3, 128, 128, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        z, _ = small.encode(x)
        state, _ = small.encode_prefix(x, 5)
        resumed, _ = small.encode(state, start=5)
    assert z.shape == (1, 256, 32, 32)
    torch.testing.assert_close(resumed, z, rtol=0, atol=1e-5)
    # the loaded weights matter: a randomly initialised model of the same architecture differs
    torch.manual_seed(0)
    random = build_tinyvit_sam(128, [64, 128, 160, 320], [2, 2, 6, 2], [2, 4, 5, 10]).eval()
    assert {k: v.shape for k, v in random.state_dict().items()} == {k: v.shape for k, v in small.state_dict().items()}
    box = Prompts(boxes=torch.tensor([[20.0, 15.0, 90.0, 75.0]]))
    with torch.no_grad():
        out = small.decode(z, box)
        rz, _ = random.encode(x)
        rout = random.decode(rz, box)
    assert not torch.allclose(z, rz, atol=1e-3)
    assert not torch.allclose(out.logits, rout.logits, atol=1e-3)
    with pytest.raises(ConfigError, match="multiple of 64"):
        build_backbone(BackboneConfig(name="litemedsam", img_size=100))


# ----------------------------------------------------------------------------- checkpoints
def _perturbed_state(model: Backbone) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return {
        k: (v + torch.randn(v.shape, generator=g) if v.is_floating_point() else v.clone())
        for k, v in model.state_dict().items()
    }


def test_checkpoint_round_trip(tiny, tmp_path):
    state = _perturbed_state(tiny)
    path = tmp_path / "tiny.pt"
    torch.save(state, path)
    loaded = build_backbone(BackboneConfig(name="tiny_sam", checkpoint=str(path)))
    own = loaded.state_dict()
    assert set(own) == set(state)
    for k, v in state.items():
        assert torch.equal(own[k], v), k
    assert not torch.equal(own["mask_decoder.iou_token.weight"], tiny.state_dict()["mask_decoder.iou_token.weight"])
    assert loaded.weights_id == hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def test_checkpoint_wrapped_in_a_model_entry_loads(tiny, tmp_path):
    state = _perturbed_state(tiny)
    path = tmp_path / "wrapped.pt"
    torch.save({"model": state, "epoch": 3}, path)
    model = build_backbone(BackboneConfig(name="tiny_sam"))
    load_checkpoint(model, path)
    assert torch.equal(model.state_dict()["image_encoder.pos_embed"], state["image_encoder.pos_embed"])


def _bad_state(tiny: Backbone, kind: str) -> dict:
    state = dict(tiny.state_dict())
    if kind == "missing":
        del state["mask_decoder.iou_token.weight"]
    elif kind == "unexpected":
        state["mask_decoder.extra_head.weight"] = torch.zeros(3)
    elif kind == "shape":
        state["mask_decoder.iou_token.weight"] = torch.zeros(2, 32)
    return state


@pytest.mark.parametrize(
    "kind, must_contain",
    [
        ("missing", ["1 missing key", "mask_decoder.iou_token.weight", "0 unexpected"]),
        ("unexpected", ["1 unexpected key", "mask_decoder.extra_head.weight", "0 missing"]),
        ("shape", ["wrong shape", "mask_decoder.iou_token.weight"]),
    ],
)
def test_checkpoint_that_does_not_fit_raises_naming_the_keys(tiny, tmp_path, kind, must_contain):
    path = tmp_path / f"{kind}.pt"
    torch.save(_bad_state(tiny, kind), path)
    with pytest.raises(CheckpointError) as info:
        build_backbone(BackboneConfig(name="tiny_sam", checkpoint=str(path)))
    for part in must_contain:
        assert part in str(info.value), str(info.value)
    assert str(path) in str(info.value)


def test_missing_checkpoint_file_raises(tmp_path):
    path = tmp_path / "nope.pt"
    with pytest.raises(CheckpointError, match="not found") as info:
        build_backbone(BackboneConfig(name="tiny_sam", checkpoint=str(path)))
    assert str(path) in str(info.value)


class _NotAllowed:
    pass


@pytest.mark.parametrize("content", ["garbage", "pickle"])
def test_unreadable_or_unsafe_checkpoint_raises(tmp_path, content):
    path = tmp_path / "bad.pt"
    if content == "garbage":
        path.write_bytes(b"this is not a checkpoint")
    else:  # a pickled object that weights_only=True must refuse to load
        torch.save({"x": _NotAllowed()}, path)
    with pytest.raises(CheckpointError, match="cannot read checkpoint") as info:
        build_backbone(BackboneConfig(name="tiny_sam", checkpoint=str(path)))
    assert str(path) in str(info.value)


def test_litemedsam_with_a_foreign_checkpoint_raises(tiny, tmp_path):
    path = tmp_path / "tiny.pt"
    torch.save(tiny.state_dict(), path)
    with pytest.raises(CheckpointError, match="missing key"):
        build_backbone(BackboneConfig(name="litemedsam", checkpoint=str(path), img_size=128))


def test_stage_ends_and_block_dims_describe_each_family(tiny):
    sam_b = build_backbone(BackboneConfig(name="sam_vit_b", random_init=True))
    assert sam_b.stage_ends() == [2, 5, 8, 11] and sam_b.block_dims() == [768] * 12
    assert tiny.stage_ends() == [1, 3] and tiny.block_dims() == [32] * 4
    lite = build_backbone(BackboneConfig(name="litemedsam", img_size=128))
    assert lite.stage_ends() == [1, 7, 9]  # TinyViT layers 1-3 with depths 2, 6, 2
    assert lite.block_dims() == [128] * 2 + [160] * 6 + [320] * 2
    _, feats = lite.encode(torch.rand(1, 3, 128, 128), blocks=tuple(lite.stage_ends()))
    assert [feats[b].shape[1] for b in lite.stage_ends()] == [128, 160, 320]
