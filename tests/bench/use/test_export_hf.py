"""``export format=hf``: a SAM ViT run as a transformers ``SamModel`` folder, loaded strictly, same logits."""

from __future__ import annotations

import pytest
import torch
from transformers import SamModel

from bench.backbones import Prompts, build_backbone
from bench.config import BackboneConfig, ConfigError
from bench.contracts.peft import build_peft
from bench.use.export import export_as, merge
from bench.use.export_hf import export_hf, hf_logits

TOL = 1e-4  # relative to max(1, max |logit|): SamModel re-implements SAM's layers, fp32 reduction order only


def _prompts(size: int) -> list[Prompts]:
    return [
        Prompts(boxes=torch.tensor([[0.1, 0.2, 0.7, 0.9]]) * size),
        Prompts(points=torch.tensor([[[0.3, 0.6], [0.8, 0.2]]]) * size, labels=torch.tensor([[1.0, 0.0]])),
        Prompts(
            boxes=torch.tensor([[0.2, 0.2, 0.8, 0.7]]) * size,
            points=torch.tensor([[[0.5, 0.5]]]) * size,
            labels=torch.ones(1, 1),
        ),
    ]


def _loads_strictly_and_matches(model, out) -> float:
    hf, info = SamModel.from_pretrained(out, output_loading_info=True)
    assert not any(info.values()), info  # no missing, unexpected, mismatched key
    x = torch.randn(1, 3, model.img_size, model.img_size, generator=torch.Generator().manual_seed(3))
    worst = 0.0
    with torch.no_grad():
        z, _ = model.encode(x)
        for prompts in _prompts(model.img_size):
            want = model.decode(z, prompts).logits
            diff = float((hf_logits(hf.eval(), x, prompts) - want).abs().max())
            assert diff <= TOL * max(1.0, float(want.abs().max()))
            worst = max(worst, diff)
    return worst


def test_tiny_sam_lora_run_exports_to_sammodel(tiny_runs_lora_adapter, tmp_path):
    from bench.use.trained import load_trained

    trained = load_trained(tiny_runs_lora_adapter["lora"])
    text = export_as(trained, tmp_path / "hf", "hf")
    assert "max |logits diff|" in text
    _loads_strictly_and_matches(trained.model, tmp_path / "hf")


def test_unfoldable_method_and_other_families_are_refused(tiny_runs_lora_adapter, tmp_path):
    from bench.use.trained import load_trained

    with pytest.raises(ConfigError, match="method 'adapter'.*fold into plain layers.*lora"):
        export_as(load_trained(tiny_runs_lora_adapter["adapter"]), tmp_path / "a", "hf")
    with pytest.raises(ConfigError, match="tiny_tinyvit.*SAM ViT backbones"):
        export_hf(build_backbone(BackboneConfig(name="tiny_tinyvit")), tmp_path / "b")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


@pytest.mark.slow
def test_random_vit_b_with_folded_lora_matches_sammodel(tmp_path):
    torch.manual_seed(0)
    model = build_backbone(BackboneConfig(name="sam_vit_b", random_init=True))
    build_peft("lora", {}).apply(model)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora" in name:
                p.normal_(0, 0.02)  # a non-zero update, so a missing fold would show
    merged = merge(model).eval()
    print(export_hf(merged, tmp_path / "vit_b"))
    print("ViT-B max |diff|", _loads_strictly_and_matches(merged, tmp_path / "vit_b"))
