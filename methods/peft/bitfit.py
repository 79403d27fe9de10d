"""BitFit (Ben Zaken et al., ACL 2022, https://arxiv.org/abs/2106.10199): train only bias terms.

InfoSAM's ``--BitFit`` (``train_attention.py``, MuyaoYuan/InfoSAM ``ec8f9ab``) unfreezes every
parameter of ``image_encoder.blocks`` whose name contains ``"bias"`` — the Linear biases *and* the
LayerNorm biases (as in the BitFit paper, which trains all bias terms) — plus, with
``--tuning_decoder``, the whole mask decoder. Here the selection is by module: the ``bias`` of every
Linear / Conv / norm layer inside :meth:`Backbone.encoder_blocks` (``include_norm_biases=false``
keeps only Linear/Conv biases). TinyViT's ``attention_biases`` (a relative-position bias table,
which InfoSAM's substring match would also catch) are not bias terms of a layer and stay frozen.
Nothing is added → identical outputs at init.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import nn

from bench.backbones import Backbone
from bench.config import ConfigError
from bench.contracts.peft import PEFT_METHODS, PeftMethod

_NORMS = (nn.LayerNorm, nn.BatchNorm2d, nn.GroupNorm)
_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d)


@dataclass
class BitFitOptions:
    include_norm_biases: bool = field(
        default=True, metadata={"help": "also train LayerNorm/BatchNorm biases (InfoSAM --BitFit, BitFit paper)"}
    )

    def __post_init__(self) -> None:
        if not isinstance(self.include_norm_biases, bool):
            raise ValueError(f"include_norm_biases must be a bool, got {self.include_norm_biases!r}")


@PEFT_METHODS.register("bitfit", mergeable=True)
class BitFit(PeftMethod):
    """Biases of the encoder blocks + the mask decoder."""

    Options = BitFitOptions

    def inject(self, backbone: Backbone) -> list[str]:
        kinds = _LAYERS + _NORMS if self.options.include_norm_biases else _LAYERS
        names = []
        for i, block in enumerate(backbone.encoder_blocks()):
            for name, module in block.named_modules():
                if isinstance(module, kinds) and isinstance(getattr(module, "bias", None), nn.Parameter):
                    module.bias.requires_grad_(True)
                    names.append(f"encoder_blocks.{i}.{name}")
        if not names:
            raise ConfigError(f"bitfit: no biased layer in the encoder blocks of {backbone.name}")
        return names
