"""SAM 2.1 Hiera backbones (``sam2_hiera_t|s|b_plus|l``) built from the official ``sam2`` package.

The model is instantiated from the package's own ``configs/sam2.1/*.yaml`` with OmegaConf +
``hydra.utils.instantiate`` (not ``build_sam2``, which needs a fresh global Hydra and fails inside a
Hydra app, sam2 issue #179), weights are loaded into the whole ``SAM2Base`` (official
``sam2.1_hiera_*.pt`` files keep its state dict under ``"model"``; strict, ``weights_only=True``), and
the image path of ``SAM2ImagePredictor`` (facebookresearch/sam2 ``2b90b9f`` = PyPI ``sam2==1.1.0``) is
exposed as a :class:`~bench.backbones.Backbone`. The video parts (memory attention/encoder, object
pointers) are dropped after loading.

Encoder steps (the image path of ``SAM2Base.forward_image`` + ``_prepare_backbone_features`` +
``SAM2ImagePredictor.set_image``):

1. ``trunk.patch_embed`` + Hiera's windowed absolute position embedding;
2. every ``MultiScaleBlock`` (``block=i``); the outputs of the Hiera stages are kept for the neck;
3. the FPN neck's low-resolution levels: lateral 1×1 convs of stages 3 and 4 plus the nearest ×2
   top-down path (``fpn_top_down_levels = [2, 3]``); level 3 is dropped (``scalp = 1``), level 2 is z;
4. ``z + no_mem_embed`` (``directly_add_no_mem_embed``: what an image without memory gets);
5. the high-resolution features the decoder needs: the lateral convs of stages 1 and 2 (levels 0/1 use
   no top-down path) followed by the mask decoder's ``conv_s0`` / ``conv_s1``.

The neck is split this way (same operations, same order, as ``FpnNeck.forward``) so that a cached
frozen prefix stores the narrow stage outputs rather than 256-channel level-0/1 maps, and so that
``conv_s0``/``conv_s1`` — mask-decoder weights, trained with the decoder — come last. The sine position
encodings of the neck are not computed: the image decoder uses ``prompt_encoder.get_dense_pe()``.

The encoder state between steps is a list of tensors (the finished stage outputs and the current
map); :meth:`Sam2Hiera.encode_prefix` packs it into one flat (B, N) tensor for the encoder cache and
:meth:`Sam2Hiera.encode` unpacks it (the layout follows from the step index), so caching is exact.
``encode`` returns z_i (B, 256, S/16, S/16) and puts the high-resolution maps into the feature dict
under :data:`HIGH_RES_S0` (B, 32, S/4, S/4) and :data:`HIGH_RES_S1` (B, 64, S/8, S/8); the trainer and
the evaluator pass that dict to :meth:`Sam2Hiera.decode`.

Decoder: the submodules of SAM2's ``MaskDecoder.predict_masks`` with one prompt per image. Output
tokens are ``[obj_score_token, iou_token, mask_tokens…]`` (``pred_obj_scores``), so z_m is
``hs[:, 2]`` and the IoU token ``hs[:, 1]``; single-mask output = mask token 0. Box prompts are fed as
two corner points labelled 2/3 before any clicks, with ``boxes=None`` (as ``SAM2ImagePredictor._predict``
does; the prompt encoder then appends its padding point).

Deviations from the official predictor, all deliberate:

* images are resized to S×S (SAM2's ``Resize((S, S))``, aspect ratio not kept, no padding) with PIL
  bilinear on uint8 instead of torchvision's antialiased bilinear on floats (same normalisation);
* logits reach the original size through :meth:`Backbone.postprocess` (bilinear to S, then to H×W)
  instead of one bilinear resize from the low-resolution logits;
* ``dynamic_multimask_via_stability`` (set by ``build_sam2`` for inference only) is not used: the
  single-mask output is always mask token 0, as in training; the object score does not gate the mask
  (the image predictor ignores it too).
"""

from __future__ import annotations

import importlib.resources
import math
from typing import Any, Callable, Optional

import torch
import torch.nn.functional as F
from torch import nn

from bench.config import BackboneConfig, ConfigError
from bench.contracts.backbone import Backbone, check_img_size, register_backbone
from bench.contracts.checkpoints import attach_weights
from bench.contracts.decoder import Prompts
from bench.contracts.encoder import EncoderStep, run_steps
from bench.contracts.weights import resolve_checkpoint

HIGH_RES_S0 = -1  # feature-dict key of the stride-4 high-resolution map (conv_s0 output)
HIGH_RES_S1 = -2  # feature-dict key of the stride-8 high-resolution map (conv_s1 output)

CONFIG_FILES = {
    "sam2_hiera_t": "sam2.1_hiera_t.yaml",
    "sam2_hiera_s": "sam2.1_hiera_s.yaml",
    "sam2_hiera_b_plus": "sam2.1_hiera_b+.yaml",
    "sam2_hiera_l": "sam2.1_hiera_l.yaml",
}
State = list[torch.Tensor]


def _to_map(state: State) -> torch.Tensor:
    return state[-1].permute(0, 3, 1, 2)


class Sam2Hiera(Backbone):
    """SAM 2.1 image path: Hiera trunk + FPN neck + SAM2 prompt encoder and mask decoder.

    Args:
        image_encoder: ``sam2`` ``ImageEncoder`` (``trunk`` = Hiera, ``neck`` = FpnNeck, ``scalp`` = 1).
        prompt_encoder / mask_decoder: ``SAM2Base.sam_prompt_encoder`` / ``sam_mask_decoder``.
        no_mem_embed: ``SAM2Base.no_mem_embed`` (1, 1, C), added to z_i.
        img_size: Square input size S (a multiple of 32).
        official: Builds a fresh ``SAM2Base`` of this variant (random/seeded weights), for
            :meth:`official_state`; None: the package config of :attr:`name` at ``img_size``.
    """

    family = "sam2"
    normalization = "sam"

    def __init__(
        self,
        image_encoder: nn.Module,
        prompt_encoder: nn.Module,
        mask_decoder: nn.Module,
        no_mem_embed: nn.Parameter,
        img_size: int,
        official: Optional[Callable[[], nn.Module]] = None,
    ) -> None:
        super().__init__(image_encoder, prompt_encoder, mask_decoder, img_size)
        self._official = official
        neck, trunk = image_encoder.neck, image_encoder.trunk
        problems = []
        if len(neck.convs) != 4 or len(trunk.stage_ends) != 4 or not trunk.return_interm_layers:
            problems.append("the neck must read all four Hiera stages")
        if image_encoder.scalp != 1 or {0, 1} & set(neck.fpn_top_down_levels):
            problems.append("expects scalp=1 and fpn_top_down_levels without levels 0/1 (the sam2.1 configs)")
        if not mask_decoder.use_high_res_features:
            problems.append("expects use_high_res_features_in_sam=true")
        if problems:
            raise ValueError("unsupported SAM2 configuration: " + "; ".join(problems))
        self.no_mem_embed = no_mem_embed
        self._last_high_res: Optional[tuple[torch.Tensor, torch.Tensor]] = None

    # ------------------------------------------------------------------ structure
    def resized_shape(self, height: int, width: int) -> tuple[int, int]:
        """SAM2 resizes every image to S×S (``SAM2Transforms``: ``Resize((S, S))``)."""
        return self.img_size, self.img_size

    def encoder_blocks(self) -> list[nn.Module]:
        return list(self.image_encoder.trunk.blocks)

    def official_model(self) -> nn.Module:
        """A fresh ``SAM2Base`` of this variant with its random/seeded weights (video modules included)."""
        if self._official is not None:
            return self._official()
        if self.name not in CONFIG_FILES:
            raise ConfigError(f"{self.name}: no sam2.1 config to rebuild its SAM2Base from")
        return instantiate_sam2(sam2_model_config(self.name), self.img_size)

    def official_state(self, checkpoint: Optional[str] = None) -> dict[str, torch.Tensor]:
        """The whole ``SAM2Base`` state dict: a fresh one (:meth:`official_model`), the ``"model"`` tensors
        of ``checkpoint`` (the video modules keep their pretrained values), then this backbone's tensors
        under their ``SAM2Base`` names (``sam_prompt_encoder.`` / ``sam_mask_decoder.``)."""
        state = self.official_model().state_dict()
        if checkpoint:
            state.update(torch.load(checkpoint, map_location="cpu", weights_only=True)["model"])
        rename = {"prompt_encoder.": "sam_prompt_encoder.", "mask_decoder.": "sam_mask_decoder."}
        for key, value in self.state_dict().items():
            for old, new in rename.items():
                if key.startswith(old):
                    key = new + key[len(old) :]
            if key not in state:
                raise ConfigError(f"export: {key} of the merged model has no place in SAM2Base")
            state[key] = value
        return state

    def stage_ends(self) -> list[int]:
        return [int(i) for i in self.image_encoder.trunk.stage_ends]

    def encoder_steps(self) -> list[EncoderStep]:
        trunk, neck, dec = self.image_encoder.trunk, self.image_encoder.neck, self.mask_decoder
        stage_ends = set(self.stage_ends())

        def embed(state: State) -> State:
            x = trunk.patch_embed(state[0])
            return [x + trunk._get_pos_embed(x.shape[1:3])]

        def block_step(i: int, blk: nn.Module):
            def run(state: State) -> State:
                *saved, x = state
                if i - 1 in stage_ends:  # x is the output of the stage that just ended
                    saved.append(x)
                return [*saved, blk(x)]

            return run

        def neck_low(state: State) -> State:
            xs = [t.permute(0, 3, 1, 2) for t in state]  # stage outputs, (B, C_k, h_k, w_k)
            n = len(neck.convs) - 1
            prev = None
            for level in (n, n - 1):  # FpnNeck.forward, top-down order, levels 3 and 2 only
                lateral = neck.convs[n - level](xs[level])
                if level in neck.fpn_top_down_levels and prev is not None:
                    top_down = F.interpolate(
                        prev.to(dtype=torch.float32),
                        scale_factor=2.0,
                        mode=neck.fpn_interp_model,
                        align_corners=(None if neck.fpn_interp_model == "nearest" else False),
                        antialias=False,
                    )
                    prev = lateral + top_down
                    if neck.fuse_type == "avg":
                        prev = prev / 2
                else:
                    prev = lateral
            return [state[0], state[1], prev]

        def add_no_mem(state: State) -> State:
            s0, s1, z = state
            return [s0, s1, z + self.no_mem_embed.reshape(1, -1, 1, 1)]

        def high_res(state: State) -> State:
            s0, s1, z = state
            n = len(neck.convs) - 1
            f0 = neck.convs[n](s0.permute(0, 3, 1, 2))
            f1 = neck.convs[n - 1](s1.permute(0, 3, 1, 2))
            return [dec.conv_s0(f0), dec.conv_s1(f1), z]

        params = lambda *mods: [p for m in mods for p in m.parameters()]  # noqa: E731
        steps = [
            EncoderStep(
                "image_encoder.trunk.patch_embed",
                embed,
                params(trunk.patch_embed) + [trunk.pos_embed, trunk.pos_embed_window],
            )
        ]
        for i, blk in enumerate(trunk.blocks):
            steps.append(
                EncoderStep(f"image_encoder.trunk.blocks.{i}", block_step(i, blk), params(blk), block=i, to_map=_to_map)
            )
        n = len(neck.convs) - 1
        steps += [
            EncoderStep("image_encoder.neck.convs.0-1", neck_low, params(neck.convs[0], neck.convs[1])),
            EncoderStep("no_mem_embed", add_no_mem, [self.no_mem_embed]),
            EncoderStep(
                "image_encoder.neck.convs.2-3+mask_decoder.conv_s0-1",
                high_res,
                params(neck.convs[n - 1], neck.convs[n], dec.conv_s0, dec.conv_s1),
            ),
        ]
        return steps

    # ------------------------------------------------------------------ state packing (encoder cache)
    def state_shapes(self, stop: int) -> list[tuple[int, ...]]:
        """Per-sample shapes of the state after ``stop`` encoder steps (the packing layout)."""
        s = self.img_size
        if stop == 0:
            return [(3, s, s)]
        trunk, neck, dec = self.image_encoder.trunk, self.image_encoder.neck, self.mask_decoder
        proj = trunk.patch_embed.proj
        h = (s + 2 * proj.padding[0] - proj.kernel_size[0]) // proj.stride[0] + 1
        w = (s + 2 * proj.padding[1] - proj.kernel_size[1]) // proj.stride[1] + 1
        x: tuple[int, ...] = (h, w, proj.out_channels)
        saved: list[tuple[int, ...]] = []
        blocks = self.encoder_blocks()
        for i, blk in enumerate(blocks[: stop - 1]):
            if i - 1 in self.stage_ends():
                saved.append(x)
            if blk.q_stride:
                h, w = h // blk.q_stride[0], w // blk.q_stride[1]
            x = (h, w, int(blk.dim_out))
        if stop <= 1 + len(blocks):
            return saved + [x]
        s0, s1, s2 = saved[0], saved[1], saved[2]
        z = (neck.d_model, s2[0], s2[1])
        if stop < 4 + len(blocks):
            return [s0, s1, z]
        return [(dec.conv_s0.out_channels, s0[0], s0[1]), (dec.conv_s1.out_channels, s1[0], s1[1]), z]

    @staticmethod
    def _pack(state: State) -> torch.Tensor:
        b = state[0].shape[0]
        return torch.cat([t.reshape(b, -1) for t in state], dim=1)

    def _unpack(self, flat: torch.Tensor, stop: int) -> State:
        shapes = self.state_shapes(stop)
        sizes = [math.prod(shape) for shape in shapes]
        if flat.dim() != 2 or flat.shape[1] != sum(sizes):
            raise ValueError(
                f"{self.name}: a cached state after {stop} steps is (B, {sum(sizes)}), got {tuple(flat.shape)}"
            )
        b = flat.shape[0]
        return [part.reshape(b, *shape) for part, shape in zip(flat.split(sizes, dim=1), shapes)]

    # ------------------------------------------------------------------ forward pieces
    def encode(
        self, x: torch.Tensor, start: int = 0, blocks: tuple[int, ...] = ()
    ) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
        """Run steps ``start..end`` on the image (``start == 0``) or on a packed cached state.

        Returns:
            z_i (B, 256, S/16, S/16) and the requested block maps plus the high-resolution maps under
            :data:`HIGH_RES_S0` / :data:`HIGH_RES_S1`.
        """
        state = [x] if start == 0 else self._unpack(x, start)
        state, feats = run_steps(self.encoder_steps()[start:], state, blocks, getattr(self, "decoder_extension", None))
        s0, s1, z = state
        feats[HIGH_RES_S0], feats[HIGH_RES_S1] = s0, s1
        self._last_high_res = (s0, s1)
        return z, feats

    def encode_prefix(
        self, x: torch.Tensor, stop: int, blocks: tuple[int, ...] = ()
    ) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
        """The state after ``stop`` steps packed as one (B, N) tensor (the image itself for ``stop == 0``)."""
        state, feats = run_steps(self.encoder_steps()[:stop], [x], blocks)
        return (x if stop == 0 else self._pack(state)), feats

    def _high_res(self, embedding: torch.Tensor, blocks: Optional[dict[int, torch.Tensor]]) -> list[torch.Tensor]:
        last, self._last_high_res = self._last_high_res, None  # a recorded batch serves one decode at most
        if blocks and HIGH_RES_S0 in blocks and HIGH_RES_S1 in blocks:
            return [blocks[HIGH_RES_S0], blocks[HIGH_RES_S1]]
        b, _, h, w = embedding.shape
        if last is None or last[0].shape[0] != b or last[0].shape[-2:] != (4 * h, 4 * w):
            raise ValueError(
                f"{self.name}: the SAM2 decoder needs the high-resolution features of the same batch: pass the "
                "feature dict returned by encode() to decode(..., blocks), or call encode() right before decode()"
            )
        return list(last)

    # ------------------------------------------------------------------ decoder hooks (Backbone.decode)
    # decode(embedding, prompts, blocks): ``blocks`` is the feature dict from :meth:`encode` and must hold
    # the high-resolution maps, unless ``encode`` ran on this batch right before.
    def encode_prompts(self, prompts: Prompts) -> tuple[torch.Tensor, torch.Tensor]:
        """SAM2ImagePredictor's prompt encoding: a box is two corner points labelled 2 and 3, before the
        clicks."""
        coords, labels = prompts.points, prompts.labels
        if prompts.boxes is not None:
            box = prompts.boxes.reshape(-1, 2, 2)
            box_labels = torch.tensor([2, 3], dtype=torch.int, device=box.device).expand(box.shape[0], 2)
            coords = box if coords is None else torch.cat([box, coords], dim=1)
            labels = box_labels if labels is None else torch.cat([box_labels, labels.to(torch.int)], dim=1)
        if coords is None:  # promptless, as SAM2ImagePredictor without prompts: the no-prompt embeddings
            return self.prompt_encoder(points=None, boxes=None, masks=None)
        return self.prompt_encoder(points=(coords, labels), boxes=None, masks=None)

    def leading_tokens(self) -> list[torch.Tensor]:
        """The object-score token comes first when the decoder predicts object scores (z_m = hs[:, 2])."""
        dec = self.mask_decoder
        return [dec.obj_score_token.weight] if dec.pred_obj_scores else []

    def upscale_features(
        self, src: torch.Tensor, embedding: torch.Tensor, blocks: Optional[dict[int, torch.Tensor]]
    ) -> torch.Tensor:
        """SAM2's upscaling adds the encoder's high-resolution maps after each transposed convolution."""
        feat_s0, feat_s1 = self._high_res(embedding, blocks)
        dc1, ln1, act1, dc2, act2 = self.mask_decoder.output_upscaling
        upscaled = act1(ln1(dc1(src) + feat_s1))
        return act2(dc2(upscaled) + feat_s0)


# ---------------------------------------------------------------------------------------------- builders
def sam2_model_config(name: str) -> Any:
    """The ``model`` node of the package's sam2.1 config for a registered ``sam2_hiera_*`` name."""
    from omegaconf import OmegaConf

    try:
        package = importlib.resources.files("sam2")
    except ModuleNotFoundError:
        raise ConfigError(
            f"backbone {name} needs the official sam2 package: run ./install.sh (it installs sam2==1.1.0 "
            "without compiling CUDA)"
        ) from None
    path = package / "configs" / "sam2.1" / CONFIG_FILES[name]
    return OmegaConf.load(str(path)).model


def instantiate_sam2(model_cfg: Any, img_size: int) -> nn.Module:
    """``SAM2Base`` from a ``model`` config node, for ``img_size`` input (random weights)."""
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    cfg = OmegaConf.merge(model_cfg, {"image_size": img_size})
    return instantiate(cfg, _recursive_=True)


def wrap_sam2(
    model: nn.Module, name: str, img_size: int, official: Optional[Callable[[], nn.Module]] = None
) -> Sam2Hiera:
    """The image-path :class:`Sam2Hiera` over a (loaded) ``SAM2Base``; its video modules are dropped.
    ``official`` rebuilds a fresh ``SAM2Base`` of the variant for export (None: the package config of
    ``name``)."""
    backbone = Sam2Hiera(
        model.image_encoder, model.sam_prompt_encoder, model.sam_mask_decoder, model.no_mem_embed, img_size, official
    )
    backbone.name = name
    return backbone


def _sam2_builder(name: str):
    def build(cfg: BackboneConfig) -> Backbone:
        size = check_img_size(cfg, native=1024, multiple=32)
        model = instantiate_sam2(sam2_model_config(name), size)
        path = resolve_checkpoint(cfg)
        backbone = wrap_sam2(model, cfg.name, size)  # shares the modules, so loading into model loads it
        if path:
            attach_weights(backbone, path, key="model", into=model)
        return backbone

    return build


for _name in CONFIG_FILES:
    register_backbone(_name, Sam2Hiera.family)(_sam2_builder(_name))
