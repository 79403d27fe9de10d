"""Method-specific checks for the PEFT methods beyond the shared contract (test_peft_contract.py):
LoRA's q/k/v slicing on both fused layouts, adapter placements against their formulas, VPT as
exact prompt-token concatenation, trainable sets and parameter counts on SAM ViT-B."""

from __future__ import annotations

import copy
from functools import partial

import pytest
import torch
from segment_anything.modeling.image_encoder import Block
from torch import nn

from bench.backbones import Backbone, build_backbone
from bench.config import BackboneConfig, ConfigError
from bench.contracts.peft import build_peft, trainable_parameters, unused_decoder_modules
from methods.peft.adapter import ParallelWrap
from methods.peft.lora import LoraQKV
from methods.peft.vpt import PromptedSamAttention, PromptedTinyViTAttention

CONFIGS = {
    "tiny_sam": BackboneConfig(name="tiny_sam"),
    "litemedsam128": BackboneConfig(name="litemedsam", img_size=128),
}
_CACHE: dict[str, Backbone] = {}


def backbone(key: str) -> Backbone:
    if key not in _CACHE:
        _CACHE[key] = build_backbone(CONFIGS[key])
    return copy.deepcopy(_CACHE[key])


def _apply(name: str, model: Backbone, **options) -> list[str]:
    return build_peft(name, options).apply(model)


def _block_input(model: Backbone, block: nn.Module, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    if hasattr(block, "input_resolution"):  # TinyViT: tokens (B, N, C)
        h, w = block.input_resolution
        return torch.randn(2, h * w, block.dim, generator=g)
    size = model.image_encoder.pos_embed.shape[1]  # SAM: (B, H, W, C)
    return torch.randn(2, size, size, model.image_encoder.pos_embed.shape[-1], generator=g)


# ----------------------------------------------------------------------------- LoRA
def _split_qkv(out: torch.Tensor, attn: nn.Module) -> list[torch.Tensor]:
    """q, k, v of a fused qkv output, split exactly as the official attention forwards do."""
    if hasattr(attn, "key_dim"):  # TinyViT Attention.forward
        b, n, _ = out.shape
        return list(out.view(b, n, attn.num_heads, -1).split([attn.key_dim, attn.key_dim, attn.d], dim=3))
    b, h, w, _ = out.shape  # segment_anything Attention.forward
    return list(out.reshape(b, h * w, 3, attn.num_heads, -1).unbind(2))


@pytest.mark.parametrize("key", list(CONFIGS))
@pytest.mark.parametrize("part", [0, 1, 2])
def test_lora_heads_updates_only_its_own_qkv_slice(key, part):
    model = backbone(key)
    blk = model.encoder_blocks()[1]
    x = _block_input(model, blk)
    if not hasattr(blk, "input_resolution"):
        x = blk.norm1(x)
    ref = blk.attn.qkv(x)
    _apply("lora", model)
    lora: LoraQKV = blk.attn.qkv
    assert isinstance(lora, LoraQKV) and lora.base_layer.out_features == ref.shape[-1]
    torch.manual_seed(1)
    with torch.no_grad():
        lora.lora_B["qkv"[part]].normal_()
        out = lora(x)
    deltas = [(o - r).abs().max().item() for o, r in zip(_split_qkv(out, blk.attn), _split_qkv(ref, blk.attn))]
    assert deltas[part] > 1e-3
    assert all(d == 0 for i, d in enumerate(deltas) if i != part), deltas


def _fused_from_heads(lora: LoraQKV) -> tuple[torch.Tensor, torch.Tensor]:
    """A (3r, D) and B (out, 3r) of a rank-3r fused update equal to the three per-part updates."""
    r = lora.lora_A["q"].shape[0]
    a = torch.cat([lora.lora_A[p] for p in "qkv"])
    groups, (sq, sk, sv) = lora.groups, lora.split
    b = torch.zeros(lora.base_layer.out_features, 3 * r)
    row = 0
    for g in range(groups):  # per group (SAM: 1, TinyViT: per head) the rows are [q | k | v]
        for j, (p, s) in enumerate(zip("qkv", (sq, sk, sv))):
            b[row : row + s, j * r : (j + 1) * r] = lora.lora_B[p][g * s : (g + 1) * s]
            row += s
    assert row == b.shape[0]
    return a, b


@pytest.mark.parametrize("key", list(CONFIGS))
def test_lora_heads_equals_fused_form_with_stacked_updates(key):
    heads, fused = backbone(key), backbone(key)
    _apply("lora", heads, r=2, alpha=4.0)
    _apply("lora", fused, r=6, alpha=12.0, form="fused")  # same scale alpha/r = 2
    torch.manual_seed(0)
    for hb, fb in zip(heads.encoder_blocks(), fused.encoder_blocks()):
        with torch.no_grad():
            for p in "qkv":
                hb.attn.qkv.lora_B[p].normal_()
            a, b = _fused_from_heads(hb.attn.qkv)
            fb.attn.qkv.lora_A["qkv"].copy_(a)
            fb.attn.qkv.lora_B["qkv"].copy_(b)
    images = torch.rand(1, 3, heads.img_size, heads.img_size)
    with torch.no_grad():
        zh, zf, z0 = heads.encode(images)[0], fused.encode(images)[0], backbone(key).encode(images)[0]
    torch.testing.assert_close(zh, zf, rtol=1e-4, atol=1e-5)
    assert (zh - z0).abs().max() > 1e-3  # the updates do act


def test_lora_fused_trains_one_pair_per_block():
    model = backbone("tiny_sam")
    targeted = _apply("lora", model, form="fused", start_block=1)
    assert targeted == [f"encoder_blocks.{i}.attn.qkv" for i in (1, 2, 3)] + ["mask_decoder"]
    enc = {n for n, p in model.named_parameters() if p.requires_grad and not n.startswith("mask_decoder.")}
    assert enc == {f"image_encoder.blocks.{i}.attn.qkv.lora_{m}.qkv" for i in (1, 2, 3) for m in "AB"}


# ----------------------------------------------------------------------------- adapters
def _perturbed(key: str, name: str, **options) -> Backbone:
    model = backbone(key)
    _apply(name, model, **options)
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if ".adapter." in n:
                p.copy_(0.2 * torch.randn(p.shape, generator=g))
    return model


def test_adapter_placements_match_their_formulas_on_a_global_sam_block():
    x = None
    outs = {}
    for placement in ("series", "parallel", "mixed"):
        model = _perturbed("tiny_sam", "adapter", placement=placement)
        blk = model.encoder_blocks()[3]  # adapted, global attention (window_size 0)
        assert blk.window_size == 0
        x = _block_input(model, blk) if x is None else x
        attn, mlp = blk.attn.base_layer, blk.mlp.base_layer
        a1, a2 = blk.attn.adapter, blk.mlp.adapter
        with torch.no_grad():
            outs[placement] = blk(x)
            xn = blk.norm1(x)
            if placement == "parallel":
                h = x + attn(xn) + 0.5 * (a1.up(a1.act(a1.down(xn))))
            else:
                y = attn(xn)
                h = x + y + a1.up(a1.act(a1.down(y)))
            hn = blk.norm2(h)
            if placement == "series":
                y = mlp(hn)
                expected = h + y + a2.up(a2.act(a2.down(y)))
            else:
                expected = h + mlp(hn) + 0.5 * a2.up(a2.act(a2.down(hn)))
        torch.testing.assert_close(outs[placement], expected, rtol=1e-5, atol=1e-5)
    for a, b in [("series", "parallel"), ("series", "mixed"), ("parallel", "mixed")]:
        assert (outs[a] - outs[b]).abs().max() > 1e-3, (a, b)


@pytest.mark.parametrize("name, options", [("adapter", {"placement": "parallel"}), ("adaptformer", {})])
def test_parallel_branch_reads_tinyvit_normalised_input(name, options):
    model = _perturbed("litemedsam128", name, **options)
    blk = model.encoder_blocks()[2]  # adapted by both (adapter starts at block 2)
    wrap: ParallelWrap = blk.mlp
    assert isinstance(wrap, ParallelWrap)
    x = _block_input(model, blk)
    scale = 0.5
    with torch.no_grad():
        expected = wrap.base_layer(x) + scale * wrap.adapter(wrap.base_layer.norm(x))
        torch.testing.assert_close(wrap(x), expected)


def test_adaptformer_wraps_only_the_mlp_with_the_scale_option():
    model = backbone("tiny_sam")
    targeted = _apply("adaptformer", model, scale=0.1)
    assert targeted == [f"encoder_blocks.{i}.mlp" for i in range(4)] + ["mask_decoder"]
    for blk in model.encoder_blocks():
        assert isinstance(blk.mlp, ParallelWrap) and blk.mlp.scale == 0.1
        assert not hasattr(blk.attn, "adapter") and not blk.mlp.adapter.skip
    enc = {n for n, p in model.named_parameters() if p.requires_grad and not n.startswith("mask_decoder.")}
    assert enc and all(".mlp.adapter." in n for n in enc)


# ----------------------------------------------------------------------------- BitFit
@pytest.mark.parametrize("key", list(CONFIGS))
def test_bitfit_trains_only_the_biases_of_the_blocks(key):
    model = backbone(key)
    _apply("bitfit", model)
    prefixes = [n + "." for n, m in model.named_modules() if any(m is b for b in model.encoder_blocks())]
    enc = {n for n, p in model.named_parameters() if p.requires_grad and not n.startswith("mask_decoder.")}
    expected = {
        n for n, _ in model.named_parameters() if any(n.startswith(p) for p in prefixes) and n.endswith(".bias")
    }
    assert enc == expected and enc
    assert not any("attention_biases" in n for n in enc)
    assert any("norm" in n for n in enc)  # LayerNorm biases included by default
    narrow = backbone(key)
    _apply("bitfit", narrow, include_norm_biases=False)
    names = {n for n, p in narrow.named_parameters() if p.requires_grad and not n.startswith("mask_decoder.")}
    assert names < enc and not any("norm" in n for n in names)


# ----------------------------------------------------------------------------- SSF
@pytest.mark.parametrize("key, expected", [("tiny_sam", 6), ("litemedsam128", 6)])
def test_ssf_wraps_every_linear_and_layernorm_of_each_block(key, expected):
    model = backbone(key)
    targeted = _apply("ssf", model)
    n_blocks = len(model.encoder_blocks())
    assert len(targeted) == expected * n_blocks + 1
    blk = model.encoder_blocks()[0]
    x = _block_input(model, blk)
    with torch.no_grad():
        ref = blk(x)
        blk.attn.qkv.scale.mul_(1.5)
        assert (blk(x) - ref).abs().max() > 1e-3


# ----------------------------------------------------------------------------- VPT
def test_vpt_on_a_global_sam_block_equals_prepending_prompt_tokens():
    """Without relative positions, a global block is permutation-equivariant over tokens, so a
    (B, 1, N + n, C) map of [image tokens, prompts] is exactly VPT-Deep's token concatenation."""
    torch.manual_seed(0)
    blk = Block(dim=32, num_heads=2, mlp_ratio=2.0, norm_layer=partial(nn.LayerNorm, eps=1e-6)).eval()
    prompted = copy.deepcopy(blk)
    prompted.attn = PromptedSamAttention(prompted.attn, prompted.norm1, num_tokens=3, init_range=0.5)
    x = torch.randn(2, 4, 4, 32)
    tokens = torch.cat([x.reshape(2, 1, 16, 32), prompted.attn.prompts.expand(2, 1, 3, 32)], dim=2)
    with torch.no_grad():
        expected = blk(tokens)[:, :, :16].reshape(2, 4, 4, 32)
        torch.testing.assert_close(prompted(x), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("key", list(CONFIGS))
def test_vpt_attention_with_no_prompt_reproduces_the_official_attention(key):
    model = backbone(key)
    for blk in model.encoder_blocks()[:2]:
        x = _block_input(model, blk)
        if hasattr(blk, "input_resolution"):
            x = x[:, : blk.attn.attention_bias_idxs.shape[0]]  # one window of tokens
            wrap = PromptedTinyViTAttention(blk.attn, num_tokens=0, init_range=0.0)
        else:
            ws = blk.window_size or x.shape[1]
            x = x[:, :ws, :ws]
            wrap = PromptedSamAttention(blk.attn, blk.norm1, num_tokens=0, init_range=0.0)
        with torch.no_grad():
            torch.testing.assert_close(wrap(x), blk.attn(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("key", list(CONFIGS))
def test_vpt_prompts_act_and_are_the_only_encoder_parameters(key):
    model, ref = backbone(key), backbone(key)
    targeted = _apply("vpt", model, num_tokens=4)
    assert targeted[-1] == "mask_decoder" and len(targeted) == len(model.encoder_blocks()) + 1
    enc = {n for n, p in model.named_parameters() if p.requires_grad and not n.startswith("mask_decoder.")}
    assert enc and all(n.endswith(".attn.prompts") for n in enc)
    images = torch.rand(1, 3, model.img_size, model.img_size)
    with torch.no_grad():
        assert (model.encode(images)[0] - ref.encode(images)[0]).abs().max() > 1e-4


# ----------------------------------------------------------------------------- validation
@pytest.mark.parametrize(
    "name, values, word",
    [
        ("lora", {"r": 0}, "r must"),
        ("lora", {"form": "split"}, "form"),
        ("lora", {"targets": "proj"}, "targets"),
        ("adapter", {"placement": "side"}, "placement"),
        ("adaptformer", {"scale": 0}, "scale"),
        ("ssf", {"init_std": -1}, "init_std"),
        ("vpt", {"num_tokens": 0}, "num_tokens"),
        ("bitfit", {"include_norm_biases": "yes"}, "include_norm_biases"),
    ],
)
def test_bad_options_raise_config_error(name, values, word):
    with pytest.raises(ConfigError, match=word):
        build_peft(name, values)


def test_block_range_past_the_end_raises():
    for name in ("lora", "ssf", "vpt", "adaptformer"):
        with pytest.raises(ConfigError, match="no encoder blocks"):
            _apply(name, backbone("tiny_sam"), start_block=9)


# ----------------------------------------------------------------------------- SAM ViT-B counts
D, BLOCKS, MLP = 768, 12, 3072
ADAPTER = (D * 192 + 192) + (192 * D + D)  # one ratio-0.25 bottleneck


@pytest.mark.parametrize(
    "name, options, expected",
    [
        ("bitfit", {}, BLOCKS * (3 * D + D + MLP + D + 2 * D)),  # qkv, proj, lin1, lin2, norm1, norm2
        ("bitfit", {"include_norm_biases": False}, BLOCKS * (3 * D + D + MLP + D)),
        ("lora", {}, BLOCKS * 3 * (D * 4 + 4 * D)),
        ("lora", {"form": "fused"}, BLOCKS * (D * 4 + 4 * 3 * D)),
        ("adaptformer", {}, BLOCKS * ADAPTER),
        ("adapter", {}, 10 * (2 * ADAPTER + 4 * D)),
        ("adapter", {"placement": "parallel"}, 10 * (2 * ADAPTER + 4 * D)),
        ("ssf", {}, BLOCKS * 2 * (3 * D + D + MLP + D + 2 * D)),
        ("vpt", {}, BLOCKS * 10 * D),
    ],
)
def test_trainable_parameter_counts_on_sam_vit_b(name, options, expected):
    model = build_backbone(BackboneConfig(name="sam_vit_b", random_init=True))
    decoder = sum(p.numel() for p in model.mask_decoder.parameters()) - sum(
        p.numel() for m in unused_decoder_modules(model) for p in m.parameters()
    )
    _apply(name, model, **options)
    assert trainable_parameters(model) - decoder == expected
    assert not any(p.requires_grad for p in model.prompt_encoder.parameters())
