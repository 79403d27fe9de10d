"""Every parameter a PEFT method marks trainable receives a gradient in one training step.

What ``requires_grad`` marks is what the optimizer updates and what ``params`` counts, so a
parameter outside the forward (e.g. the hypernetwork MLPs of the unused mask tokens) must be frozen.
Zero-initialised parts (LoRA B, adapter up-projections, gates) block the gradient to the parts before
them at step 0, so the check runs from a perturbed state: every all-zero trainable tensor gets small
random values first (a model some steps into training). "Received a gradient" means
``p.grad is not None and p.grad.abs().max() > 0``. Mixture experts (``sparse_parameters``) train only
on the samples routed to them: at least one expert per layer must get a gradient.
"""

from __future__ import annotations

import pytest
import torch

from bench.contracts.peft import PEFT_METHODS, build_peft, unused_decoder_modules
from bench.train.losses import structure_loss

from .test_peft_contract import _forward, _inputs, pretrained

TRAINABLE = [n for n in PEFT_METHODS.names() if n != "zero_shot"]
PROMPT_ENCODER_TRAINED = {"full", "scratch"}  # methods training the prompt encoder (all of its prompt modes)
POINT_PROMPT_ONLY = {f"prompt_encoder.point_embeddings.{i}.weight" for i in (0, 1)} | {
    "prompt_encoder.not_a_point_embed.weight"
}


def _perturb_zero_tensors(model: torch.nn.Module) -> None:
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad and torch.count_nonzero(p) == 0:
                p.copy_(torch.randn(p.shape, generator=g) * 0.05)


def _gradients(name: str, backbone: str):
    torch.manual_seed(0)  # the methods' random init: independent of the tests run before
    model = pretrained(backbone)
    method = build_peft(name, {})
    method.apply(model)
    _perturb_zero_tensors(model)
    images, prompts, target = _inputs(model)
    torch.manual_seed(0)
    out = _forward(model, images, prompts)
    loss = structure_loss(model.upscale(out.logits), target)
    loss = loss + sum(method.loss_terms().values())
    loss.backward()
    return model, method


@pytest.mark.parametrize("backbone", ["tiny_sam", "tiny_sam2", "tiny_tinyvit"])
@pytest.mark.parametrize("name", TRAINABLE)
def test_every_trainable_parameter_receives_a_gradient(name, backbone):
    model, method = _gradients(name, backbone)
    sparse = {id(p) for p in method.sparse_parameters()}
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    assert trainable
    dead = [n for n, p in trainable if id(p) not in sparse and (p.grad is None or not p.grad.abs().max() > 0)]
    if name in PROMPT_ENCODER_TRAINED:  # the inputs are boxes: the point-prompt embeddings train under points
        dead = [n for n in dead if n not in POINT_PROMPT_ONLY]
    assert not dead, dead
    if sparse:  # the gate routes every sample somewhere: some expert trains
        assert any(p.grad is not None and p.grad.abs().max() > 0 for p in method.sparse_parameters())


@pytest.mark.parametrize("backbone", ["tiny_sam", "tiny_sam2"])
def test_unused_decoder_parts_are_frozen_and_really_get_no_gradient(backbone):
    """Guards the freezing: unfrozen, the parts named unused still end up without a gradient."""
    model = pretrained(backbone)
    build_peft("decoder_only", {}).apply(model)
    unused = unused_decoder_modules(model)
    assert len(unused) >= 4  # hypernetwork MLPs of mask tokens 1..3 + the IoU head
    assert not any(p.requires_grad for m in unused for p in m.parameters())
    for m in unused:
        m.requires_grad_(True)
    images, prompts, target = _inputs(model)
    structure_loss(model.upscale(_forward(model, images, prompts).logits), target).backward()
    assert all(p.grad is None or p.grad.abs().max() == 0 for m in unused for p in m.parameters())
    used = model.mask_decoder.output_hypernetworks_mlps[0]
    assert all(p.requires_grad and p.grad.abs().max() > 0 for p in used.parameters())
