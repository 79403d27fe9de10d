"""The backbone contract names its attention layout (issue 29): :meth:`Backbone.attention_layout` of every
encoder block of each small family matches the block's fused ``qkv``, and the names that moved out of
:mod:`bench.contracts.backbone` (into ``decoder``, ``encoder``, ``checkpoints``) still import from it."""

from __future__ import annotations

import pytest
import torch

import bench.contracts.backbone as contract
from bench.backbones import build_backbone
from bench.config import BackboneConfig
from bench.contracts import checkpoints, decoder, encoder

SMALL = {"sam": "tiny_sam", "sam2": "tiny_sam2", "tinyvit": "tiny_tinyvit"}
KINDS = {"sam": "vit", "sam2": "hiera", "tinyvit": "tinyvit"}


@pytest.mark.parametrize("family", sorted(SMALL))
def test_attention_layout_matches_every_block(family: str) -> None:
    model = build_backbone(BackboneConfig(name=SMALL[family], random_init=True))
    blocks = model.encoder_blocks()
    assert blocks
    for block in blocks:
        layout = model.attention_layout(block)
        qkv = block.attn.qkv
        assert layout.kind == KINDS[family]
        assert layout.heads == block.attn.num_heads
        assert layout.fused_out == qkv.out_features
        assert layout.groups * (layout.q + layout.k + layout.v) == qkv.out_features
        q, v = layout.qv_columns()
        assert len(q) == layout.groups * layout.q and len(v) == layout.groups * layout.v
        assert len(set(q.tolist()) | set(v.tolist())) == len(q) + len(v)  # disjoint
        # q of group g is computed from the first q columns of the g-th [q | k | v] chunk
        x = torch.randn(2, qkv.in_features)
        per = layout.q + layout.k + layout.v
        chunks = qkv(x).reshape(2, layout.groups, per)
        assert torch.equal(qkv(x)[:, q], chunks[..., : layout.q].reshape(2, -1))
        assert torch.equal(qkv(x)[:, v], chunks[..., layout.q + layout.k :].reshape(2, -1))


def test_patch_embedding_is_the_encoders() -> None:
    for family, name in SMALL.items():
        model = build_backbone(BackboneConfig(name=name, random_init=True))
        owner, patch_embed = model.patch_embedding()
        assert patch_embed is not None and owner.patch_embed is patch_embed, family


MOVED = {
    decoder: ("Prompts", "DecoderOutput", "DecoderState", "DecoderExtension"),
    encoder: ("INPUT_EMBEDDING", "EncoderStep", "run_steps", "AttentionLayout"),
    checkpoints: ("CheckpointError", "attach_weights", "load_checkpoint"),
}


def test_old_import_names_still_resolve() -> None:
    for module, names in MOVED.items():
        for name in names:
            assert getattr(contract, name) is getattr(module, name), name
    for name in ("Backbone", "BACKBONES", "register_backbone", "backbone_family", "build_backbone"):
        assert hasattr(contract, name)
    for name in ("keep_mask_tokens", "check_img_size", "sha256_file"):
        assert hasattr(contract, name)
