"""HQ-SAM and LST specifics: the decoder-extension hook, HQ token and fusion, the ladder side network,
gradient routes, and the cached encoder path (the generic contract is in test_peft_contract.py)."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from bench.backbones import Backbone, Prompts, build_backbone
from bench.config import BackboneConfig, ConfigError
from bench.contracts.backbone import INPUT_EMBEDDING
from bench.contracts.peft import build_peft, trainable_parameters, unused_decoder_modules
from bench.data.encoders import CachedEncoder
from bench.runs.results import RunDir
from bench.runs.runner import build_parts, execute_run
from bench.runs.sweep import load_config, run_configs
from methods.peft.hqsam import HQDecoder
from methods.peft.lst import LadderSide

_CACHE: dict[str, Backbone] = {}


def backbone(name: str = "tiny_sam", **kw) -> Backbone:
    key = f"{name}{kw}"
    if key not in _CACHE:
        _CACHE[key] = build_backbone(BackboneConfig(name=name, **kw))
    return copy.deepcopy(_CACHE[key])


def _inputs(model: Backbone, batch: int = 2) -> tuple[torch.Tensor, Prompts]:
    g = torch.Generator().manual_seed(0)
    s = model.img_size
    images = torch.rand(batch, 3, s, s, generator=g)
    if model.normalization == "sam":
        images = (images - 0.5) / 0.25
    boxes = torch.tensor([[0.2, 0.25, 0.7, 0.8], [0.1, 0.3, 0.6, 0.9]])[:batch] * s
    return images, Prompts(boxes=boxes)


def _applied(name: str, model: Backbone, **options):
    method = build_peft(name, options)
    method.apply(model)
    return method


def _perturb(module: nn.Module, seed: int = 1, scale: float = 0.05) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g))


# ----------------------------------------------------------------------------- the decode hook
def test_decode_without_extension_is_unchanged_and_has_no_extension_keys():
    model = backbone()
    assert model.decoder_extension is None
    assert not any(k.startswith("decoder_extension") for k in model.state_dict())


@pytest.mark.parametrize("name", ["hqsam", "lst"])
def test_decode_uses_given_blocks_or_those_encode_recorded(name):
    model = backbone()
    method = _applied(name, model)
    _perturb(model.decoder_extension)
    images, prompts = _inputs(model)
    with torch.no_grad():
        z, feats = model.encode(images, blocks=method.feature_blocks(model))
        given = model.decode(z, prompts, feats)
        z2, _ = model.encode(images)
        recorded = model.decode(z2, prompts)
    assert torch.equal(given.logits, recorded.logits)
    # records are consumed by decode: a second decode without blocks must not reuse them
    with torch.no_grad(), pytest.raises(ValueError, match=f"encoder block {method.feature_blocks(model)[0]}"):
        model.decode(z2, prompts)
    # records of another batch size are not used
    with torch.no_grad():
        model.encode(images[:1])
        with pytest.raises(ValueError, match="batch of 2"):
            model.decode(z, prompts)


@pytest.mark.parametrize("name", ["hqsam", "lst"])
def test_a_second_decoder_extension_is_refused(name):
    model = backbone()
    _applied("hqsam", model)
    with pytest.raises(ConfigError, match="already has a decoder extension"):
        _applied(name, model)


# ----------------------------------------------------------------------------- HQ-SAM
def _tokens_seen_by_transformer(model: Backbone, images: torch.Tensor, prompts: Prompts) -> torch.Tensor:
    seen = {}
    handle = model.mask_decoder.transformer.register_forward_hook(lambda m, args, out: seen.update(tokens=args[2]))
    with torch.no_grad():
        z, _ = model.encode(images)
        model.decode(z, prompts)
    handle.remove()
    return seen["tokens"]


def test_hqsam_adds_one_output_token_after_the_mask_tokens():
    plain, model = backbone(), backbone()
    _applied("hqsam", model)
    images, prompts = _inputs(model)
    ref = _tokens_seen_by_transformer(plain, images, prompts)
    tokens = _tokens_seen_by_transformer(model, images, prompts)
    n_sam = 1 + model.mask_decoder.mask_tokens.weight.shape[0]  # iou + 4 mask tokens
    assert ref.shape == (2, n_sam + 2, 32)  # + 2 box corner tokens
    assert tokens.shape == (2, n_sam + 3, 32)
    ext = model.decoder_extension
    assert isinstance(ext, HQDecoder) and ext.extra_tokens().shape == (1, 32)
    assert torch.equal(tokens[:, :n_sam], ref[:, :n_sam])
    assert torch.equal(tokens[:, n_sam], ext.hf_token.weight[0].expand(2, -1))
    assert torch.equal(tokens[:, n_sam + 1 :], ref[:, n_sam:])
    assert ext.hf_mlp.layers[-1].out_features == 32 // 8 and len(ext.hf_mlp.layers) == 3


def _state(model: Backbone, images: torch.Tensor, prompts: Prompts, blocks=None):
    """Run decode and capture the DecoderState the extension receives."""
    ext = model.decoder_extension
    seen = {}
    original = ext.adapt_logits

    def spy(state):
        seen["state"] = state
        return original(state)

    ext.adapt_logits = spy
    try:
        with torch.no_grad():
            z, feats = model.encode(images, blocks=ext.blocks)
            out = model.decode(z, prompts, feats if blocks is None else blocks)
    finally:
        del ext.adapt_logits
    return out, seen["state"], z, feats


def test_hqsam_output_is_the_hq_token_mask_or_the_sum():
    model = backbone()
    _applied("hqsam", model, output="sum")
    images, prompts = _inputs(model)
    out, state, z, feats = _state(model, images, prompts)
    ext: HQDecoder = model.decoder_extension
    # hand-wired HQ mask in float64: hf_mlp(token) @ (maskfeature(upscaled) + enc(z) + compress(early))
    e64 = copy.deepcopy(ext).double()
    early = feats[1].double()
    fused = e64.embedding_maskfeature(state.upscaled.double()) + e64.embedding_encoder(z.double())
    fused = fused + e64.compress_vit_feat(early)
    hyper = e64.hf_mlp(state.extra_tokens[:, 0].double())
    hq = torch.einsum("bc,bchw->bhw", hyper, fused)[:, None]
    assert out.logits.shape == state.logits.shape == (2, 1, 32, 32)
    torch.testing.assert_close(out.logits.double(), state.logits.double() + hq, rtol=0, atol=1e-4)
    default = backbone()
    _applied("hqsam", default)  # train.py: hq_token_only=True is the default
    default.decoder_extension.load_state_dict(ext.state_dict())
    with torch.no_grad():
        only = default.decode(z, prompts, feats)
    torch.testing.assert_close(only.logits.double(), hq, rtol=0, atol=1e-4)
    # SAM's own mask changes too (the HQ token joins the token attention): not an identity at init
    plain = backbone()
    with torch.no_grad():
        ref = plain.decode(plain.encode(images)[0], prompts)
    assert (state.logits - ref.logits).abs().max() > 1e-4


@pytest.mark.parametrize("name, kw", [("tiny_sam", {}), ("litemedsam", {"img_size": 128})])
def test_hqsam_fuses_the_first_stage_end_block(name, kw):
    model = backbone(name, **kw)
    method = _applied("hqsam", model)
    early = model.stage_ends()[0]
    assert method.feature_blocks(model) == (early,) == model.decoder_extension.blocks
    images, prompts = _inputs(model, batch=1)
    with torch.no_grad():
        z, feats = model.encode(images, blocks=(0, early))
        base = model.decode(z, prompts, feats).logits
        other = dict(feats)
        other[0] = feats[0] + 1.0  # another block does not matter
        assert torch.equal(model.decode(z, prompts, other).logits, base)
        moved = dict(feats)
        moved[early] = feats[early] * 1.5  # the early block does
        assert (model.decode(z, prompts, moved).logits - base).abs().max() > 1e-4
        hq = model.decoder_extension.hq_features(z, feats[early])
        if feats[early].shape[-1] != z.shape[-1]:  # TinyViT: 2x finer, resized by a 2x2 average
            pooled = model.decoder_extension.hq_features(z, F.avg_pool2d(feats[early], 2))
            torch.testing.assert_close(pooled, hq, rtol=0, atol=1e-5)
    h, w = z.shape[-2:]
    assert hq.shape == (1, model.embed_dim // 8, 4 * h, 4 * w)


def _hq_count(c: int, cv: int) -> int:
    c4, c8 = c // 4, c // 8
    token = c
    mlp = (c * c + c) * 2 + c * c8 + c8
    compress = cv * c * 4 + c + 2 * c + c * c8 * 4 + c8
    encoder = c * c4 * 4 + c4 + 2 * c4 + c4 * c8 * 4 + c8
    maskfeature = c8 * c4 * 9 + c4 + 2 * c4 + c4 * c8 * 9 + c8
    return token + mlp + compress + encoder + maskfeature


@pytest.mark.parametrize("name, kw, cv", [("tiny_sam", {}, 32), ("litemedsam", {"img_size": 128}, 128)])
def test_hqsam_trains_only_its_token_mlp_and_fusion_layers(name, kw, cv):
    model = backbone(name, **kw)
    method = _applied("hqsam", model)
    assert method.train_decoder is False
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {f"decoder_extension.{n}" for n, _ in model.decoder_extension.named_parameters()}
    assert trainable_parameters(model) == _hq_count(model.embed_dim, cv)
    groups = ["hf_token", "hf_mlp", "compress_vit_feat", "embedding_encoder", "embedding_maskfeature"]
    images, prompts = _inputs(model, batch=1)
    z, feats = model.encode(images, blocks=model.decoder_extension.blocks)
    model.decode(z, prompts, feats).logits.square().mean().backward()
    for group in groups:
        grads = [p.grad for n, p in model.named_parameters() if n.startswith(f"decoder_extension.{group}.")]
        assert grads and all(g is not None and g.abs().max() > 0 for g in grads), group
    assert all(p.grad is None for n, p in model.named_parameters() if not n.startswith("decoder_extension."))


def test_hqsam_vit_b_parameter_count_matches_the_official_layers():
    # ViT-B: C = 256, early feature = block 2 output with 768 channels. By hand: token 256,
    # hf_mlp 139,808, compress_vit_feat 820,000, embedding_encoder 73,952, embedding_maskfeature 37,088
    module = HQDecoder(256, 768, block=2, output="sum")
    assert sum(p.numel() for p in module.parameters()) == _hq_count(256, 768) == 1_071_104


def test_hqsam_bad_options():
    with pytest.raises(ConfigError, match="output"):
        build_peft("hqsam", {"output": "both"})
    with pytest.raises(ConfigError, match="block"):
        _applied("hqsam", backbone(), block=7)


# ----------------------------------------------------------------------------- LST
def test_lst_taps_blocks_with_gates_at_one_half_and_zero_side_output():
    model = backbone()
    method = _applied("lst", model)
    ext = model.decoder_extension
    assert isinstance(ext, LadderSide)
    assert method.feature_blocks(model) == ext.blocks == (INPUT_EMBEDDING, 0, 1, 2, 3)
    torch.testing.assert_close(ext.gate_values(), torch.full((4,), 0.5))
    images, _ = _inputs(model)
    with torch.no_grad():
        z, feats = model.encode(images, blocks=ext.blocks)
        side = ext.side_output(feats, tuple(z.shape[-2:]))
    assert side.shape == z.shape and torch.count_nonzero(side) == 0


@pytest.mark.parametrize(
    "name, kw, stride, blocks", [("tiny_sam", {}, 2, (1, 3)), ("litemedsam", {"img_size": 128}, 4, (1, 5, 9))]
)
def test_lst_stride_taps_every_kth_block_ending_at_the_last(name, kw, stride, blocks):
    model = backbone(name, **kw)
    method = build_peft("lst", {"stride": stride})
    assert method.feature_blocks(model) == (INPUT_EMBEDDING, *blocks)


def test_lst_input_embedding_is_the_input_of_block_0():
    """SAM ViT: patch_embed(x) + pos_embed, as (B, C, h, w); from encode and from the cached prefix."""
    model = backbone()
    images, _ = _inputs(model)
    enc = model.image_encoder
    with torch.no_grad():
        expected = (enc.patch_embed(images) + enc.pos_embed).permute(0, 3, 1, 2)
        _, feats = model.encode(images, blocks=(INPUT_EMBEDDING,))
        _, prefix = model.encode_prefix(images, 3, blocks=(INPUT_EMBEDDING,))
    assert torch.equal(feats[INPUT_EMBEDDING], expected) and torch.equal(prefix[INPUT_EMBEDDING], expected)


def test_lst_side_network_follows_the_gated_ladder():
    """s_0 = first_down(e); s_i = block_i(g_i s_{i-1} + (1 - g_i) down_i(f_i)); z' = z + up(LN(s_L))."""
    model = backbone()
    _applied("lst", model)
    ext: LadderSide = model.decoder_extension
    _perturb(ext, scale=0.3)
    with torch.no_grad():
        ext.gates.copy_(torch.tensor([0.05, -0.1, 0.2, 0.0]))
    images, prompts = _inputs(model)
    with torch.no_grad():
        z, feats = model.encode(images, blocks=ext.blocks)
        e64 = copy.deepcopy(ext).double()
        g = torch.sigmoid(e64.gates / 0.1)
        s = e64.first_down(feats[INPUT_EMBEDDING].double().permute(0, 2, 3, 1))
        for k, i in enumerate(ext.tapped):
            d = e64.downs[k](feats[i].double().permute(0, 2, 3, 1))
            s = e64.side_blocks[k](g[k] * s + (1 - g[k]) * d)
        expected = z.double() + e64.up(e64.norm(s)).permute(0, 3, 1, 2)
        got = ext.adapt_embedding(z, feats)
    torch.testing.assert_close(got.double(), expected, rtol=1e-4, atol=1e-4)  # float32 path vs float64 reference
    assert (got - z).abs().max() > 1e-3
    # the input embedding and every tapped block reach the embedding
    for i in ext.blocks:
        moved = dict(feats)
        moved[i] = feats[i] + 1.0
        with torch.no_grad():
            assert (ext.adapt_embedding(z, moved) - got).abs().max() > 1e-5, i


def _lst_block_count(d: int, mlp: int) -> int:
    return 2 * d + (d * 3 * d + 3 * d) + (d * d + d) + 2 * d + (d * mlp + mlp) + (mlp * d + d)


def test_lst_parameter_count_and_widths():
    model = backbone()  # 4 blocks of width 32 → side width 4, heads gcd(4, 2) = 2
    _applied("lst", model)
    ext: LadderSide = model.decoder_extension
    assert [b.attn.num_heads for b in ext.side_blocks] == [2, 2, 2, 2]
    assert [b.window_size for b in ext.side_blocks] == [4, 0, 4, 0]
    # first_down + 4 downs (32 -> 4), 4 gates, 4 side blocks, final LayerNorm, up (4 -> 32)
    expected = 5 * (32 * 4 + 4) + 4 + 4 * _lst_block_count(4, 16) + 2 * 4 + (4 * 32 + 32)
    assert sum(p.numel() for p in ext.parameters()) == expected
    decoder = sum(p.numel() for p in model.mask_decoder.parameters()) - sum(
        p.numel() for m in unused_decoder_modules(model) for p in m.parameters()
    )
    assert trainable_parameters(model) == expected + decoder


def test_lst_on_litemedsam_resizes_the_fine_stage_and_uses_stage_heads():
    model = backbone("litemedsam", img_size=128)
    _applied("lst", model)
    ext: LadderSide = model.decoder_extension
    assert ext.first_down.in_features == ext.downs[0].in_features == 128
    assert ext.downs[-1].in_features == 320 and ext.up.in_features == 40
    assert [b.attn.num_heads for b in ext.side_blocks] == [4, 4, 5, 5, 5, 5, 5, 5, 10, 10]
    images, prompts = _inputs(model, batch=1)
    with torch.no_grad():
        z, feats = model.encode(images, blocks=ext.blocks)
        assert feats[0].shape[-1] == 2 * z.shape[-1]  # first stage: twice the embedding grid
        side = ext.side_output(feats, tuple(z.shape[-2:]))
        assert side.shape == z.shape and torch.count_nonzero(side) == 0
        _perturb(ext.up, scale=0.5)
        side = ext.side_output(feats, tuple(z.shape[-2:]))
        assert side.shape == z.shape and torch.isfinite(side).all() and side.abs().max() > 1e-3
        # the 2x finer first-stage maps are resized to the grid by a 2x2 average: the extension's bilinear /2 resize
        # (weights 1/2, 1/2 per axis) equals avg_pool2d up to rounding, which 10 fp32 side blocks carry: relative
        # error a few 1e-6 of outputs ~3 (measured 4.4e-6 on an Intel Xeon; an absolute 1e-5 alone failed there)
        pooled = {i: (F.avg_pool2d(f, 2) if f.shape[-1] != z.shape[-1] else f) for i, f in feats.items()}
        torch.testing.assert_close(ext.side_output(pooled, tuple(z.shape[-2:])), side, rtol=2e-5, atol=1e-5)


def test_lst_gradients_reach_the_side_network_and_never_the_backbone():
    model = backbone()
    _applied("lst", model)
    ext: LadderSide = model.decoder_extension
    _perturb(ext.up, scale=0.5)
    images, prompts = _inputs(model)
    z, feats = model.encode(images, blocks=ext.blocks)
    feats = {i: f.clone().requires_grad_(True) for i, f in feats.items()}  # would collect backbone gradients
    model.decode(z, prompts, feats).logits.square().mean().backward()
    assert all(f.grad is None for f in feats.values())
    for n, p in ext.named_parameters():
        assert p.grad is not None and (p.grad.abs() > 0).any(), n
    assert (ext.gates.grad.abs() > 0).all()  # every gate mixes a previous state (the first: the input embedding)
    assert all(p.grad is None for p in model.image_encoder.parameters())
    assert all(p.grad is None for p in model.prompt_encoder.parameters())


def test_lst_bad_options():
    for values, word in [
        ({"reduction": 0}, "reduction"),
        ({"stride": 0}, "stride"),
        ({"gate_temperature": 0}, "gate_temperature"),
    ]:
        with pytest.raises(ConfigError, match=word):
            build_peft("lst", values)
    with pytest.raises(ConfigError, match="side width"):
        _applied("lst", backbone(), reduction=64)


# ----------------------------------------------------------------------------- cached encoder path
@pytest.mark.numerics
@pytest.mark.parametrize("name", ["hqsam", "lst"])
def test_cached_encoder_path_equals_the_uncached_path(name, tmp_path):
    model = backbone()
    method = _applied(name, model)
    _perturb(model.decoder_extension)
    blocks = method.feature_blocks(model)
    images, prompts = _inputs(model)
    cached = CachedEncoder(model, str(tmp_path), blocks)
    assert cached.stop == len(model.encoder_steps())  # the whole frozen encoder comes from the cache
    plain = CachedEncoder(model, None, blocks)
    with torch.no_grad():
        cold = model.decode(*cached(images)[:1], prompts, cached(images)[1])
        z, feats = cached(images)  # warm
        warm = model.decode(z, prompts, feats)
        zu, fu = plain(images)
        uncached = model.decode(zu, prompts, fu)
        rounded = model.decode(zu.half().float(), prompts, {i: f.half().float() for i, f in fu.items()})
    assert cached.cache.hits >= 2
    assert sorted(feats) == sorted(blocks)
    assert torch.equal(cold.logits, warm.logits)
    assert torch.equal(warm.logits, rounded.logits)  # the cache only rounds inputs to fp16
    torch.testing.assert_close(warm.logits, uncached.logits, rtol=0, atol=5e-2)


# ----------------------------------------------------------------------------- through the runner
@pytest.mark.parametrize("name", ["hqsam", "lst"])
def test_a_short_run_trains_only_the_method_and_completes(name, tmp_path):
    cfg = load_config(
        [
            "sweep=smoke",
            "backbone.name=tiny_sam",
            "launcher=inline",
            "train.epochs=1",
            f"methods=[{name}]",
            "datasets=[synth_polyp]",
            f"runs_dir={tmp_path / 'runs'}",
            f"data.cache_dir={tmp_path / 'cache'}",
            "data.synth.train_size=8",
            "data.synth.test_size=2",
            "data.synth.min_side=64",
            "data.synth.max_side=80",
        ]
    )
    run = run_configs(cfg)[0]
    parts = build_parts(run, torch.device("cpu"))
    assert parts.student_encoder.blocks == parts.peft.feature_blocks(parts.student)
    assert parts.student_encoder.stop == len(parts.student.encoder_steps())
    record = execute_run(run, cfg.runs_dir)
    assert record["status"] == "complete"
    assert record["trainable_params"] == trainable_parameters(parts.student)
    state = torch.load(RunDir(cfg.runs_dir, run).checkpoint, weights_only=True)["parts"]["student"]
    prefixes = ("decoder_extension.",) if name == "hqsam" else ("decoder_extension.", "mask_decoder.")
    assert state and all(k.startswith(prefixes) for k in state)


def test_a_distiller_sees_the_embedding_lst_adapted():
    """Features.embedding is z' = z + side output (what the decoder used), not the frozen z."""
    from bench.backbones import Prompts, build_backbone
    from bench.config import BackboneConfig
    from bench.contracts.peft import build_peft
    from bench.data.encoders import CachedEncoder
    from bench.train.trainer import TrainParts, model_features

    backbone = build_backbone(BackboneConfig(name="tiny_sam"))
    peft = build_peft("lst", {})
    peft.apply(backbone)
    ext = backbone.decoder_extension
    for p in ext.parameters():  # move the zero-initialised up-projection off zero
        p.data.add_(0.1)
    encoder = CachedEncoder(backbone, None, peft.feature_blocks(backbone))
    parts = TrainParts(student=backbone, student_encoder=encoder, peft=peft)
    images = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    prompts = Prompts(boxes=torch.tensor([[4.0, 4.0, 40.0, 40.0], [10.0, 8.0, 60.0, 50.0]]))
    with torch.no_grad():
        z, blocks = encoder(images)
        student, _ = model_features(parts, images, prompts)
        expected = ext.adapt_embedding(z, {b: blocks[b] for b in ext.blocks})
    assert not torch.allclose(student.embedding, z)
    torch.testing.assert_close(student.embedding, expected)
