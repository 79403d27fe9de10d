"""InfoSAM: Rényi entropy, relation module, L_r / L_d and the registered distiller.

Golden values come from reference_implementations.md §5 (a float64 restatement of the official
DualMiLoss). The other value checks compare with a numpy float64 implementation written here.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from bench.config import ConfigError
from bench.contracts.distill import DISTILLERS, DistillContext, Features
from bench.contracts.options import build_options
from methods.infosam import InfoSAM, InfoSAMOptions
from methods.infosam.losses import relation_compression_loss, relation_distillation_loss
from methods.infosam.relation import FixedDotRelation, RelationModule
from methods.infosam.renyi import gram, joint_entropy, mutual_information, renyi_entropy

# ---------------------------------------------------------------- numpy reference (float64)


def np_layer_norm(x, w, b, eps=1e-5):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * w + b


def np_relation(z_i, z_m, p, kind="attn"):
    """z_i (B, C, h, w), z_m (B, C), p: dict of float64 numpy parameters -> r (B, h*w)."""
    feat = z_i.reshape(z_i.shape[0], z_i.shape[1], -1).transpose(0, 2, 1)
    feat = np_layer_norm(feat, p["layer_norm_feat.weight"], p["layer_norm_feat.bias"])
    mask = np_layer_norm(z_m[:, None, :], p["layer_norm_mask.weight"], p["layer_norm_mask.bias"])
    scores = np.zeros((feat.shape[0], 1, feat.shape[1]))
    if kind != "dot":
        q = mask @ p["query_proj.weight"].T + p["query_proj.bias"]
        k = feat @ p["key_proj.weight"].T + p["key_proj.bias"]
        scores = scores + q @ k.transpose(0, 2, 1) / math.sqrt(q.shape[-1])
    if kind != "linear":
        scores = scores + mask @ feat.transpose(0, 2, 1)
    s = scores.reshape(scores.shape[0], -1)
    return s / np.linalg.norm(s, axis=1, keepdims=True)


def np_gram(x):
    x = x.reshape(x.shape[0], -1)
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    g = x @ x.T
    return g / np.trace(g)


def np_entropy(a, alpha):
    a = a / np.trace(a)
    if alpha == 2:
        return -np.log2((a**2).sum())
    lam = np.clip(np.linalg.eigvalsh(a), 0, None)
    return np.log2((lam**alpha).sum()) / (1 - alpha)


def np_lr(z_i, z_m, r, alpha=2.0, regularize=True):
    g_r = np_gram(r)
    out = np_entropy(g_r, alpha)
    if regularize:
        out -= np_entropy(np_gram(z_i) * np_gram(z_m) * g_r, alpha)
    return out


def np_ld(r_t, r_s, alpha=2.0, regularize=True):
    g_t, g_s = np_gram(r_t), np_gram(r_s)
    out = np_entropy(g_t * g_s, alpha)
    if regularize:
        out -= np_entropy(g_t, alpha) + np_entropy(g_s, alpha)
    return out


def np_params(module):
    return {k: v.detach().double().numpy() for k, v in module.state_dict().items()}


# ---------------------------------------------------------------- fixtures


def reference_inputs():
    """§5 construction: feat (B=4, N=6 tokens, D=5) token-major; masks (4, 1, 5)."""
    t, u = torch.arange(120, dtype=torch.float64), torch.arange(20, dtype=torch.float64)

    def as_embedding(feat):  # (B, N, D) tokens -> (B, D, h=6, w=1)
        return feat.reshape(4, 6, 5).permute(0, 2, 1).reshape(4, 5, 6, 1)

    return (
        as_embedding(torch.sin(t)),
        torch.cos(u).reshape(4, 1, 5),
        as_embedding(torch.cos(0.5 * t)),
        torch.sin(0.3 * u + 1).reshape(4, 1, 5),
    )


def zero_qk(module):
    with torch.no_grad():
        for layer in (module.query_proj, module.key_proj):
            layer.weight.zero_()
            layer.bias.zero_()
    return module


def random_module(kind="attn", dim=8, layers=1, seed=0):
    torch.manual_seed(seed)
    m = RelationModule(dim=dim, kind=kind, layers=layers)
    with torch.no_grad():  # move LN affine away from 1/0 so it is exercised
        for p in m.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return m


def features(emb, tok):
    b = emb.shape[0]
    return Features(embedding=emb, mask_token=tok, logits=torch.zeros(b, 1, 4, 4), iou=torch.zeros(b, 1))


def make_distiller(dim=8, **opts):
    return InfoSAM(InfoSAMOptions(**opts), DistillContext(student_embed_dim=dim, teacher_embed_dim=dim))


# ---------------------------------------------------------------- golden values (§5)


def test_reference_values():
    zt_i, zt_m, zs_i, zs_m = reference_inputs()
    rm = zero_qk(RelationModule(dim=5))
    r_t, r_s = rm(zt_i, zt_m), rm(zs_i, zs_m[:, 0])
    assert r_t.dtype == torch.float64 and r_t.shape == (4, 6)
    loss_r = relation_compression_loss(zt_i, zt_m, r_t)
    loss_d = relation_distillation_loss(r_t, r_s)
    assert loss_r.item() == pytest.approx(-0.9588957134, abs=1e-6)
    assert loss_d.item() == pytest.approx(-0.0189202373, abs=1e-6)
    assert (1.0 * loss_r + 0.5 * loss_d).item() == pytest.approx(-0.9683558320, abs=1e-6)
    assert renyi_entropy(gram(r_t)).item() == pytest.approx(0.2903395009, abs=1e-6)


def test_reference_values_through_distiller_dot_kind():
    """relation='dot' at init equals attn with W_q = W_k = 0; distiller returns weighted terms."""
    zt_i, zt_m, zs_i, zs_m = reference_inputs()
    d = make_distiller(dim=5, relation="dot")
    out = d(features(zs_i, zs_m[:, 0]), features(zt_i, zt_m[:, 0]), {})
    assert set(out) == {"l_r", "l_d"}
    assert out["l_r"].item() == pytest.approx(-0.9588957134, abs=1e-6)
    assert out["l_d"].item() == pytest.approx(0.5 * -0.0189202373, abs=1e-6)


# ---------------------------------------------------------------- identities


def test_ld_orthonormal_rows_is_minus_log2_b():
    r = torch.eye(4, 7, dtype=torch.float64)
    assert relation_distillation_loss(r, r).item() == pytest.approx(-2.0, abs=1e-12)


def test_ld_equal_rows_is_zero():
    r = torch.randn(1, 9, dtype=torch.float64).repeat(4, 1)
    assert relation_distillation_loss(r, r).item() == pytest.approx(0.0, abs=1e-12)


def test_lr_all_orthonormal_is_zero():
    eye = torch.eye(4, dtype=torch.float64)
    assert relation_compression_loss(eye, eye, eye).item() == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("regularize", [True, False])
def test_alpha2_frobenius_equals_eigenvalue_form(regularize):
    torch.manual_seed(1)
    z_i, z_m = torch.randn(5, 3, 4, 4, dtype=torch.float64), torch.randn(5, 3, dtype=torch.float64)
    r_t, r_s = torch.randn(5, 16, dtype=torch.float64), torch.randn(5, 16, dtype=torch.float64)
    g = gram(r_t)
    fro = renyi_entropy(g, 2.0, method="frobenius")
    assert fro.item() == pytest.approx(renyi_entropy(g, 2.0, method="eig").item(), abs=1e-12)
    for fn, args in ((relation_compression_loss, (z_i, z_m, r_t)), (relation_distillation_loss, (r_t, r_s))):
        a = fn(*args, alpha=2.0, regularize=regularize, method="frobenius")
        b = fn(*args, alpha=2.0, regularize=regularize, method="eig")
        near = fn(*args, alpha=2.0 + 1e-7, regularize=regularize)  # the general-α path, continuous at 2
        assert a.item() == pytest.approx(b.item(), abs=1e-12)
        assert a.item() == pytest.approx(near.item(), abs=1e-5)


def test_ld_is_minus_mutual_information():
    torch.manual_seed(2)
    r_t, r_s = torch.randn(4, 10, dtype=torch.float64), torch.randn(4, 10, dtype=torch.float64)
    for alpha in (2.0, 1.5, 3.0):
        mi = mutual_information(gram(r_t), gram(r_s), alpha)
        assert relation_distillation_loss(r_t, r_s, alpha).item() == pytest.approx(-mi.item(), abs=1e-10)


def test_lr_is_mi_minus_teacher_joint_entropy():
    """L_r = I(z_i, z_m; r) − H(z_i, z_m) (Eq. 21), multivariate MI through renyi.py."""
    torch.manual_seed(3)
    z_i, z_m, r = (torch.randn(4, 6, dtype=torch.float64) for _ in range(3))
    g_i, g_m, g_r = gram(z_i), gram(z_m), gram(r)
    for alpha in (2.0, 1.01):
        expect = mutual_information([g_i, g_m], g_r, alpha) - joint_entropy(g_i, g_m, alpha=alpha)
        assert relation_compression_loss(z_i, z_m, r, alpha).item() == pytest.approx(expect.item(), abs=1e-10)


# ---------------------------------------------------------------- numpy comparisons


@pytest.mark.parametrize("alpha", [2.0, 3.0, 1.01])
@pytest.mark.parametrize("regularize", [True, False])
def test_losses_match_numpy(alpha, regularize):
    rng = np.random.default_rng(4)
    z_i, z_m = rng.normal(size=(4, 3, 2, 5)), rng.normal(size=(4, 3))
    r_t, r_s = rng.normal(size=(4, 10)), rng.normal(size=(4, 10))
    tt = [torch.from_numpy(a) for a in (z_i, z_m, r_t, r_s)]
    got_r = relation_compression_loss(tt[0], tt[1], tt[2], alpha, regularize).item()
    got_d = relation_distillation_loss(tt[2], tt[3], alpha, regularize).item()
    assert got_r == pytest.approx(np_lr(z_i, z_m, r_t, alpha, regularize), abs=1e-10)
    assert got_d == pytest.approx(np_ld(r_t, r_s, alpha, regularize), abs=1e-10)


def test_unregularized_terms():
    """regularize=False keeps −log2‖G_r‖² in L_r and −log2‖G_rT∘G_rS‖² in L_d."""
    rng = np.random.default_rng(5)
    z_i, z_m, r_t, r_s = (rng.normal(size=(4, 7)) for _ in range(4))
    t = [torch.from_numpy(a) for a in (z_i, z_m, r_t, r_s)]
    g_r, g_ts = np_gram(r_t), np_gram(r_t) * np_gram(r_s)
    lr = relation_compression_loss(t[0], t[1], t[2], regularize=False).item()
    ld = relation_distillation_loss(t[2], t[3], regularize=False).item()
    assert lr == pytest.approx(-np.log2((g_r**2).sum()), abs=1e-12)
    assert ld == pytest.approx(-np.log2(((g_ts / np.trace(g_ts)) ** 2).sum()), abs=1e-12)


@pytest.mark.parametrize("kind", ["attn", "linear", "dot"])
def test_relation_module_matches_numpy(kind):
    m = random_module(kind, dim=8)
    rng = np.random.default_rng(6)
    z_i, z_m = rng.normal(size=(3, 8, 2, 3)), rng.normal(size=(3, 8))
    got = m(torch.from_numpy(z_i), torch.from_numpy(z_m)).detach().numpy()
    np.testing.assert_allclose(got, np_relation(z_i, z_m, np_params(m), kind), atol=1e-10)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-12)


def test_relation_module_float32_matches_numpy():
    m = random_module("attn", dim=8)
    rng = np.random.default_rng(7)
    z_i, z_m = rng.normal(size=(3, 8, 2, 3)), rng.normal(size=(3, 8))
    got = m(torch.from_numpy(z_i).float(), torch.from_numpy(z_m).float())
    assert got.dtype == torch.float32
    np.testing.assert_allclose(got.detach().numpy(), np_relation(z_i, z_m, np_params(m)), atol=1e-5)


def test_attn_layers():
    """Attn-2 equals Attn-1 at init (zero-init output projection) and matches numpy once trained."""
    one, two = random_module("attn", layers=1, seed=8), RelationModule(dim=8, kind="attn", layers=2)
    two.load_state_dict(one.state_dict(), strict=False)
    rng = np.random.default_rng(9)
    z_i, z_m = torch.from_numpy(rng.normal(size=(3, 8, 2, 2))), torch.from_numpy(rng.normal(size=(3, 8)))
    torch.testing.assert_close(two(z_i, z_m), one(z_i, z_m), rtol=0, atol=1e-12)

    two = random_module("attn", layers=2, seed=10)
    p = np_params(two)
    lay = {k.split(".", 2)[2]: v for k, v in p.items() if k.startswith("refine_layers.0.")}
    feat = z_i.numpy().reshape(3, 8, -1).transpose(0, 2, 1)
    feat_n = np_layer_norm(feat, lay["layer_norm_feat.weight"], lay["layer_norm_feat.bias"])
    mask = z_m.numpy()[:, None, :]
    mask_n = np_layer_norm(mask, lay["layer_norm_mask.weight"], lay["layer_norm_mask.bias"])
    q = mask_n @ lay["query_proj.weight"].T + lay["query_proj.bias"]
    k = feat_n @ lay["key_proj.weight"].T + lay["key_proj.bias"]
    s = q @ k.transpose(0, 2, 1) / math.sqrt(8) + mask_n @ feat_n.transpose(0, 2, 1)
    w = np.exp(s - s.max(-1, keepdims=True))
    w /= w.sum(-1, keepdims=True)
    v = feat_n @ lay["value_proj.weight"].T + lay["value_proj.bias"]
    mask = mask + (w @ v) @ lay["out_proj.weight"].T + lay["out_proj.bias"]
    expect = np_relation(z_i.numpy(), mask[:, 0], p)
    np.testing.assert_allclose(two(z_i, z_m).detach().numpy(), expect, atol=1e-10)


def test_fixed_dot_relation_matches_numpy():
    rng = np.random.default_rng(11)
    z_i, z_m = rng.normal(size=(3, 4, 2, 2)), rng.normal(size=(3, 4))
    s = np.einsum("bc,bcl->bl", z_m, z_i.reshape(3, 4, -1))
    got = FixedDotRelation()(torch.from_numpy(z_i), torch.from_numpy(z_m)).numpy()
    np.testing.assert_allclose(got, s / np.linalg.norm(s, axis=1, keepdims=True), atol=1e-12)


# ---------------------------------------------------------------- distiller behaviour


def test_gradient_flow():
    torch.manual_seed(12)
    d = make_distiller(dim=8, relation_dim=6)
    with torch.no_grad():  # a nonzero init for every parameter, so "no gradient" cannot pass by accident
        for p in d.relation.parameters():
            p.add_(0.3 * torch.randn_like(p))
    s_emb = torch.randn(4, 8, 3, 3, requires_grad=True)
    s_tok = torch.randn(4, 8, requires_grad=True)
    t_emb, t_tok = torch.randn(4, 8, 3, 3), torch.randn(4, 8)
    out = d(features(s_emb, s_tok), features(t_emb, t_tok), {})
    params = list(d.relation.parameters())
    inputs = [s_emb, s_tok]

    g_r = torch.autograd.grad(out["l_r"], inputs + params, retain_graph=True, allow_unused=True)
    assert g_r[0] is None and g_r[1] is None  # the student gets nothing from L_r
    assert all(g is not None and g.abs().sum() > 0 and torch.isfinite(g).all() for g in g_r[2:])

    g_d = torch.autograd.grad(out["l_d"], inputs + params, allow_unused=True)
    assert all(g is not None and g.abs().sum() > 0 and torch.isfinite(g).all() for g in g_d)


def test_ld_reaches_relation_through_teacher_branch():
    """r_T is not detached: with a fixed student relation, L_d still moves the module."""
    torch.manual_seed(13)
    d = make_distiller(dim=8)
    t_emb, t_tok = torch.randn(4, 8, 2, 2), torch.randn(4, 8)
    r_s = torch.randn(4, 4)
    loss = relation_distillation_loss(d.relation(t_emb, t_tok), r_s)
    grads = torch.autograd.grad(loss, list(d.relation.parameters()))
    assert all(g.abs().sum() > 0 for g in grads)


def test_bf16_autocast_gives_float32_close_to_fp32():
    torch.manual_seed(14)
    d = make_distiller(dim=16)
    emb = [torch.randn(4, 16, 4, 4).bfloat16() for _ in range(2)]
    tok = [torch.randn(4, 16).bfloat16() for _ in range(2)]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        amp = d(features(emb[0], tok[0]), features(emb[1], tok[1]), {})
    ref = d(features(emb[0].float(), tok[0].float()), features(emb[1].float(), tok[1].float()), {})
    for name in ("l_r", "l_d"):
        assert amp[name].dtype == torch.float32 and torch.isfinite(amp[name])
        assert amp[name].item() == pytest.approx(ref[name].item(), abs=1e-5)


def test_alpha_1_01_runs_and_is_finite():
    torch.manual_seed(15)
    d = make_distiller(dim=8, alpha=1.01)
    s_emb = torch.randn(4, 8, 2, 2, requires_grad=True)
    out = d(features(s_emb, torch.randn(4, 8)), features(torch.randn(4, 8, 2, 2), torch.randn(4, 8)), {})
    assert all(torch.isfinite(v) for v in out.values())
    (out["l_r"] + out["l_d"]).backward()
    assert torch.isfinite(s_emb.grad).all() and s_emb.grad.abs().sum() > 0


def test_enabled_terms_and_weights():
    torch.manual_seed(16)
    s = features(torch.randn(4, 8, 2, 2), torch.randn(4, 8))
    t = features(torch.randn(4, 8, 2, 2), torch.randn(4, 8))
    full = make_distiller(dim=8, lambda1=1.0, lambda2=1.0)
    weighted = make_distiller(dim=8, lambda1=2.0, lambda2=0.25)
    weighted.load_state_dict(full.state_dict())
    a, b = full(s, t, {}), weighted(s, t, {})
    assert b["l_r"].item() == pytest.approx(2.0 * a["l_r"].item(), rel=1e-6)
    assert b["l_d"].item() == pytest.approx(0.25 * a["l_d"].item(), rel=1e-6)
    assert set(make_distiller(dim=8, use_lr=False)(s, t, {})) == {"l_d"}
    assert set(make_distiller(dim=8, use_ld=False)(s, t, {})) == {"l_r"}


def test_table4_fixed_dot_reading():
    torch.manual_seed(17)
    d = make_distiller(dim=8, use_lr=False, lr_relation="fixed_dot")
    assert isinstance(d.relation, FixedDotRelation) and not list(d.parameters())
    s_emb = torch.randn(4, 8, 2, 2, requires_grad=True)
    t_emb, t_tok, s_tok = torch.randn(4, 8, 2, 2), torch.randn(4, 8), torch.randn(4, 8)
    out = d(features(s_emb, s_tok), features(t_emb, t_tok), {})
    assert set(out) == {"l_d"}
    np_r = [
        np.einsum("bc,bcl->bl", m.numpy(), e.detach().numpy().reshape(4, 8, -1))
        for e, m in ((t_emb, t_tok), (s_emb, s_tok))
    ]
    assert out["l_d"].item() == pytest.approx(0.5 * np_ld(*np_r), abs=1e-5)
    out["l_d"].backward()
    assert s_emb.grad.abs().sum() > 0


def test_save_load_frozen_relation(tmp_path):
    src = make_distiller(dim=8, relation="attn", relation_layers=2)
    with torch.no_grad():
        for p in src.relation.parameters():
            p.add_(torch.randn_like(p))
    path = str(tmp_path / "rm.pt")
    src.save_relation(path)
    dst = make_distiller(dim=8, relation_layers=2, relation_ckpt=path, relation_frozen=True)
    for (k, a), (_, b) in zip(src.relation.state_dict().items(), dst.relation.state_dict().items()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=k)
    assert not any(p.requires_grad for p in dst.parameters())
    with pytest.raises(ValueError, match="rm.pt"):
        make_distiller(dim=8, relation="dot", relation_ckpt=path)


def test_registered_and_dim_mismatch():
    assert DISTILLERS.get("infosam") is InfoSAM
    assert build_options(InfoSAM.Options, {"lambda2": 0.25}, "infosam").lambda2 == 0.25
    with pytest.raises(ValueError, match=r"student_embed_dim=256.*teacher_embed_dim=384"):
        InfoSAM(InfoSAMOptions(), DistillContext(student_embed_dim=256, teacher_embed_dim=384))
    d = make_distiller(dim=8)
    with pytest.raises(ValueError, match="width"):
        narrow = features(torch.randn(4, 6, 2, 2), torch.randn(4, 6))
        d(narrow, narrow, {})


@pytest.mark.parametrize(
    "bad",
    [
        {"alpha": 1.0},
        {"alpha": 0.0},
        {"alpha": -2.0},
        {"alpha": float("nan")},
        {"lambda1": -1.0},
        {"lambda2": float("inf")},
        {"use_lr": False, "use_ld": False},
        {"relation": "conv"},
        {"relation_layers": 0},
        {"relation": "dot", "relation_layers": 3},
        {"relation_dim": 0},
        {"lr_relation": "random"},
        {"lr_relation": "fixed_dot"},  # with use_lr=True (default)
        {"lr_relation": "fixed_dot", "use_lr": False, "relation_ckpt": "x.pt"},
    ],
)
def test_bad_options_raise(bad):
    with pytest.raises(ValueError):
        InfoSAMOptions(**bad)
    with pytest.raises(ConfigError):
        build_options(InfoSAMOptions, bad, "infosam")


def test_renyi_rejects_bad_alpha_and_method():
    g = torch.eye(3)
    for alpha in (1.0, 0.0):
        with pytest.raises(ValueError):
            renyi_entropy(g, alpha)
    with pytest.raises(ValueError):
        renyi_entropy(g, 3.0, method="frobenius")
    with pytest.raises(ValueError):
        RelationModule(dim=4, kind="mlp")


def test_without_l_d_the_student_trains_exactly_as_the_plain_adapter(tmp_path):
    """L_r trains only the relation module; the student learns from the teacher through L_d alone. So
    ``adapter+infosam`` with λ2 = 0 must give the ``adapter`` run's scores bit for bit (same student
    operations in the same order), and with λ2 > 0 it must not (the test can fail both ways)."""
    from bench.runs.launcher import launch
    from tests.tiny_runs import sweep

    def scores(runs: str, *extra: str) -> dict:
        (outcome,) = launch(sweep(tmp_path, *extra, runs=runs))
        assert outcome.error is None, outcome.error
        return outcome.record["metrics_by_definition"]

    adapter = scores("adapter", "methods=[adapter]")
    assert scores("no_l_d", "methods=[adapter+infosam]", "distill.lambda2=0") == adapter
    assert scores("infosam", "methods=[adapter+infosam]") != adapter
