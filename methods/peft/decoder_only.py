"""Decoder-only fine-tuning: the whole mask decoder trains, the image and prompt encoders stay frozen."""

from __future__ import annotations

from bench.contracts.peft import PEFT_METHODS, PeftMethod


@PEFT_METHODS.register("decoder_only", mergeable=True)
class DecoderOnly(PeftMethod):
    """Trains ``mask_decoder`` only (InfoSAM Table 1 'Decoder-only')."""

    train_decoder = True
