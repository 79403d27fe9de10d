"""Matrix-based Rényi α-entropy and mutual information over a batch (InfoSAM §3.1, App. A.1).

Paper: InfoSAM, Zhang et al., ICML 2025, https://arxiv.org/abs/2505.21920 (Eqs. 1–3, 16–17, 22).
Background: Yu et al., "Multivariate extension of matrix-based Rényi's α-order entropy functional",
TPAMI 2019.

All Gram matrices are B×B, one row per sample of the batch. With A = G / tr(G):

* ``H_α(A) = log2(Σ λ_i(A)^α) / (1 − α)``  (eigenvalues of the unit-trace matrix, Eq. 1);
* ``H_2(A) = −log2 ‖A‖_F²``, exact for symmetric A because ‖A‖_F² = Σ λ_i² (Eq. 22), no eigensolver;
* joint entropy: the entropy of the trace-normalised Hadamard product of the Gram matrices (Eq. 16);
* ``I(A; B) = H(A) + H(B) − H(A, B)`` where A or B may themselves be groups of variables (Eq. 17).

Everything is computed in float32 (float64 when the input is float64), with autocast switched off, so
bf16/fp16 features from a mixed-precision forward give a float32 loss.
"""

from __future__ import annotations

import math
from typing import Sequence, Union

import torch
import torch.nn.functional as F

GramGroup = Union[torch.Tensor, Sequence[torch.Tensor]]

_METHODS = ("auto", "frobenius", "eig")


def compute_dtype(x: torch.Tensor) -> torch.dtype:
    """The dtype the information-theoretic quantities use: float64 stays, anything else is float32."""
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def no_autocast(x: torch.Tensor) -> torch.autocast:
    """A context that disables autocast on ``x``'s device (so matmuls run in the dtype we cast to)."""
    return torch.autocast(device_type=x.device.type, enabled=False)


def check_alpha(alpha: float) -> None:
    """Raise ValueError unless α > 0 and α ≠ 1 (the matrix Rényi entropy is undefined at α = 1)."""
    if not (math.isfinite(alpha) and alpha > 0 and alpha != 1):
        raise ValueError(f"Rényi order alpha must be > 0 and != 1, got {alpha}")


def gram(x: torch.Tensor) -> torch.Tensor:
    """Cosine Gram matrix of a batch (the degree-1 polynomial kernel on ℓ2-normalised samples, Eq. 19).

    Args:
        x: Features (B, ...); each sample is flattened, then ℓ2-normalised (eps 1e-12, as F.normalize).

    Returns:
        (B, B) Gram matrix with unit diagonal (zero rows for all-zero samples).
    """
    if x.dim() < 1 or x.shape[0] < 1:
        raise ValueError(f"gram expects a batch (B, ...), got shape {tuple(x.shape)}")
    with no_autocast(x):
        flat = F.normalize(x.reshape(x.shape[0], -1).to(compute_dtype(x)), dim=1)
        return flat @ flat.T


def normalize_trace(g: torch.Tensor) -> torch.Tensor:
    """Divide a (B, B) Gram matrix by its trace, so its eigenvalues sum to one."""
    return g / torch.diagonal(g, dim1=-2, dim2=-1).sum(-1)


def hadamard(*grams: torch.Tensor) -> torch.Tensor:
    """Element-wise product of Gram matrices (not yet trace-normalised, as in the official code)."""
    if not grams:
        raise ValueError("hadamard needs at least one Gram matrix")
    out = grams[0]
    for g in grams[1:]:
        out = out * g
    return out


def renyi_entropy(g: torch.Tensor, alpha: float = 2.0, method: str = "auto") -> torch.Tensor:
    """Matrix-based Rényi α-entropy in bits of a Gram matrix (trace-normalised here, Eq. 1).

    Args:
        g: (B, B) symmetric positive semi-definite Gram matrix; any positive scale.
        alpha: Rényi order, > 0 and != 1.
        method: ``"frobenius"`` (α = 2 only: −log2‖A‖_F²), ``"eig"`` (eigenvalues via
            ``torch.linalg.eigvalsh``, tiny negative ones clamped to 0), or ``"auto"`` (Frobenius at
            α = 2, eigenvalues otherwise).

    Returns:
        Scalar tensor (float32, or float64 for float64 input), in [0, log2 B].
    """
    check_alpha(alpha)
    if method not in _METHODS:
        raise ValueError(f"unknown entropy method {method!r}; valid: {_METHODS}")
    if method == "frobenius" and alpha != 2:
        raise ValueError(f"the Frobenius form is exact only for alpha=2, got alpha={alpha}")
    a = normalize_trace(g.to(compute_dtype(g)))
    if method == "frobenius" or (method == "auto" and alpha == 2):
        # element-wise ops and sums on a float32/64 tensor: autocast leaves them in that dtype
        return -torch.log2(a.square().sum())
    with no_autocast(g):
        lam = torch.linalg.eigvalsh((a + a.transpose(-2, -1)) / 2)
    # λ^α with a safe branch for λ ≤ 0, so no 0·inf gradient appears when α < 1.
    positive = lam > 0
    lam_pow = torch.where(positive, torch.where(positive, lam, torch.ones_like(lam)) ** alpha, 0.0)
    return torch.log2(lam_pow.sum()) / (1 - alpha)


def _product(group: GramGroup) -> torch.Tensor:
    return hadamard(group) if isinstance(group, torch.Tensor) else hadamard(*group)


def joint_entropy(*grams: torch.Tensor, alpha: float = 2.0, method: str = "auto") -> torch.Tensor:
    """Joint Rényi entropy H_α(A_1, …, A_k) = H_α(A_1 ∘ … ∘ A_k / tr(·)) (Eq. 16)."""
    return renyi_entropy(hadamard(*grams), alpha, method)


def mutual_information(a: GramGroup, b: GramGroup, alpha: float = 2.0, method: str = "auto") -> torch.Tensor:
    """Matrix-based Rényi mutual information I_α(A; B) = H(A) + H(B) − H(A, B) (Eqs. 3 and 17).

    Args:
        a: A (B, B) Gram matrix, or a sequence of them treated as one joint variable.
        b: Same, for the second variable.
        alpha: Rényi order, > 0 and != 1.
        method: See :func:`renyi_entropy`.
    """
    ga, gb = _product(a), _product(b)
    return (
        renyi_entropy(ga, alpha, method)
        + renyi_entropy(gb, alpha, method)
        - joint_entropy(ga, gb, alpha=alpha, method=method)
    )
