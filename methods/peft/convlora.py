"""Conv-LoRA (Zhong et al., ICLR 2024): LoRA on the fused attention ``qkv`` with a mixture of
multi-scale convolution experts inside the low-rank bottleneck.

For a wrapped ``qkv`` layer (weight W, bias b)::

    h      = A x                                  # (…, r), A: r × D_in, kaiming-uniform
    result = W x + b + s · B (h + MoE(h)),  s = alpha / r,   B: D_out × r, zero-init

``MoE`` works on h reshaped to a (N, r, H, W) map. The official code is AutoMM's
``multimodal/src/autogluon/multimodal/models/adaptation_layers.py``: ``ConvLoRALinear`` with its gate
``MoEGate`` and ``SparseDispatcher`` (autogluon ``7d8cef5``). The Conv-LoRA example's earlier copy,
``models/conv_lora/{adaptation_layers.py, moe_conv.py}`` (``3bc2315``, ``MoEConv``), computes the same
gate; InfoSAM's ``LoRA_layers.py`` is a verbatim port (reference_implementations.md §2):

* gate (``MoEGate.forward``): global average pool → ``w_gate`` (r × M) logits; during
  training noise ``ε · (softplus(x·w_noise) + 1e-2)``, ε ~ N(0, 1), is added to the logits; the top-k
  (k = 1) of the noisy logits are kept and softmax-normalised *among themselves* (so the gate value is
  exactly 1 at k = 1); load ``= Σ_b P(expert in top-k)`` from ``_prob_in_top_k`` on the raw (noisy /
  clean) logits with the k-th and (k+1)-th noisy logits as thresholds, ``= #samples routed`` without
  noise; importance ``= Σ_b gates``. At k = 1 the importance is the routed count and carries no
  gradient: the load estimator is the gate's only training signal;
* expert i (i = 1..M): bicubic up-sampling ×i → ``Conv2d(r, r, 3, padding=1)`` → GELU → bicubic
  resize back to (H, W);
* combine: ``SparseDispatcher.combine(..., multiply_by_gates=False)``, i.e. every sample gets the raw
  output of its one selected expert (the gate value does not scale it). The original computes
  ``log(Σ exp(y))`` over the selected experts; with top-1 that is ``y`` itself up to exp/log rounding
  (and overflow for y > 88 in float32), so the selected output is used directly here;
* load-balancing loss ``1e-2 · (cv²(importance) + cv²(load))``, cv² = unbiased var / (mean² + 1e-10),
  summed over all wrapped layers of the last forward and returned by
  :meth:`ConvLoRA.loss_terms` as ``{"moe": moe_lambda · sum}`` (InfoSAM ``--moe_lambda 1``; Conv-LoRA
  adds it to the task loss with weight 1), then reset.
* init: A kaiming-uniform (a = √5, as loralib), B zero, expert biases zero, ``w_gate``/``w_noise``
  zero → the wrapped layer equals the pretrained one at init.

Spatial layout (the original takes H = W = √L of a (B, L, r) tensor):

* SAM ViT blocks call ``qkv`` on a channels-last window map (B·windows, h, w, C) — its own (h, w) is
  used, so global-attention blocks give the full 64×64 grid and windowed blocks 14×14 windows
  (padded windows included: the zero padding is part of the map, as in the original on HF SAM);
* TinyViT blocks (LiteMedSAM/MobileSAM) call ``qkv`` on (B·windows, ws², C) token windows; each
  window is reshaped to a ws × ws map (ws = √N, checked). The gate therefore routes per window, and
  the 3×3 experts do not see across window borders.

"Training" for the gate (noise + load-balancing loss) means ``module.training or grad enabled``:
the trainer keeps the student in ``eval()`` for frozen BatchNorm statistics, so grad mode is the
only signal it gives. Under ``torch.no_grad()`` in eval mode the gate is deterministic. The noise
uses torch's global RNG (seeded by the trainer).

Defaults follow InfoSAM's port (r = 4, alpha = 4, 8 experts, moe_lambda = 1); Conv-LoRA's own run
script uses r = 3, alpha = 32, 8 experts. The mask decoder trains without the parts no loss reaches
(``unused_decoder_modules``: the IoU head, which Conv-LoRA freezes explicitly, and the hypernetwork
MLPs of mask tokens 1-3; Conv-LoRA builds its decoder with ``num_mask_tokens=1``).
The bicubic resizes use ``F.interpolate``'s default ``align_corners=False``, as the public
``adaptation_layers.py`` does (autogluon ``3bc2315``).

Deviations from the public code: the selected expert's output is used as it is instead of
``log(exp(y) or 2.2e-16)`` (identical except where exp(y) under/overflows in float32); the gate is
noisy when ``module.training or grad enabled`` (the public code: ``module.training``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions.normal import Normal

from bench.backbones import Backbone
from bench.config import ConfigError
from bench.contracts.peft import PEFT_METHODS, PeftMethod, select_blocks

NOISE_EPS = 1e-2
BALANCE_COEF = 1e-2


@dataclass
class ConvLoRAOptions:
    r: int = field(default=4, metadata={"help": "LoRA rank (InfoSAM port: 4; Conv-LoRA script: 3)"})
    alpha: float = field(default=4.0, metadata={"help": "LoRA scaling numerator, s = alpha / r (Conv-LoRA script: 32)"})
    num_experts: int = field(default=8, metadata={"help": "conv experts M; expert i up-samples ×i (i = 1..M)"})
    moe_lambda: float = field(default=1.0, metadata={"help": "weight of the load-balancing loss term 'moe'"})
    start_block: int = field(default=0, metadata={"help": "first wrapped encoder block (Conv-LoRA: all blocks)"})
    end_block: Optional[int] = field(default=None, metadata={"help": "exclusive; None = through the last block"})

    def __post_init__(self) -> None:
        if self.r < 1:
            raise ValueError(f"r must be >= 1, got {self.r}")
        if self.alpha <= 0:
            raise ValueError(f"alpha must be > 0, got {self.alpha}")
        if self.num_experts < 1:
            raise ValueError(f"num_experts must be >= 1, got {self.num_experts}")
        if self.moe_lambda < 0:
            raise ValueError(f"moe_lambda must be >= 0, got {self.moe_lambda}")
        if self.start_block < 0:
            raise ValueError(f"start_block must be >= 0, got {self.start_block}")


def cv_squared(x: torch.Tensor) -> torch.Tensor:
    """Squared coefficient of variation (unbiased variance / mean²); 0 for a single value."""
    if x.shape[0] == 1:
        return torch.zeros((), device=x.device, dtype=torch.float32)
    x = x.float()
    return x.var() / (x.mean() ** 2 + 1e-10)


class ConvExpert(nn.Module):
    """Bicubic ×scale → Conv3×3 (r → r) → GELU → bicubic back to the input size."""

    def __init__(self, channels: int, scale: int) -> None:
        super().__init__()
        self.scale = scale
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)
        nn.init.zeros_(self.conv.bias)
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        if self.scale != 1:
            x = F.interpolate(x, scale_factor=self.scale, mode="bicubic", align_corners=False)
        x = self.act(self.conv(x))
        if x.shape[-2:] != size:
            x = F.interpolate(x, size=size, mode="bicubic", align_corners=False)
        return x


class MoEConv(nn.Module):
    """Noisy top-k (k = 1) gated mixture of multi-scale conv experts on (N, r, H, W) maps."""

    k = 1

    def __init__(self, channels: int, num_experts: int) -> None:
        super().__init__()
        self.num_experts = num_experts
        self.w_gate = nn.Parameter(torch.zeros(channels, num_experts))
        self.w_noise = nn.Parameter(torch.zeros(channels, num_experts))
        self.experts = nn.ModuleList(ConvExpert(channels, i + 1) for i in range(num_experts))

    def gating(
        self, x: torch.Tensor, noisy: bool, noise: Optional[torch.Tensor] = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Gates (N, M) with k non-zero entries per row, and the load (M,) (AutoMM ``MoEGate.forward``).

        Args:
            x: (N, r, H, W) maps.
            noisy: Add the learned gating noise and use the differentiable load estimator.
            noise: (N, M) standard-normal draws for the noise (default: ``torch.randn_like``).
        """
        pooled = x.mean(dim=(2, 3))  # global average pool → (N, r)
        clean = pooled @ self.w_gate
        if noisy:
            noise_std = F.softplus(pooled @ self.w_noise) + NOISE_EPS
            eps = torch.randn_like(clean) if noise is None else noise
            logits = clean + eps * noise_std
        else:
            logits = clean
        top_logits, top_idx = logits.topk(min(self.k + 1, self.num_experts), dim=1)
        top_k_gates = top_logits[:, : self.k].softmax(dim=1)  # k = 1: every gate value is 1
        gates = torch.zeros_like(logits).scatter(1, top_idx[:, : self.k], top_k_gates)
        if noisy and self.k < self.num_experts:
            load = self._prob_in_top_k(clean, logits, noise_std, top_logits).sum(0)
        else:
            load = (gates > 0).sum(0).float()
        return gates, load

    def _prob_in_top_k(
        self, clean: torch.Tensor, noisy: torch.Tensor, noise_std: torch.Tensor, top_logits: torch.Tensor
    ) -> torch.Tensor:
        """Differentiable P(expert stays in the top k under fresh noise) (Shazeer et al. 2017).

        The thresholds are the (k+1)-th and k-th largest *noisy logits* of each row."""
        n, m = top_logits.shape
        flat = top_logits.flatten()
        pos_in = torch.arange(n, device=clean.device) * m + self.k
        threshold_in = flat.gather(0, pos_in).unsqueeze(1)
        threshold_out = flat.gather(0, pos_in - 1).unsqueeze(1)
        is_in = noisy > threshold_in
        normal = Normal(torch.tensor(0.0, device=clean.device), torch.tensor(1.0, device=clean.device))
        prob_in = normal.cdf((clean - threshold_in) / noise_std)
        prob_out = normal.cdf((clean - threshold_out) / noise_std)
        return torch.where(is_in, prob_in, prob_out)

    def forward(
        self, x: torch.Tensor, noisy: bool, noise: Optional[torch.Tensor] = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Returns (combined expert output like x, load-balancing loss, gates); ``noise`` as in :meth:`gating`."""
        gates, load = self.gating(x, noisy, noise)
        importance = gates.sum(0)
        loss = BALANCE_COEF * (cv_squared(importance) + cv_squared(load))
        chosen = gates.argmax(dim=1)  # top-1: the one non-zero gate
        out = torch.zeros_like(x)
        for i, expert in enumerate(self.experts):
            idx = (chosen == i).nonzero(as_tuple=True)[0]
            if idx.numel():
                out = out.index_copy(0, idx, expert(x[idx]))
        return out, loss, gates


class ConvLoRALinear(nn.Module):
    """``base(x) + s · B (h + MoE(h))``, h = A x; keeps the pretrained layer as ``base_layer``."""

    def __init__(self, base: nn.Linear, r: int, alpha: float, num_experts: int) -> None:
        super().__init__()
        self.base_layer = base
        self.r = r
        self.scaling = alpha / r
        self.lora_A = nn.Parameter(torch.empty(r, base.in_features))
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, r))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
        self.moe = MoEConv(r, num_experts)
        self.last_loss: Optional[torch.Tensor] = None
        self.last_gates: Optional[torch.Tensor] = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        result = self.base_layer(x)
        h = F.linear(x, self.lora_A)
        if h.dim() == 4:  # SAM ViT: (N, h, w, r) channels-last window map
            hmap = h.permute(0, 3, 1, 2)
        elif h.dim() == 3:  # TinyViT: (N, ws², r) token windows
            n, length, r = h.shape
            side = math.isqrt(length)
            if side * side != length:
                raise RuntimeError(f"Conv-LoRA needs square token windows, got {length} tokens")
            hmap = h.transpose(1, 2).reshape(n, r, side, side)
        else:
            raise RuntimeError(f"Conv-LoRA expects a 3-D or 4-D qkv input, got shape {tuple(x.shape)}")
        noisy = self.training or torch.is_grad_enabled()
        moe, loss, gates = self.moe(hmap, noisy)
        hmap = hmap + moe
        self.last_gates = gates.detach()
        self.last_loss = loss if noisy else None
        if h.dim() == 4:
            h = hmap.permute(0, 2, 3, 1)
        else:
            h = hmap.reshape(h.shape[0], h.shape[2], -1).transpose(1, 2)
        return result + self.scaling * F.linear(h, self.lora_B)


@PEFT_METHODS.register("convlora")
class ConvLoRA(PeftMethod):
    """Conv-LoRA on ``attn.qkv`` of encoder blocks ``start_block..end`` (default: all)."""

    Options = ConvLoRAOptions

    def __init__(self, options: ConvLoRAOptions) -> None:
        super().__init__(options)
        self.layers: list[ConvLoRALinear] = []

    def inject(self, backbone: Backbone) -> list[str]:
        o: ConvLoRAOptions = self.options
        names = []
        for i, block in select_blocks(backbone, o.start_block, o.end_block):
            qkv = getattr(getattr(block, "attn", None), "qkv", None)
            if not isinstance(qkv, nn.Linear):
                raise ConfigError(
                    f"convlora: encoder block {i} of {backbone.name} ({type(block).__name__}) has no "
                    f"fused nn.Linear attn.qkv (found {type(qkv).__name__})"
                )
            layer = ConvLoRALinear(qkv, o.r, o.alpha, o.num_experts)
            block.attn.qkv = layer
            self.layers.append(layer)
            names.append(f"encoder_blocks.{i}.attn.qkv")
        if not names:
            raise ConfigError(f"convlora: no attn.qkv layer matched in {backbone.name}")
        return names

    def sparse_parameters(self) -> list[nn.Parameter]:
        """The conv experts: each trains only on the samples the gate routes to it."""
        return [p for layer in self.layers for p in layer.moe.experts.parameters()]

    def loss_terms(self) -> dict[str, torch.Tensor]:
        losses = [layer.last_loss for layer in self.layers if layer.last_loss is not None]
        for layer in self.layers:
            layer.last_loss = None
        if not losses:
            return {}
        return {"moe": self.options.moe_lambda * torch.stack(losses).sum()}
