"""Decoder-only fine-tuning: the mask decoder trains, the image and prompt encoders stay frozen.

The decoder parts no loss reads stay frozen (the hypernetwork MLPs of unused mask tokens, the IoU head:
:func:`bench.contracts.peft.unused_decoder_modules`): on SAM ViT-H 3.506 M of its 4.058 M parameters train,
the Conv-LoRA table's 3.51 M.
"""

from __future__ import annotations

from bench.contracts.peft import PEFT_METHODS, PeftMethod


@PEFT_METHODS.register("decoder_only", mergeable=True)
class DecoderOnly(PeftMethod):
    """Trains ``mask_decoder`` only (InfoSAM Table 1 'Decoder-only')."""

    train_decoder = True
