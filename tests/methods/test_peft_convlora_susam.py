"""Conv-LoRA, SU-SAM and SAM-Adapter specifics (the generic contract is in test_peft_contract.py)."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from torch import nn

from bench.backbones import Backbone, Prompts, build_backbone
from bench.config import BackboneConfig, ConfigError
from bench.contracts.peft import build_peft, trainable_parameters, unused_decoder_modules
from methods.peft.convlora import ConvLoRALinear, MoEConv, cv_squared

_CACHE: dict[str, Backbone] = {}


def backbone(name: str = "tiny_sam", **kw) -> Backbone:
    key = f"{name}{kw}"
    if key not in _CACHE:
        _CACHE[key] = build_backbone(BackboneConfig(name=name, **kw))
    return copy.deepcopy(_CACHE[key])


def _inputs(model: Backbone):
    g = torch.Generator().manual_seed(0)
    s = model.img_size
    images = (torch.rand(2, 3, s, s, generator=g) - 0.5) / 0.25
    boxes = torch.tensor([[0.2, 0.25, 0.7, 0.8], [0.1, 0.3, 0.6, 0.9]]) * s
    return images, Prompts(boxes=boxes)


def _logits(model: Backbone) -> torch.Tensor:
    images, prompts = _inputs(model)
    z, _ = model.encode(images)
    return model.decode(z, prompts).logits


def _layers(model: Backbone) -> list[ConvLoRALinear]:
    return [m for m in model.modules() if isinstance(m, ConvLoRALinear)]


# ----------------------------------------------------------------------------- Conv-LoRA
def test_convlora_is_identity_at_init_and_b_matters():
    ref_model, model = backbone(), backbone()
    method = build_peft("convlora", {})
    targeted = method.apply(model)
    assert targeted == [f"encoder_blocks.{i}.attn.qkv" for i in range(4)] + ["mask_decoder"]
    layers = _layers(model)
    assert len(layers) == 4
    for layer in layers:
        assert torch.count_nonzero(layer.moe.w_gate) == 0 and torch.count_nonzero(layer.lora_B) == 0
        assert all(torch.count_nonzero(e.conv.bias) == 0 for e in layer.moe.experts)
    with torch.no_grad():
        ref, out = _logits(ref_model), _logits(model)
        torch.testing.assert_close(out, ref, rtol=0, atol=1e-6)
        torch.manual_seed(1)
        for layer in layers:
            layer.lora_B.normal_(0, 0.5)
        assert (_logits(model) - ref).abs().max() > 1e-3


def test_convlora_loss_terms_after_training_forward_then_reset():
    model = backbone()
    method = build_peft("convlora", {"moe_lambda": 2.0})
    method.apply(model)
    assert method.loss_terms() == {}
    torch.manual_seed(0)
    model.train()
    _logits(model)
    terms = method.loss_terms()
    assert set(terms) == {"moe"}
    assert terms["moe"].dim() == 0 and torch.isfinite(terms["moe"])
    assert method.loss_terms() == {}  # reset after being read
    model.eval()
    with torch.no_grad():
        _logits(model)
    assert method.loss_terms() == {}  # evaluation forwards add nothing


def test_convlora_moe_term_is_lambda_times_the_layer_sum():
    model = backbone()
    method = build_peft("convlora", {"moe_lambda": 3.0})
    method.apply(model)
    torch.manual_seed(0)
    _logits(model)  # grad enabled: the trainer's (eval-mode) training forward
    per_layer = torch.stack([layer.last_loss for layer in _layers(model)]).sum()
    torch.testing.assert_close(method.loss_terms()["moe"], 3.0 * per_layer)


def test_convlora_top1_gate_picks_exactly_one_expert():
    torch.manual_seed(0)
    moe = MoEConv(4, 8)
    with torch.no_grad():
        moe.w_gate.normal_()
        moe.w_noise.normal_()
    x = torch.randn(6, 4, 5, 5)
    for noisy in (False, True):
        _, _, gates = moe(x, noisy)
        assert gates.shape == (6, 8)
        assert ((gates > 0).sum(1) == 1).all()
        # softmax over the single top-1 logit: exactly 1 (moe_conv.py), not a renormalised probability
        assert (gates.sum(1) == 1).all()


def test_convlora_output_is_the_selected_expert():
    torch.manual_seed(0)
    moe = MoEConv(4, 3)
    with torch.no_grad():
        moe.w_gate.normal_()
    x = torch.randn(5, 4, 6, 6)
    out, _, gates = moe(x, noisy=False)
    for b, e in enumerate(gates.argmax(1).tolist()):
        torch.testing.assert_close(out[b : b + 1], moe.experts[e](x[b : b + 1]))


def test_convlora_eval_mode_is_deterministic():
    model = backbone()
    method = build_peft("convlora", {})
    method.apply(model)
    torch.manual_seed(2)
    for layer in _layers(model):
        with torch.no_grad():
            layer.lora_B.normal_(0, 0.5)
            layer.moe.w_gate.normal_()
            layer.moe.w_noise.normal_()
    model.eval()
    with torch.no_grad():
        a = _logits(model)
        torch.manual_seed(123)
        b = _logits(model)
    torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_convlora_load_balancing_loss_matches_hand_computed_cv2():
    moe = MoEConv(2, 3)
    with torch.no_grad():
        # GAP of sample b is (c_b, 0); logits = pooled @ w_gate → expert argmax(c_b * [1, 0, -1])
        moe.w_gate.copy_(torch.tensor([[1.0, 0.0, -1.0], [0.0, 0.0, 0.0]]))
    x = torch.zeros(4, 2, 3, 3)
    for b, c in enumerate([1.0, 2.0, 3.0, -1.0]):
        x[b, 0] = c
    _, loss, gates = moe(x, noisy=False)
    assert gates.argmax(1).tolist() == [0, 0, 0, 2]
    importance = torch.tensor([3.0, 0.0, 1.0])
    load = torch.tensor([3.0, 0.0, 1.0])

    def cv2(v):  # unbiased variance / mean²
        mean = v.mean()
        return ((v - mean) ** 2).sum() / (len(v) - 1) / (mean**2 + 1e-10)

    expected = 1e-2 * (cv2(importance) + cv2(load))
    torch.testing.assert_close(loss, expected)
    # by hand: load = (3, 0, 1): mean 4/3, var = (25/9 + 16/9 + 1/9) / 2 = 7/3 → cv² = 21/16
    torch.testing.assert_close(cv_squared(load), torch.tensor(21 / 16))


def _gate_reference(x: np.ndarray, w_gate: np.ndarray, w_noise: np.ndarray, eps: np.ndarray):
    """moe_conv.py's noisy top-1 gating restated in float64 numpy: gates, importance, load, loss."""
    pooled = x.mean(axis=(2, 3))
    clean = pooled @ w_gate
    std = np.log1p(np.exp(pooled @ w_noise)) + 1e-2
    noisy = clean + eps * std
    order = np.argsort(-noisy, axis=1)
    rows = np.arange(len(x))
    first, second = noisy[rows, order[:, 0]], noisy[rows, order[:, 1]]
    gates = np.zeros_like(noisy)
    gates[rows, order[:, 0]] = 1.0  # softmax over one logit
    phi = np.vectorize(lambda v: 0.5 * (1 + math.erf(v / math.sqrt(2))))
    is_in = noisy > second[:, None]  # already in the top 1 → must stay above the runner-up
    prob = np.where(is_in, phi((clean - second[:, None]) / std), phi((clean - first[:, None]) / std))
    importance, load = gates.sum(0), prob.sum(0)

    def cv2(v):
        return v.var(ddof=1) / (v.mean() ** 2 + 1e-10)

    return gates, importance, load, 1e-2 * (cv2(importance) + cv2(load))


def test_convlora_noisy_gate_matches_numpy_restatement_of_moe_conv():
    g = torch.Generator().manual_seed(3)
    n, r, m = 64, 4, 8
    x = torch.randn(n, r, 5, 5, generator=g)
    eps = torch.randn(n, m, generator=g)
    moe = MoEConv(r, m)
    with torch.no_grad():
        moe.w_gate.copy_(torch.randn(r, m, generator=g))
        moe.w_noise.copy_(torch.randn(r, m, generator=g) * 0.5)
    gates, load = moe.gating(x, noisy=True, noise=eps)
    _, loss, _ = moe(x, noisy=True, noise=eps)
    ref_gates, ref_importance, ref_load, ref_loss = _gate_reference(
        *(t.detach().double().numpy() for t in (x, moe.w_gate, moe.w_noise, eps))
    )
    np.testing.assert_array_equal(gates.detach().numpy(), ref_gates)  # same expert, gate value exactly 1
    np.testing.assert_array_equal(gates.sum(0).detach().numpy(), ref_importance)
    # float32 logits/CDF against float64: relative error ~1e-6 per sample, summed over 64 samples
    np.testing.assert_allclose(load.detach().numpy(), ref_load, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(loss.item(), ref_loss, rtol=1e-5)


def test_convlora_gate_trains_through_the_load_estimator_only():
    g = torch.Generator().manual_seed(4)
    moe = MoEConv(4, 8)
    with torch.no_grad():
        moe.w_gate.copy_(torch.randn(4, 8, generator=g))
        moe.w_noise.copy_(torch.randn(4, 8, generator=g))
    x = torch.randn(16, 4, 5, 5, generator=g)
    eps = torch.randn(16, 8, generator=g)
    gates, load = moe.gating(x, noisy=True, noise=eps)
    (from_importance,) = torch.autograd.grad(cv_squared(gates.sum(0)), moe.w_gate, allow_unused=True, retain_graph=True)
    assert from_importance is None or from_importance.abs().max() == 0  # gate value 1: no gradient
    grad = torch.autograd.grad(cv_squared(load), moe.w_gate)[0]
    assert grad.abs().max() > 0


def test_convlora_noise_uses_the_global_rng():
    model = backbone()
    method = build_peft("convlora", {})
    method.apply(model)
    outs = []
    for _ in range(2):
        torch.manual_seed(5)
        _logits(model)
        outs.append(method.loss_terms()["moe"].detach())
    torch.testing.assert_close(outs[0], outs[1], rtol=0, atol=0)


def test_convlora_reshapes_tinyvit_token_windows():
    model = backbone("litemedsam", img_size=128)
    method = build_peft("convlora", {"num_experts": 2})
    method.apply(model)
    layer = _layers(model)[0]
    x = torch.randn(3, 49, layer.base_layer.in_features)
    with torch.no_grad():
        layer.lora_B.normal_()
        assert layer(x).shape == (3, 49, layer.base_layer.out_features)
        with pytest.raises(RuntimeError, match="square"):
            layer(torch.randn(3, 50, layer.base_layer.in_features))


def test_convlora_unsupported_block_raises():
    model = backbone()
    model.image_encoder.blocks[0].attn.qkv = nn.Identity()
    with pytest.raises(ConfigError, match="tiny_sam"):
        build_peft("convlora", {}).apply(model)


def test_convlora_bad_options():
    for bad in ({"r": 0}, {"num_experts": 0}, {"alpha": 0}, {"moe_lambda": -1}):
        with pytest.raises(ConfigError):
            build_peft("convlora", bad)


# ----------------------------------------------------------------------------- SU-SAM
def test_susam_trainable_counts_on_sam_vit_b():
    base = backbone("sam_vit_b", random_init=True)
    decoder = sum(p.numel() for p in base.mask_decoder.parameters()) - sum(
        p.numel() for m in unused_decoder_modules(base) for p in m.parameters()
    )
    d, depth = 768, 12
    hidden = int(0.25 * d)
    adapter = d * hidden + hidden + hidden * d + d  # Linear(D, D/4) + Linear(D/4, D)
    expected = {
        "series": depth * 2 * adapter,
        "parallel": depth * 2 * adapter,
        "mixed": depth * 2 * adapter,
        "lora": depth * 2 * (d * 4 + 4 * d),  # A_q, B_q, A_v, B_v, no bias, r = 4
    }
    for variant, n in expected.items():
        model = copy.deepcopy(base)
        targeted = build_peft("susam", {"variant": variant}).apply(model)
        assert trainable_parameters(model) == n + decoder, variant
        assert targeted[-1] == "mask_decoder"
        assert not any(p.requires_grad for p in model.prompt_encoder.parameters())
    # Conv-LoRA and SAM-Adapter on the same backbone, by hand
    r, m = 4, 8
    convlora = depth * (r * d + 3 * d * r + 2 * r * m + m * (r * r * 9 + r))
    model = copy.deepcopy(base)
    build_peft("convlora", {}).apply(model)
    assert trainable_parameters(model) == convlora + decoder
    h = d // 32
    # embedding_generator D→c, hfc_embed Conv(3→c, 16, 16), per-block Linear(c, c), shared_mlp c→D
    sam_adapter = (d * h + h) + (3 * h * 16 * 16 + h) + depth * (h * h + h) + (h * d + d)
    model = copy.deepcopy(base)
    build_peft("sam_adapter", {}).apply(model)
    assert trainable_parameters(model) == sam_adapter + decoder


def test_susam_variants_differ_after_the_same_perturbation():
    outs = {}
    ref = _logits(backbone()).detach()
    for variant in ("series", "parallel", "mixed", "lora"):
        model = backbone()
        build_peft("susam", {"variant": variant}).apply(model)
        with torch.no_grad():
            out0 = _logits(model)
            torch.testing.assert_close(out0, ref, rtol=0, atol=1e-6)  # identity at init
            torch.manual_seed(0)
            for name, p in model.image_encoder.named_parameters():
                if p.requires_grad:
                    p.add_(0.3 * torch.randn_like(p))
            outs[variant] = _logits(model)
    names = list(outs)
    for i, a in enumerate(names):
        assert (outs[a] - ref).abs().max() > 1e-3, a
        for b in names[i + 1 :]:
            assert (outs[a] - outs[b]).abs().max() > 1e-4, (a, b)


def test_susam_literal_formulas_are_not_identity():
    ref = _logits(backbone()).detach()
    for variant in ("series", "parallel"):
        model = backbone()
        build_peft("susam", {"variant": variant, "literal": True}).apply(model)
        with torch.no_grad():
            assert (_logits(model) - ref).abs().max() > 1e-4, variant


def test_susam_lora_on_tinyvit_touches_only_q_and_v_columns():
    model = backbone("litemedsam", img_size=128)
    build_peft("susam", {"variant": "lora"}).apply(model)
    qkv = model.encoder_blocks()[0].attn.qkv
    with torch.no_grad():
        qkv.b_q.weight.normal_()
        qkv.b_v.weight.normal_()
        x = torch.randn(2, 49, qkv.base_layer.in_features)
        delta = qkv(x) - qkv.base_layer(x)
    attn = model.encoder_blocks()[0].attn
    per = 2 * attn.key_dim + attn.d
    cols = torch.arange(delta.shape[-1]) % per
    k_cols = (cols >= attn.key_dim) & (cols < 2 * attn.key_dim)
    assert delta[..., k_cols].abs().max() == 0
    assert delta[..., ~k_cols].abs().min() > 0


def test_susam_bad_variant():
    with pytest.raises(ConfigError, match="variant"):
        build_peft("susam", {"variant": "bogus"})


# ----------------------------------------------------------------------------- SAM-Adapter
def _high_pass_numpy(x: np.ndarray, rate: float) -> np.ndarray:
    """SAM-Adapter's PromptGenerator.fft in float64 numpy (fft2/ifft2 with norm="forward")."""
    h, w = x.shape[-2:]
    half = int((h * w * rate) ** 0.5 // 2)
    mask = np.zeros((h, w))
    mask[h // 2 - half : h // 2 + half, w // 2 - half : w // 2 + half] = 1
    spec = np.fft.fftshift(np.fft.fft2(x, norm="forward"), axes=(-2, -1)) * (1 - mask)
    return np.abs(np.fft.ifft2(np.fft.ifftshift(spec, axes=(-2, -1)), norm="forward").real)


def test_sam_adapter_high_frequency_component_matches_numpy():
    from methods.peft.sam_adapter import high_frequency

    x = torch.randn(2, 3, 16, 12, generator=torch.Generator().manual_seed(0))
    ref = _high_pass_numpy(x.double().numpy(), 0.25)
    # float32 FFT of O(1) values: absolute error ~1e-6
    np.testing.assert_allclose(high_frequency(x, 0.25).numpy(), ref, rtol=0, atol=1e-5)
    flat = torch.full((1, 3, 16, 16), 0.7)  # a constant image has no high frequencies
    assert high_frequency(flat, 0.25).abs().max() < 1e-6


def test_sam_adapter_prompts_come_from_one_shared_task_feature():
    from methods.peft.sam_adapter import PromptedBlock, TaskFeature

    model = backbone()
    torch.manual_seed(0)
    build_peft("sam_adapter", {"zero_init": False}).apply(model)
    enc = model.image_encoder
    task: TaskFeature = enc.patch_embed
    blocks = [b for b in enc.blocks if isinstance(b, PromptedBlock)]
    assert len(blocks) == 4 and all(b.shared_mlp is blocks[0].shared_mlp for b in blocks)
    images, _ = _inputs(model)
    seen = {}
    hooks = [
        b.base_layer.register_forward_pre_hook(lambda m, a, i=i: seen.__setitem__(i, a[0]))
        for i, b in enumerate(blocks)
    ]
    with torch.no_grad():
        model.encode(images)
        # by hand in float64: F = embedding_generator(patch_embed(x)) + hfc_embed(HFC(x))
        t64 = copy.deepcopy(task).double()
        x = images.double()
        tokens = t64.base_layer(x)
        hfc = t64.hfc_embed(torch.from_numpy(_high_pass_numpy(x.numpy(), 0.25)))
        feature = t64.embedding_generator(tokens) + hfc.permute(0, 2, 3, 1)
        state = tokens + enc.pos_embed.double()
        for i, b in enumerate(blocks):
            b64 = copy.deepcopy(b).double()
            prompt = copy.deepcopy(b.shared_mlp).double()(b64.lightweight_mlp(feature))
            torch.testing.assert_close(seen[i].double(), state + prompt, rtol=0, atol=1e-4)
            state = b64.base_layer(state + prompt)
    for hk in hooks:
        hk.remove()
    assert task.feature is None  # released after the last block


def test_sam_adapter_high_frequency_branch_reaches_the_output():
    model = backbone()
    torch.manual_seed(0)
    method = build_peft("sam_adapter", {"zero_init": False})
    method.apply(model)
    images, prompts = _inputs(model)
    with torch.no_grad():
        ref = _logits(model)
        model.image_encoder.patch_embed.hfc_embed.weight.zero_()
        assert (_logits(model) - ref).abs().max() > 1e-5
