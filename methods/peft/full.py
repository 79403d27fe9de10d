"""Full fine-tuning: every parameter of the backbone trains (the upper reference row).

The image encoder, the prompt encoder and the mask decoder all train, but for the parts no forward of the
suite reaches, which stay frozen and uncounted: in the decoder exactly those ``decoder_only`` leaves frozen
(:func:`bench.contracts.peft.unused_decoder_modules`: the hypernetwork MLPs of mask tokens 1..3 and the IoU
head never receive a gradient), in the encoders :func:`unreached_parameters` (the mask-prompt branch of the
prompt encoder, 4,684 parameters on SAM; TinyViT's classification head and eval-mode attention biases).
On SAM ViT-H 640.53 M of its 641.09 M parameters train (641.09 M − 0.552 M − 4,684; with
``backbone.mask_tokens=1``, protocol ``convlora``, the same 640.53 M of 640.67 M).

Prompt-encoder parameters that one prompt mode does not reach stay trainable, as another mode reaches them
(the point embeddings under box prompts; the box-corner embeddings under point prompts): they get no gradient
in such a run, so an optimizer leaves them as they are.
"""

from __future__ import annotations

import logging

from torch import nn

from bench.backbones import Backbone
from bench.contracts.peft import PEFT_METHODS, PeftMethod

log = logging.getLogger(__name__)


@PEFT_METHODS.register("full", mergeable=True)
class Full(PeftMethod):
    """Trains the whole backbone from its pretrained weights (but :func:`unused_decoder_modules`)."""

    train_decoder = True

    def inject(self, backbone: Backbone) -> list[str]:
        backbone.requires_grad_(True)  # apply() then re-freezes the decoder parts outside every loss
        for param in unreached_parameters(backbone):
            param.requires_grad_(False)
        return [name for name, _ in backbone.named_children() if name != "mask_decoder"]


def unreached_parameters(backbone: Backbone) -> list[nn.Parameter]:
    """Encoder and prompt-encoder parameters outside every forward of the suite (frozen by ``full``, like
    :func:`bench.contracts.peft.unused_decoder_modules` in the decoder).

    * ``prompt_encoder.mask_downscaling``: ``Backbone.decode`` never passes a mask prompt (``masks=None``);
    * TinyViT's classification head (``image_encoder.norm_head``, ``image_encoder.head``; MobileSAM,
      LiteMedSAM): SAM's encoder path ends at the neck;
    * TinyViT's ``attention_biases``: the student runs in eval mode (the trainer keeps BatchNorm statistics
      frozen), where TinyViT's attention reads the copy ``ab`` cached at ``eval()``, never the parameter.
    """
    modules: list[nn.Module] = []
    for owner, name in ((backbone.prompt_encoder, "mask_downscaling"), (backbone.image_encoder, "norm_head"),
                        (backbone.image_encoder, "head")):  # fmt: skip
        module = getattr(owner, name, None)
        if isinstance(module, nn.Module):
            modules.append(module)
    params = [p for m in modules for p in m.parameters()]
    params += [p for n, p in backbone.image_encoder.named_parameters() if n.rsplit(".", 1)[-1] == "attention_biases"]
    return params
