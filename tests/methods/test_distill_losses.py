"""Distillation baselines: each loss against an independent numpy float64 computation on fixed tensors,
its zero / minimum when the student's features equal the teacher's, width and stage mismatches,
float32 under bf16 autocast, the ``rm`` alias and the composite of chained distillers.

Golden values for PKT and PKD come from reference_implementations.md §4 (numpy restatements of
RepDistiller's PKT and mmrazor's PKDLoss).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from bench.config import ConfigError
from bench.contracts import methods
from bench.contracts.composite import CompositeDistiller, composite_options
from bench.contracts.distill import DISTILLERS, DistillContext, Features
from bench.contracts.options import build_options
from methods.distill._common import pair_by_depth, resize_map
from methods.distill.ibd import ibd_feature_loss
from methods.distill.logit import logit_kd_loss
from methods.distill.mobilesam import embedding_mse
from methods.distill.pkd import pkd_loss
from methods.distill.pkt import pkt_loss
from methods.distill.reviewkd import hcl_loss
from methods.distill.semckd import semckd_loss
from methods.distill.tinysam import hardness, mask_iou, weighted_mask_kl
from methods.distill.vid import VIDRegressor, vid_nll
from methods.infosam import InfoSAM

# float(term) on terms that carry a graph is intended here
pytestmark = pytest.mark.filterwarnings("ignore:Converting a tensor with requires_grad=True to a scalar")


def declared(prop: str, value: bool = True, default: bool = False) -> list[str]:
    """The registered distillers whose ``prop`` (register metadata) is ``value``."""
    return [n for n in DISTILLERS.names() if DISTILLERS.meta(n).get(prop, default) == value]


def t64(a: np.ndarray) -> torch.Tensor:
    return torch.tensor(a, dtype=torch.float64)


def fixed(shape: tuple[int, ...], fn=np.sin, scale: float = 1.0) -> np.ndarray:
    return fn(scale * np.arange(int(np.prod(shape)), dtype=np.float64)).reshape(shape)


# ---------------------------------------------------------------- numpy references (float64)


def np_sigmoid(x):
    return 1 / (1 + np.exp(-x))


def np_binary_kl(t, s):
    p, q = np_sigmoid(t), np_sigmoid(s)
    return p * np.log(p / q) + (1 - p) * np.log((1 - p) / (1 - q))


def np_pkd(s, t):
    def norm(x):
        c = x.shape[1]
        flat = x.transpose(1, 0, 2, 3).reshape(c, -1)
        out = (flat - flat.mean(1, keepdims=True)) / (flat.std(1, ddof=1, keepdims=True) + 1e-6)
        return out

    return ((norm(s) - norm(t)) ** 2).mean() / 2


def np_pkt(s, t, eps=1e-7):
    def cond(x):
        x = x / (np.sqrt((x**2).sum(1, keepdims=True)) + eps)
        sim = (x @ x.T + 1) / 2
        return sim / sim.sum(1, keepdims=True)

    ps, pt = cond(s), cond(t)
    return (pt * np.log((pt + eps) / (ps + eps))).mean()


def np_avgpool(x, size):
    b, c, h, w = x.shape
    return x.reshape(b, c, size, h // size, size, w // size).mean(axis=(3, 5))


# ---------------------------------------------------------------- logit


@pytest.mark.parametrize("temperature", [1.0, 4.0])
def test_logit_kd_matches_numpy_and_is_zero_for_equal_logits(temperature):
    s, t = 3 * fixed((2, 1, 3, 4)), 2 * fixed((2, 1, 3, 4), np.cos, 0.7)
    ref = temperature**2 * np_binary_kl(t / temperature, s / temperature).mean()
    assert float(logit_kd_loss(t64(s), t64(t), temperature)) == pytest.approx(ref, rel=1e-10)
    assert float(logit_kd_loss(t64(t), t64(t), temperature)) == pytest.approx(0.0, abs=1e-12)


# ---------------------------------------------------------------- PKD


def test_pkd_golden_value_numpy_and_pearson_invariance():
    a = np.arange(32, dtype=np.float64)
    ps, pt = np.cos(a).reshape(2, 2, 2, 4), np.sin(a).reshape(2, 2, 2, 4)
    assert float(pkd_loss(t64(ps), t64(pt))) == pytest.approx(0.9451911143, abs=1e-9)
    s, t = fixed((3, 4, 2, 5)), fixed((3, 4, 2, 5), np.cos, 1.3)
    assert float(pkd_loss(t64(s), t64(t))) == pytest.approx(np_pkd(s, t), rel=1e-10)
    # Pearson: a positive per-channel affine map of the teacher leaves the loss at (nearly) zero
    scale, shift = np.array([0.5, 2.0, 3.0, 7.0])[None, :, None, None], np.arange(4.0)[None, :, None, None]
    assert float(pkd_loss(t64(s), t64(scale * s + shift))) == pytest.approx(0.0, abs=1e-10)


# ---------------------------------------------------------------- PKT


def test_pkt_golden_value_numpy_and_zero_for_equal_features():
    a = np.arange(12, dtype=np.float64)
    fs, ft = np.cos(a).reshape(4, 3), np.sin(a).reshape(4, 3)
    assert float(pkt_loss(t64(fs), t64(ft))) == pytest.approx(1.2100597e-06, rel=1e-7)
    s, t = fixed((4, 5)), fixed((4, 7), np.cos, 0.3)  # any widths: B×B similarities
    assert float(pkt_loss(t64(s), t64(t))) == pytest.approx(np_pkt(s, t), rel=1e-10)
    assert float(pkt_loss(t64(t), t64(t))) == pytest.approx(0.0, abs=1e-15)


# ---------------------------------------------------------------- VID


def test_vid_nll_matches_numpy_and_is_minimal_at_the_teacher():
    mean, target, log_scale = fixed((2, 3, 2, 2)), fixed((2, 3, 2, 2), np.cos), np.array([-1.0, 0.5, 2.0])
    var = np.log1p(np.exp(log_scale)) + 1e-5
    ref = (0.5 * ((mean - target) ** 2 / var[None, :, None, None] + np.log(var)[None, :, None, None])).mean()
    assert float(vid_nll(t64(mean), t64(target), t64(log_scale), 1e-5)) == pytest.approx(ref, rel=1e-10)
    m = t64(target).requires_grad_(True)
    value = vid_nll(m, t64(target), t64(log_scale), 1e-5)
    value.backward()
    assert float(value.detach()) == pytest.approx(0.5 * np.log(var).mean(), rel=1e-10)  # mean over C of ½ log σ²
    assert float(m.grad.abs().max()) == 0.0


def test_vid_regressor_starts_at_the_initial_variance():
    reg = VIDRegressor(4, 6, 6, init_var=5.0, eps=1e-5)
    var = torch.nn.functional.softplus(reg.log_scale) + reg.eps
    torch.testing.assert_close(var, torch.full((6,), 5.0), rtol=1e-6, atol=0)


# ---------------------------------------------------------------- IBD


def test_ibd_feature_loss_matches_numpy_and_is_zero_for_matching_maps():
    b, n_s, n_t = 2, 3, 2
    att = np.exp(fixed((b, n_t, n_s)))
    att /= att.sum(2, keepdims=True)
    v_s = [fixed((b, n_s, 4)), fixed((b, n_s, 6), np.cos)]
    v_t = [fixed((b, 4), np.cos, 0.5), fixed((b, 6), np.sin, 0.2)]
    ref = sum((((vs - vt[:, None]) ** 2).mean(2) * att[:, j]).sum(1).mean() for j, (vs, vt) in enumerate(zip(v_s, v_t)))
    got = ibd_feature_loss(t64(att), [t64(v) for v in v_s], [t64(v) for v in v_t])
    assert float(got) == pytest.approx(ref, rel=1e-10)
    same = [np.repeat(vt[:, None], n_s, axis=1) for vt in v_t]
    assert float(ibd_feature_loss(t64(att), [t64(v) for v in same], [t64(v) for v in v_t])) == 0.0


# ---------------------------------------------------------------- SemCKD


def test_semckd_loss_matches_numpy_and_is_zero_for_matching_values():
    b, n_s, n_t = 4, 2, 3
    att = np.exp(fixed((b, n_s, n_t), np.cos))
    att /= att.sum(2, keepdims=True)
    s_vals = [[fixed((b, 2, 3, 3), np.sin, 0.1 * (i + 1) + j) for j in range(n_t)] for i in range(n_s)]
    t_vals = [[fixed((b, 2, 3, 3), np.cos, 0.2 * (j + 1) + i) for j in range(n_t)] for i in range(n_s)]
    ind = np.stack(
        [
            np.stack([((s_vals[i][j] - t_vals[i][j]) ** 2).reshape(b, -1).mean(1) for j in range(n_t)], 1)
            for i in range(n_s)
        ],
        1,
    )
    ref = (att * ind).sum() / (b * n_s)
    conv = lambda vals: [[t64(v) for v in row] for row in vals]  # noqa: E731
    assert float(semckd_loss(t64(att), conv(s_vals), conv(t_vals))) == pytest.approx(ref, rel=1e-10)
    assert float(semckd_loss(t64(att), conv(t_vals), conv(t_vals))) == 0.0


# ---------------------------------------------------------------- ReviewKD


def test_hcl_loss_matches_numpy_and_is_zero_for_equal_maps():
    s = [fixed((2, 3, 8, 8)), fixed((2, 2, 2, 2), np.cos)]
    t = [fixed((2, 3, 8, 8), np.cos, 0.3), fixed((2, 2, 2, 2), np.sin, 2.0)]

    def np_hcl(s, t):
        total = 0.0
        for a, b in zip(s, t):
            loss, w, tot = ((a - b) ** 2).mean(), 1.0, 1.0
            for level in (4, 2, 1):
                if level >= a.shape[2]:
                    continue
                w /= 2
                loss += ((np_avgpool(a, level) - np_avgpool(b, level)) ** 2).mean() * w
                tot += w
            total += loss / tot
        return total

    assert float(hcl_loss([t64(x) for x in s], [t64(x) for x in t])) == pytest.approx(np_hcl(s, t), rel=1e-10)
    assert float(hcl_loss([t64(x) for x in t], [t64(x) for x in t])) == 0.0


def test_reviewkd_warmup_ramps_per_epoch_and_survives_a_state_dict_round_trip():
    ctx = context(16, 16, [16, 16], [16, 16], [0, 1], [0, 1])
    opts = build_options(DISTILLERS.get("reviewkd").Options, {"warmup_epochs": 4}, "reviewkd")
    d = DISTILLERS.get("reviewkd")(opts, ctx)
    assert d.warmup_factor() == 0.25
    d.on_epoch_end(2, lambda: None, None)
    assert d.warmup_factor() == 0.75
    d2 = DISTILLERS.get("reviewkd")(opts, ctx)
    d2.load_state_dict(d.state_dict())
    assert d2.warmup_factor() == 0.75
    d.on_epoch_end(9, lambda: None, None)
    assert d.warmup_factor() == 1.0


# ---------------------------------------------------------------- TinySAM


def test_tinysam_hardness_matches_numpy():
    target = np.zeros((2, 8, 8))
    target[:, 2:6, 2:6] = 1
    t_logits = np.full((2, 1, 4, 4), -5.0)
    t_logits[:, :, 1:3, 1:3] = 5.0  # upsampled ×2: exactly the target square → IoU 1
    s_logits = np.full((2, 1, 4, 4), -5.0)
    s_logits[0, :, 1:3, 1:3] = 5.0  # sample 0 as good as the teacher
    s_logits[1, :, 1:4, 1:4] = 5.0  # sample 1 too large
    iou_s = np.array([1.0, 16 / 36])
    np.testing.assert_allclose(mask_iou(t64(s_logits), t64(target)).numpy(), iou_s, rtol=1e-6)
    ref = np_sigmoid(1.0 / (iou_s + 1e-6) - 1)
    np.testing.assert_allclose(hardness(t64(t_logits), t64(s_logits), t64(target)).numpy(), ref, rtol=1e-6)
    assert ref[1] > ref[0] == pytest.approx(0.5, abs=1e-5)  # the worse mask weighs more


def test_tinysam_weighted_mask_kl_matches_numpy():
    s, t, w = fixed((3, 1, 2, 5)), fixed((3, 1, 2, 5), np.cos, 2.0), np.array([0.2, 0.5, 0.9])
    ref = (w * np_binary_kl(t, s).reshape(3, -1).mean(1)).mean()
    assert float(weighted_mask_kl(t64(s), t64(t), t64(w))) == pytest.approx(ref, rel=1e-10)


def test_embedding_mse_matches_numpy():
    s, t = fixed((2, 3, 2, 2)), fixed((2, 3, 2, 2), np.cos)
    assert float(embedding_mse(t64(s), t64(t))) == pytest.approx(((s - t) ** 2).mean(), rel=1e-12)


# ---------------------------------------------------------------- helpers


def test_pair_by_depth_and_resize():
    assert pair_by_depth(4, 4) == [0, 1, 2, 3]
    assert pair_by_depth(2, 3) == [0, 2]
    assert pair_by_depth(3, 4) == [0, 2, 3]
    assert pair_by_depth(1, 3) == [2]
    x = t64(fixed((1, 2, 4, 4)))
    np.testing.assert_allclose(resize_map(x, (2, 2)).numpy(), np_avgpool(x.numpy(), 2))
    assert resize_map(x, (4, 4)) is x
    assert resize_map(x, (8, 8)).shape == (1, 2, 8, 8)


# ---------------------------------------------------------------- distillers on synthetic features


def context(s_embed, t_embed, s_dims, t_dims, s_stages, t_stages) -> DistillContext:
    return DistillContext(s_embed, t_embed, s_dims, t_dims, s_stages, t_stages)


def features(ctx: DistillContext, side: str, seed: int, grid: int = 4) -> Features:
    g = torch.Generator().manual_seed(seed)
    embed = ctx.student_embed_dim if side == "s" else ctx.teacher_embed_dim
    dims = ctx.student_block_dims if side == "s" else ctx.teacher_block_dims
    stages = ctx.student_stages if side == "s" else ctx.teacher_stages
    b = 4
    return Features(
        embedding=torch.randn(b, embed, grid, grid, generator=g),
        mask_token=torch.randn(b, embed, generator=g),
        logits=3 * torch.randn(b, 1, 4 * grid, 4 * grid, generator=g),
        iou=torch.rand(b, 1, generator=g),
        blocks={i: torch.randn(b, dims[i], grid, grid, generator=g) for i in stages},
    )


def batch_for(grid: int = 4) -> dict:
    target = torch.zeros(4, 16 * grid, 16 * grid)
    target[:, 8:40, 8:40] = 1
    return {"target": target}


def build(name: str, ctx: DistillContext, **values):
    cls = DISTILLERS.get(name)
    return cls(build_options(cls.Options, values, name), ctx)


SAME = context(8, 8, [8, 8, 8], [8, 8, 8], [0, 2], [0, 2])


@pytest.mark.parametrize("name", declared("feature_matching"))
def test_zero_loss_when_student_features_equal_the_teachers(name):
    d = build(name, SAME)
    f = features(SAME, "s", 0)
    terms = d(f, f, batch_for())
    assert terms and all(float(v) == pytest.approx(0.0, abs=1e-6) for v in terms.values()), terms


def test_ibd_is_zero_when_every_layer_equals_the_teachers():
    d = build("ibd", SAME)
    f = features(SAME, "s", 0)
    f.blocks = {i: f.blocks[0] for i in f.blocks}
    with torch.no_grad():
        terms = d(f, f, batch_for())
    assert float(terms["l_ibd"]) == pytest.approx(0.0, abs=1e-6) and float(terms["l_kl"]) == pytest.approx(0, abs=1e-7)


def test_vid_is_minimal_in_its_mean_when_the_regressor_reproduces_the_teacher():
    d = build("vid", SAME)
    f = features(SAME, "s", 0)
    for reg in d.regressors:  # make the regressor the identity on non-negative inputs
        for conv in (reg.regressor[0], reg.regressor[2], reg.regressor[4]):
            torch.nn.init.eye_(conv.weight[:, :, 0, 0])
    f.blocks = {i: v.abs() for i, v in f.blocks.items()}
    loss = d(f, f, {})["l_vid"]
    expected = 2 * 0.5 * math.log(5.0)  # two layers of ½·log σ², σ² = 5
    assert float(loss.detach()) == pytest.approx(expected, rel=1e-5)


WIDE = context(8, 12, [8, 8, 8], [12, 12, 16, 16], [0, 2], [0, 2, 3])  # wider and deeper teacher


def test_the_declared_properties_cover_the_table2_baselines():
    """The property lists the tests below run over hold what the distillers' files say of themselves."""
    assert set(declared("feature_matching")) == {"logit", "pkd", "pkt", "mobilesam", "tinysam"}
    assert set(declared("owns_parameters", False, default=True)) == {"logit", "pkt"}
    assert set(declared("same_embed_width")) == {"infosam", "rm"}


@pytest.mark.parametrize("name", declared("feature_matching", False))
def test_a_distiller_that_does_not_declare_feature_matching_is_not_zero_on_equal_features(name):
    d = build(name, SAME)
    f = features(SAME, "s", 0)
    assert any(abs(float(v)) > 1e-6 for v in d(f, f, batch_for()).values())


@pytest.mark.parametrize("name", declared("same_embed_width"))
def test_a_same_width_distiller_refuses_a_wider_teacher(name):
    with pytest.raises(ValueError, match="embedding widths must match"):
        build(name, WIDE)


@pytest.mark.parametrize("name", declared("same_embed_width", False))
def test_every_distiller_handles_a_wider_deeper_teacher_and_trains_its_adapters(name):
    d = build(name, WIDE)
    s, t = features(WIDE, "s", 0), features(WIDE, "t", 1)
    for v in (s.embedding, s.mask_token, s.logits, *s.blocks.values()):
        v.requires_grad_(True)
    assert set(d.student_blocks) <= set(WIDE.student_stages) and set(d.teacher_blocks) <= set(WIDE.teacher_stages)
    terms = d(s, t, batch_for())
    total = torch.stack(list(terms.values())).sum()
    assert torch.isfinite(total)
    total.backward()
    params = [p for p in d.parameters()]
    if DISTILLERS.meta(name).get("owns_parameters", True):
        assert params and any(p.grad is not None and p.grad.abs().sum() > 0 for p in params)
    else:
        assert not params
    assert any(v.grad is not None and v.grad.abs().sum() > 0 for v in (s.embedding, s.logits, *s.blocks.values()))


@pytest.mark.parametrize("name", DISTILLERS.names())
def test_terms_are_float32_under_bf16_autocast(name):
    d = build(name, SAME)
    s, t = features(SAME, "s", 0), features(SAME, "t", 1)
    bf = Features(
        s.embedding.bfloat16(),
        s.mask_token.bfloat16(),
        s.logits.bfloat16(),
        s.iou.bfloat16(),
        {k: v.bfloat16() for k, v in s.blocks.items()},
    )
    with torch.autocast("cpu", dtype=torch.bfloat16):
        terms = d(bf, t, batch_for())
    assert terms and all(v.dtype == torch.float32 and v.dim() == 0 for v in terms.values())


@pytest.mark.parametrize(
    "name, values",
    [
        ("logit", {"temperature": 0}),
        ("pkt", {"weight": -1.0}),
        ("vid", {"init_var": 0.0}),
        ("ibd", {"qk_dim": 0}),
        ("semckd", {"factor": 8}),
        ("reviewkd", {"warmup_epochs": -1}),
        ("tinysam", {"w_mask": float("inf")}),
        ("mobilesam", {"wieght": 1.0}),
    ],
)
def test_bad_options_raise_config_errors(name, values):
    with pytest.raises(ConfigError, match=name if "wieght" in values else next(iter(values))):
        build_options(DISTILLERS.get(name).Options, values, f"distiller {name!r}")


def test_semckd_skips_smaller_batches_and_rejects_larger_ones():
    d = build("semckd", SAME)
    s, t = features(SAME, "s", 0), features(SAME, "t", 1)
    assert float(d(s, t, {})["l_semckd"]) > 0
    small = Features(
        s.embedding[:2], s.mask_token[:2], s.logits[:2], s.iou[:2], {k: v[:2] for k, v in s.blocks.items()}
    )
    tsmall = Features(
        t.embedding[:2], t.mask_token[:2], t.logits[:2], t.iou[:2], {k: v[:2] for k, v in t.blocks.items()}
    )
    assert float(d(small, tsmall, {})["l_semckd"]) == 0.0
    d8 = build("semckd", SAME, batch_size=2, factor=1)
    with pytest.raises(ValueError, match="distill.batch_size"):
        d8(s, t, {})


def test_semckd_attention_receives_a_gradient_at_batch_4():
    """At B = 4 the default embedding is 4-d: the query/key MLPs train (the code's factor 4, k = 1, is
    rejected: its ±1 queries/keys leave the attention without a gradient)."""
    torch.manual_seed(0)
    d = build("semckd", SAME)
    s, t = features(SAME, "s", 0), features(SAME, "t", 1)
    assert s.embedding.shape[0] == 4 and d.query[0].net[-1].out_features == 4
    d(s, t, {})["l_semckd"].backward()
    for mlp in [*d.query, *d.key]:
        assert all(p.grad is not None and p.grad.abs().max() > 0 for p in mlp.parameters())
    with pytest.raises(ConfigError, match="factor"):
        build("semckd", SAME, factor=4)


def test_semckd_attention_is_a_distribution_over_teacher_layers():
    d = build("semckd", WIDE, factor=1)
    s, t = features(WIDE, "s", 0), features(WIDE, "t", 1)
    att = d.attention([s.blocks[i] for i in d.student_blocks], [t.blocks[j] for j in d.teacher_blocks])
    assert att.shape == (4, 2, 3)
    torch.testing.assert_close(att.sum(-1), torch.ones(4, 2))


def test_ibd_attention_is_a_distribution_over_student_layers():
    d = build("ibd", WIDE)
    s, t = features(WIDE, "s", 0), features(WIDE, "t", 1)
    att = d.attention([s.blocks[i] for i in d.student_blocks], [t.blocks[j] for j in d.teacher_blocks])
    assert att.shape == (4, 3, 2)
    torch.testing.assert_close(att.sum(-1), torch.ones(4, 3))


# ---------------------------------------------------------------- rm and chains


def test_rm_is_infosam_under_another_name():
    cls = DISTILLERS.get("rm")
    assert issubclass(cls, InfoSAM) and cls.Options is InfoSAM.Options
    s, t = features(SAME, "s", 0), features(SAME, "t", 1)
    torch.manual_seed(3)
    a = build("rm", SAME)
    torch.manual_seed(3)
    b = build("infosam", SAME)
    ta, tb = a(s, t, {}), b(s, t, {})
    assert ta.keys() == tb.keys() == {"l_r", "l_d"}
    for k in ta:
        torch.testing.assert_close(ta[k], tb[k])
    with pytest.raises(ValueError, match="embedding"):
        build("rm", WIDE)


def test_method_names_chain_several_distillers():
    spec = methods.resolve_method("lora+tinysam+rm")
    assert (spec.peft, spec.distillers, spec.distiller) == ("lora", ("tinysam", "rm"), "tinysam+rm")
    assert spec.distiller_cls is CompositeDistiller
    spec = methods.resolve_method("tinysam+rm")
    assert (spec.peft, spec.distillers) == ("adapter", ("tinysam", "rm"))
    spec = methods.resolve_method("vid")
    assert (spec.peft, spec.distillers, spec.distiller_cls) == ("adapter", ("vid",), DISTILLERS.get("vid"))
    assert methods.resolve_method("adapter+infosam").distillers == ("infosam",)
    with pytest.raises(ConfigError, match="more than once"):
        methods.resolve_method("vid+vid")
    with pytest.raises(ConfigError, match="unknown method 'tinysam\\+nope': no distiller 'nope'"):
        methods.resolve_method("tinysam+nope")


def test_composite_prefixes_terms_unions_blocks_and_namespaces_options():
    opts = composite_options(("vid", "tinysam", "rm"), {"tinysam": {"w_mask": 2.0}, "rm": {"lambda2": 1.0}}, "m")
    assert opts.parts["tinysam"].w_mask == 2.0 and opts.parts["rm"].lambda2 == 1.0 and opts.parts["vid"].weight == 1.0
    torch.manual_seed(0)
    d = CompositeDistiller(opts, SAME)
    assert d.student_blocks == (0, 2) and d.teacher_blocks == (0, 2)
    s, t = features(SAME, "s", 0), features(SAME, "t", 1)
    terms = d(s, t, batch_for())
    assert list(terms) == ["vid.l_vid", "tinysam.l_embed", "tinysam.l_token", "tinysam.l_mask", "rm.l_r", "rm.l_d"]
    solo = build("tinysam", SAME, w_mask=2.0)
    for k, v in solo(s, t, batch_for()).items():
        torch.testing.assert_close(terms[f"tinysam.{k}"], v)
    assert {k.split(".")[1] for k in d.state_dict()} == {"vid", "rm"}  # tinysam has no parameters here


@pytest.mark.parametrize(
    "values, match",
    [
        ({"lambda2": 1.0}, "namespaced per distiller"),
        ({"rm": 3}, "distill.rm must hold"),
        ({"rm": {"nope": 1}}, "unknown option"),
        ({"tinysam": {"w_mask": -1}}, "w_mask"),
    ],
)
def test_chained_options_errors_name_the_problem(values, match):
    with pytest.raises(ConfigError, match=match):
        methods.method_options("tinysam+rm", {}, values)
