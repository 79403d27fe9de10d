"""The PEFT contract, run over every registered PEFT method on tiny_sam, LiteMedSAM (128 px), and the small
SAM2 Hiera and MobileSAM-layout TinyViT test backbones (tiny_sam2, tiny_tinyvit).

Checks: output unchanged at init (methods declaring ``identity_at_init``), only the method's
parameters change after an optimizer step, the declared trainable sets of the built-in methods, and
option validation.
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from bench.backbones import Backbone, Prompts, build_backbone
from bench.config import BackboneConfig, ConfigError
from bench.contracts.peft import PEFT_METHODS, build_peft, trainable_parameters, unused_decoder_modules
from bench.registry import UnknownNameError
from bench.train.losses import structure_loss
from methods.peft.adapter import AdapterOptions

pytestmark = pytest.mark.numerics  # the whole file runs again under other kernels in CI

BACKBONE_CONFIGS = {
    "tiny_sam": BackboneConfig(name="tiny_sam"),
    "litemedsam128": BackboneConfig(name="litemedsam", img_size=128),
    "tiny_sam2": BackboneConfig(name="tiny_sam2"),
    "tiny_tinyvit": BackboneConfig(name="tiny_tinyvit"),
}
_PRETRAINED: dict[str, Backbone] = {}


def pretrained(key: str) -> Backbone:
    """A fresh copy of the pretrained backbone (built once per session)."""
    if key not in _PRETRAINED:
        _PRETRAINED[key] = build_backbone(BACKBONE_CONFIGS[key])
    return copy.deepcopy(_PRETRAINED[key])


def _inputs(model: Backbone) -> tuple[torch.Tensor, Prompts, torch.Tensor]:
    s = model.img_size
    batch = 2 if s <= 64 else 1  # keep the 128-px LiteMedSAM cases cheap
    g = torch.Generator().manual_seed(0)
    images = torch.rand(batch, 3, s, s, generator=g)
    if model.normalization == "sam":
        images = (images - 0.5) / 0.25
    boxes = torch.tensor([[0.2, 0.25, 0.7, 0.8], [0.1, 0.3, 0.6, 0.9]])[:batch] * s
    target = torch.zeros(batch, 1, s, s)
    for i, (x0, y0, x1, y1) in enumerate(boxes.round().long().tolist()):
        target[i, 0, y0 + 2 : y1 - 2, x0 + 2 : x1 - 2] = 1
    return images, Prompts(boxes=boxes), target


_REFERENCE: dict[str, object] = {}


def reference_output(key: str):
    """The pretrained model's output on the fixed inputs (computed once per session)."""
    if key not in _REFERENCE:
        model = pretrained(key)
        with torch.no_grad():
            _REFERENCE[key] = _forward(model, *_inputs(model)[:2])
    return _REFERENCE[key]


def _forward(model: Backbone, images: torch.Tensor, prompts: Prompts):
    z, feats = model.encode(images)
    return model.decode(z, prompts, feats)  # SAM2's decoder reads the high-resolution maps in feats


def _apply(name: str, model: Backbone, **options) -> list[str]:
    return build_peft(name, options).apply(model)


ALL = PEFT_METHODS.names()


def test_registry_has_the_builtin_methods():
    assert {"adapter", "decoder_only", "zero_shot"} <= set(ALL)


# ----------------------------------------------------------------------------- identity at init
@pytest.mark.parametrize("backbone", list(BACKBONE_CONFIGS))
@pytest.mark.parametrize("name", ALL)
def test_output_unchanged_at_init(name, backbone):
    cls = PEFT_METHODS.get(name)
    if not cls.identity_at_init:
        pytest.skip(f"{name} declares identity_at_init = False")
    model = pretrained(backbone)
    images, prompts, _ = _inputs(model)
    ref = reference_output(backbone)
    _apply(name, model)
    with torch.no_grad():
        out = _forward(model, images, prompts)
    torch.testing.assert_close(out.logits, ref.logits, rtol=0, atol=1e-5)
    torch.testing.assert_close(out.iou, ref.iou, rtol=0, atol=1e-5)
    torch.testing.assert_close(out.mask_token, ref.mask_token, rtol=0, atol=1e-5)


def test_adapter_without_zero_init_is_not_identity():
    """Guards the identity test above: a non-identity adapter is detected at this tolerance."""
    base, model = pretrained("tiny_sam"), pretrained("tiny_sam")
    images, prompts, _ = _inputs(model)
    torch.manual_seed(0)
    _apply("adapter", model, zero_init=False)
    with torch.no_grad():
        ref, out = _forward(base, images, prompts), _forward(model, images, prompts)
    assert (out.logits - ref.logits).abs().max() > 1e-3


# ----------------------------------------------------------------------------- only the method trains
def _one_step(model: Backbone, lr: float = 1e-3) -> dict[str, torch.Tensor]:
    """One Adam step on the structure loss; returns the gradients of the trainable parameters."""
    params = [p for p in model.parameters() if p.requires_grad]
    images, prompts, target = _inputs(model)
    out = _forward(model, images, prompts)
    loss = structure_loss(model.upscale(out.logits), target)
    assert torch.isfinite(loss)
    opt = torch.optim.Adam(params, lr=lr)
    opt.zero_grad()
    loss.backward()
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.requires_grad and p.grad is not None}
    opt.step()
    return grads


@pytest.mark.parametrize("backbone", list(BACKBONE_CONFIGS))
@pytest.mark.parametrize("name", ALL)
def test_only_the_methods_parameters_change(name, backbone):
    torch.manual_seed(0)  # the methods' random init: independent of the tests run before
    model = pretrained(backbone)
    targeted = _apply(name, model)
    assert isinstance(targeted, list)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    if not trainable:  # nothing to train (zero_shot): the model cannot even produce a gradient
        images, prompts, target = _inputs(model)
        loss = structure_loss(model.upscale(_forward(model, images, prompts).logits), target)
        assert not loss.requires_grad
        return
    before = {k: v.detach().clone() for k, v in model.state_dict().items()}
    grads = _one_step(model)
    after = model.state_dict()
    assert set(after) == set(before)
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    # every buffer and every frozen parameter is bit-identical
    assert changed <= trainable, sorted(changed - trainable)[:5]
    # Decided as Adam decides: its first step is exactly 0 where the gradient is exactly 0 (m = v = 0), and
    # about lr·sign(g) wherever |g| >> eps = 1e-8, whatever the size of g. A gradient that is 0 in exact
    # arithmetic may come out of the float computation as rounding noise (e.g. a key bias under softmax's
    # shift invariance) and then moves its parameter by ~lr: so nothing may move without a non-zero gradient,
    # and everything with a gradient well above eps (here > 1e-6, a step of ≥ 0.99·lr = 1e-3) must move.
    some_grad = {n for n, g in grads.items() if g.abs().max() > 0}
    clear_grad = {n for n, g in grads.items() if g.abs().max() > 1e-6}
    assert clear_grad, "no trainable parameter received a gradient"
    assert changed <= some_grad, sorted(changed - some_grad)[:5]
    assert clear_grad <= changed, sorted(clear_grad - changed)[:5]


# ----------------------------------------------------------------------------- per-method trainable sets
def _names_under(model: nn.Module, modules: list[nn.Module]) -> set[str]:
    ids = {id(m) for m in modules}
    prefixes = [n for n, m in model.named_modules() if id(m) in ids]
    return {n for n, _ in model.named_parameters() if any(n.startswith(p + ".") for p in prefixes)}


def _trainable(model: nn.Module) -> set[str]:
    return {n for n, p in model.named_parameters() if p.requires_grad}


@pytest.mark.parametrize("backbone", list(BACKBONE_CONFIGS))
def test_zero_shot_has_no_trainable_parameter(backbone):
    model = pretrained(backbone)
    targeted = _apply("zero_shot", model)
    assert targeted == []
    assert trainable_parameters(model) == 0
    assert _trainable(model) == set()


@pytest.mark.parametrize("backbone", list(BACKBONE_CONFIGS))
def test_decoder_only_trains_exactly_the_mask_decoder(backbone):
    model = pretrained(backbone)
    targeted = _apply("decoder_only", model)
    assert targeted == ["mask_decoder"]
    unused = {id(p) for m in unused_decoder_modules(model) for p in m.parameters()}
    used = [(n, p) for n, p in model.mask_decoder.named_parameters() if id(p) not in unused]
    assert unused and len(used) < len(list(model.mask_decoder.parameters()))
    assert _trainable(model) == {f"mask_decoder.{n}" for n, _ in used}
    assert trainable_parameters(model) == sum(p.numel() for _, p in used)


@pytest.mark.parametrize(
    "backbone, start_block", [("tiny_sam", 2), ("tiny_sam", 1), ("tiny_sam", 3), ("litemedsam128", 2)]
)
def test_adapter_trains_adapters_norms_of_adapted_blocks_and_decoder(backbone, start_block):
    model = pretrained(backbone)
    n_params = {n for n, _ in model.named_parameters()}
    blocks = model.encoder_blocks()
    targeted = _apply("adapter", model, start_block=start_block)
    adapted = blocks[start_block:]
    assert targeted == [f"encoder_blocks.{i}" for i in range(start_block, len(blocks))] + ["mask_decoder"]
    adapters = [m for b in adapted for m in (b.attn.adapter, b.mlp.adapter)]
    norms = [m for b in adapted for m in b.modules() if isinstance(m, nn.LayerNorm)]
    assert norms, "adapted blocks have LayerNorms"
    decoder = _names_under(model, [model.mask_decoder]) - _names_under(model, unused_decoder_modules(model))
    expected = _names_under(model, adapters) | _names_under(model, norms) | decoder
    trainable = _trainable(model)
    assert trainable == expected
    # blocks before start_block are untouched, the prompt encoder and neck stay frozen
    assert all(not hasattr(b.attn, "adapter") for b in blocks[:start_block])
    assert not any(n.startswith("prompt_encoder.") for n in trainable)
    assert not _names_under(model, blocks[:start_block]) & trainable
    # wrapping keeps the original weights (renamed under base_layer), adds only adapter weights
    new = {n for n, _ in model.named_parameters()}
    renamed = {n.replace(".base_layer", "") for n in new if ".adapter." not in n}
    assert renamed == n_params
    # the adapter is in the forward path: its up-projection gets a gradient
    grads = _one_step(model)
    for blk in adapted:
        assert blk.attn.adapter.up.weight.grad is not None
        assert blk.attn.adapter.up.weight.grad.abs().max() > 0
    assert any(".adapter.up." in n for n in grads)


def test_adapter_ratio_sets_the_bottleneck_width():
    model = pretrained("tiny_sam")
    _apply("adapter", model, ratio=0.5)
    blk = model.encoder_blocks()[2]
    assert blk.attn.adapter.down.out_features == 16 and blk.mlp.adapter.up.in_features == 16


def test_adapter_without_norm_training_trains_only_adapters_and_decoder():
    model = pretrained("tiny_sam")
    _apply("adapter", model, train_norms=False)
    trainable = _trainable(model)
    assert not any(
        isinstance(m, nn.LayerNorm) and any(p.requires_grad for p in m.parameters())
        for m in model.image_encoder.modules()
    )
    assert (
        {n for n in trainable if not n.startswith("mask_decoder.")}
        == {n for n in trainable if ".adapter." in n}
        != set()
    )


def test_adapter_end_block_limits_the_range():
    model = pretrained("tiny_sam")
    targeted = _apply("adapter", model, start_block=1, end_block=3)
    assert targeted == ["encoder_blocks.1", "encoder_blocks.2", "mask_decoder"]
    assert not hasattr(model.encoder_blocks()[3].attn, "adapter")


# ----------------------------------------------------------------------------- option validation
@pytest.mark.parametrize(
    "values, must_contain",
    [
        ({"ratio": 0}, ["ratio"]),
        ({"ratio": -0.5}, ["ratio"]),
        ({"start_block": -1}, ["start_block"]),
        ({"rank": 4}, ["'rank'", "ratio", "start_block"]),  # unknown option lists the valid ones
    ],
)
def test_bad_adapter_options_raise_config_error(values, must_contain):
    with pytest.raises(ConfigError) as info:
        build_peft("adapter", values)
    for part in must_contain:
        assert part in str(info.value)


def test_adapter_options_validate_on_construction():
    with pytest.raises(ValueError, match="ratio"):
        AdapterOptions(ratio=0)
    assert AdapterOptions(ratio=4).ratio == 4


def test_adapter_start_block_past_the_last_block_raises():
    model = pretrained("tiny_sam")
    with pytest.raises(ConfigError, match="no encoder blocks"):
        _apply("adapter", model, start_block=4)


@pytest.mark.parametrize("name", ["zero_shot", "decoder_only"])
def test_methods_without_options_reject_any_option(name):
    with pytest.raises(ConfigError, match="ratio"):
        build_peft(name, {"ratio": 0.5})


def test_unknown_peft_method_lists_valid_choices():
    with pytest.raises(UnknownNameError) as info:
        build_peft("no_such_peft", {})
    assert "adapter" in str(info.value) and "'no_such_peft'" in str(info.value)
