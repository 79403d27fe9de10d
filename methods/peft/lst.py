"""LST, Ladder Side-Tuning (Sung et al., NeurIPS 2022), as the SAM baseline of the Conv-LoRA paper's
table (Zhong et al., ICLR 2024): a light side network beside the frozen encoder, fed by its
intermediate activations, and never backpropagated through it.

Follows ``ylsung/Ladder-Side-Tuning`` (``seq2seq/third_party/models/t5/modeling_side_t5.py``,
``T5Stack.forward`` with ``use_gate="learnable"``, ``add_residual_after=False``). With e the input
embedding (the input of encoder block 0: patch embedding + position embedding in SAM ViT) and f_i
the outputs of the tapped encoder blocks i = 1..L (all blocks by default)::

    s_0 = first_down(e)                                              # side_first_downsample
    s_i = side_block_i(g_i · s_{i-1} + (1 - g_i) · down_i(f_i)),   g_i = sigmoid(α_i / T)
    z'  = z + up(LN(s_L))                                            (z = the frozen image embedding)

``first_down`` and ``down_i`` are linear maps from the encoder width to the side width d_s = max
block width / reduction (reduction 8 as in LST); ``side_block_i`` is a transformer block of width
d_s (``segment_anything``'s ``Block``: pre-norm attention + MLP ratio 4, no relative positions) with
the tapped block's window size and the greatest common divisor of d_s and its head count as heads;
``LN`` is LST's ``final_side_layer_norm``. Gates: α_i = 0 at init (g = 1/2), T = 0.1 (``gate_T``).
LST can initialise the side network from a pruned copy of the backbone; this implementation uses
PyTorch's default initialisation (the backbone's widths differ per stage on TinyViT, so there is no
one pruning rule).

Deviations, and the reasons:

* The side output is up-projected to the decoder width and *added* to the final image embedding
  (as the brief of this benchmark specifies for SAM); LST feeds the side output alone to its head.
  The up-projection is zero-initialised, so the wrapped model equals the pretrained one at step 0
  (``identity_at_init``).
* Side blocks run on the image-embedding grid: block outputs (and the input embedding) on another
  grid (TinyViT's first stage, 2× finer) are bilinearly resized to it (= 2×2 average).
* The Conv-LoRA paper gives no architecture details for its LST baseline beyond the parameter count
  (11.49M incl. its 3.51M decoder on ViT-H). Here, on ViT-H: 6.76M down-projections (33, the input
  embedding's included) + 9.90M side blocks + 0.04M up-projection = 16.70M, plus the decoder's
  3.51M that train.

Design: the side network is a :class:`~bench.contracts.backbone.DecoderExtension` whose
``adapt_embedding`` runs it on the block outputs requested through :meth:`LST.feature_blocks`.
The encoder itself has no trainable parameter, so the encoder cache serves the whole encoder *and*
the tapped block outputs and the input embedding (``INPUT_EMBEDDING``; fp16, one file per block
and image: for SAM ViT-B at 1024 px about 6 MB
per block and image; ``peft.stride`` taps fewer blocks). The mask decoder trains, as in the
Conv-LoRA baselines. A distiller sees the adapted embedding ``z'`` (``DecoderOutput.embedding``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import partial

import torch
import torch.nn.functional as F
from segment_anything.modeling.image_encoder import Block
from torch import nn

from bench.backbones import Backbone
from bench.config import ConfigError
from bench.contracts.decoder import DecoderExtension
from bench.contracts.encoder import INPUT_EMBEDDING
from bench.contracts.peft import PEFT_METHODS, PeftMethod


@dataclass
class LSTOptions:
    reduction: int = field(default=8, metadata={"help": "side width = max encoder block width // reduction (LST: 8)"})
    stride: int = field(default=1, metadata={"help": "tap every stride-th block, ending at the last (1 = all, LST)"})
    gate_temperature: float = field(default=0.1, metadata={"help": "T in g = sigmoid(alpha / T) (LST: 0.1)"})
    mlp_ratio: float = field(default=4.0, metadata={"help": "MLP width of the side blocks / side width"})

    def __post_init__(self) -> None:
        if self.reduction < 1:
            raise ValueError(f"reduction must be >= 1, got {self.reduction}")
        if self.stride < 1:
            raise ValueError(f"stride must be >= 1, got {self.stride}")
        if self.gate_temperature <= 0:
            raise ValueError(f"gate_temperature must be > 0, got {self.gate_temperature}")
        if self.mlp_ratio <= 0:
            raise ValueError(f"mlp_ratio must be > 0, got {self.mlp_ratio}")


def _heads(block: nn.Module) -> int:
    heads = getattr(block, "num_heads", None) or getattr(getattr(block, "attn", None), "num_heads", None)
    return int(heads or 1)


class LadderSide(DecoderExtension):
    """The side network (a :class:`DecoderExtension` that changes the image embedding).

    Args:
        block_ids: Tapped encoder block indices, in order.
        block_dims: Width of each tapped block's output.
        heads: Attention heads of each side block.
        windows: Window size of each side block (0 = global attention).
        side_dim: Side width d_s.
        out_dim: Image-embedding width C.
    """

    def __init__(
        self,
        block_ids: list[int],
        block_dims: list[int],
        heads: list[int],
        windows: list[int],
        side_dim: int,
        out_dim: int,
        temperature: float,
        mlp_ratio: float,
        input_dim: int,
    ) -> None:
        super().__init__(blocks=(INPUT_EMBEDDING, *block_ids))
        self.tapped = tuple(block_ids)
        self.temperature = temperature
        self.first_down = nn.Linear(input_dim, side_dim)
        self.downs = nn.ModuleList(nn.Linear(d, side_dim) for d in block_dims)
        self.gates = nn.Parameter(torch.zeros(len(block_ids)))  # alpha_i
        self.side_blocks = nn.ModuleList(
            Block(side_dim, h, mlp_ratio=mlp_ratio, norm_layer=partial(nn.LayerNorm, eps=1e-6), window_size=w)
            for h, w in zip(heads, windows)
        )
        self.norm = nn.LayerNorm(side_dim, eps=1e-6)
        self.up = nn.Linear(side_dim, out_dim)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def gate_values(self) -> torch.Tensor:
        return torch.sigmoid(self.gates / self.temperature)

    def side_output(self, blocks: dict[int, torch.Tensor], grid: tuple[int, int]) -> torch.Tensor:
        """(B, C, h, w) contribution to the image embedding on the (h, w) ``grid``; ``blocks`` holds the
        tapped block outputs and the input embedding (key ``INPUT_EMBEDDING``) as (B, C_l, h_l, w_l)."""

        def on_grid(index: int) -> torch.Tensor:
            feat = blocks[index].detach()  # no gradient into the backbone
            if feat.shape[-2:] != grid:
                feat = F.interpolate(feat, size=grid, mode="bilinear", align_corners=False)
            return feat.permute(0, 2, 3, 1)  # (B, h, w, C_l)

        gates = self.gate_values()
        side = self.first_down(on_grid(INPUT_EMBEDDING))  # (B, h, w, d_s)
        for k, index in enumerate(self.tapped):
            side = gates[k] * side + (1 - gates[k]) * self.downs[k](on_grid(index))
            side = self.side_blocks[k](side)
        return self.up(self.norm(side)).permute(0, 3, 1, 2)

    def adapt_embedding(self, embedding: torch.Tensor, blocks: dict[int, torch.Tensor]) -> torch.Tensor:
        return embedding + self.side_output(blocks, tuple(embedding.shape[-2:]))


@PEFT_METHODS.register("lst")
class LST(PeftMethod):
    """Ladder side network on the frozen encoder's block outputs, added to the image embedding."""

    Options = LSTOptions

    def feature_blocks(self, backbone: Backbone) -> tuple[int, ...]:
        o: LSTOptions = self.options
        n = len(backbone.encoder_blocks())
        return (INPUT_EMBEDDING, *(i for i in range(n) if (n - 1 - i) % o.stride == 0))

    def inject(self, backbone: Backbone) -> list[str]:
        o: LSTOptions = self.options
        if backbone.decoder_extension is not None:
            raise ConfigError(f"{backbone.name} already has a decoder extension; lst cannot add another")
        ids = [i for i in self.feature_blocks(backbone) if i != INPUT_EMBEDDING]
        blocks, dims = backbone.encoder_blocks(), backbone.block_dims()
        side_dim = max(dims) // o.reduction
        if side_dim < 1:
            raise ConfigError(f"lst: peft.reduction={o.reduction} leaves no side width (widest block: {max(dims)})")
        heads = [math.gcd(side_dim, _heads(blocks[i])) for i in ids]
        windows = [int(getattr(blocks[i], "window_size", 0) or 0) for i in ids]
        qkv = getattr(getattr(blocks[0], "attn", None), "qkv", None)
        input_dim = qkv.in_features if isinstance(qkv, nn.Linear) else dims[0]  # width of block 0's input
        backbone.decoder_extension = LadderSide(
            ids,
            [dims[i] for i in ids],
            heads,
            windows,
            side_dim,
            backbone.embed_dim,
            o.gate_temperature,
            o.mlp_ratio,
            input_dim,
        )
        return ["decoder_extension"]
