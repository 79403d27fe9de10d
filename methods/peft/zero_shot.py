"""Zero-shot: the pretrained model as it is; nothing is trained (the paper's 'SAM' row)."""

from __future__ import annotations

from bench.contracts.peft import PEFT_METHODS, PeftMethod


@PEFT_METHODS.register("zero_shot", mergeable=True)
class ZeroShot(PeftMethod):
    """No trainable parameter; the trainer skips training and only evaluates."""

    train_decoder = False
