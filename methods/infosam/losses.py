"""InfoSAM's two information-theoretic losses: relation compression L_r and relation distillation L_d.

Paper: InfoSAM, Zhang et al., ICML 2025, https://arxiv.org/abs/2505.21920 (Eqs. 10–13, 21–25).

With H_α the matrix-based Rényi entropy of a trace-normalised B×B cosine Gram matrix
(:mod:`methods.infosam.renyi`):

* L_r = I_α(z_i, z_m; r_T) − H_α(z_i, z_m) = H_α(r_T) − H_α(z_i, z_m, r_T)   (Eq. 21; H_α(z_i, z_m)
  comes from the frozen teacher and is dropped). At α = 2, H_2(A) = −log2‖A‖_F², so
  L_r = −log2‖G_r‖² + log2‖G_i∘G_m∘G_r‖²   (Eq. 11, the official ``compute_relation_loss``).
* L_d = −I_α(r_T; r_S) = H_α(r_T, r_S) − H_α(r_T) − H_α(r_S)   (Eq. 24). At α = 2,
  L_d = log2‖G_rT‖² + log2‖G_rS‖² − log2‖G_rT∘G_rS‖²   (Eq. 13, the official ``compute_distill_loss``).

At α = 2 both entropy forms are computed by the same expression, so the two paths agree exactly.
Hadamard products are taken before trace normalisation. Because each cosine Gram has a unit diagonal,
this gives the same matrix as normalising each Gram first.

``regularize=False`` is the "w/o RT" row of Table 12. App. F.2 names the regularisation terms:
"log2‖G_imr^T‖², log2‖G_r^T‖², and log2‖G_r^S‖², which promote feature diversity and prevent it from
converging to trivial solutions". The terms that promote diversity are those that raise an entropy when
the loss is minimised. They are +log2‖G_imr‖² in L_r (= −H(z_i, z_m, r_T)) and +log2‖G_rT‖²,
+log2‖G_rS‖² in L_d (= −H(r_T), −H(r_S)). We drop these three, which leaves
L_r = −log2‖G_r‖² = H_α(r_T) (the compression term) and L_d = −log2‖G_rT∘G_rS‖² = H_α(r_T, r_S)
(the alignment term). The −log2‖G_r‖² term of L_r stays: it *lowers* the relation entropy (§4.2 calls it
a "spectral compression regularizer"), so it cannot be one of the terms that prevent collapse.
"""

from __future__ import annotations

import torch

from .renyi import gram, joint_entropy, renyi_entropy


def relation_compression_loss(
    z_i: torch.Tensor,
    z_m: torch.Tensor,
    r: torch.Tensor,
    alpha: float = 2.0,
    regularize: bool = True,
    method: str = "auto",
) -> torch.Tensor:
    """L_r = H_α(r) − H_α(z_i, z_m, r), in bits (Eqs. 11 and 21).

    Args:
        z_i: Teacher image embedding, (B, C, h, w) (any shape (B, ...)).
        z_m: Teacher mask token, (B, C) (any shape (B, ...)).
        r: Teacher relation, (B, h*w).
        alpha: Rényi order (> 0, != 1); 2 uses the Frobenius form.
        regularize: False drops the +log2‖G_imr‖² term (Table 12 "w/o RT"), leaving H_α(r).
        method: Entropy method, see :func:`methods.infosam.renyi.renyi_entropy`.

    Returns:
        Scalar float32 tensor (float64 for float64 input).
    """
    g_r = gram(r)
    loss = renyi_entropy(g_r, alpha, method)
    if regularize:
        loss = loss - joint_entropy(gram(z_i), gram(z_m), g_r, alpha=alpha, method=method)
    return loss


def relation_distillation_loss(
    r_t: torch.Tensor,
    r_s: torch.Tensor,
    alpha: float = 2.0,
    regularize: bool = True,
    method: str = "auto",
) -> torch.Tensor:
    """L_d = −I_α(r_T; r_S) = H_α(r_T, r_S) − H_α(r_T) − H_α(r_S), in bits (Eqs. 13 and 24–25).

    Args:
        r_t: Teacher relation, (B, h*w).
        r_s: Student relation, (B, h*w).
        alpha: Rényi order (> 0, != 1); 2 uses the Frobenius form.
        regularize: False drops +log2‖G_rT‖² and +log2‖G_rS‖² (Table 12 "w/o RT"), leaving
            H_α(r_T, r_S) = −log2‖G_rT∘G_rS‖².
        method: Entropy method, see :func:`methods.infosam.renyi.renyi_entropy`.

    Returns:
        Scalar float32 tensor (float64 for float64 input).
    """
    if r_t.shape[0] != r_s.shape[0]:
        raise ValueError(f"teacher and student batch sizes differ: {r_t.shape[0]} vs {r_s.shape[0]}")
    g_t, g_s = gram(r_t), gram(r_s)
    loss = joint_entropy(g_t, g_s, alpha=alpha, method=method)
    if regularize:
        loss = loss - renyi_entropy(g_t, alpha, method) - renyi_entropy(g_s, alpha, method)
    return loss
