"""The ``semantic`` task: one label map per image, promptless, every class at once.

Two protocols, two heads (``task.head=auto`` takes the protocol's, :attr:`Protocol.semantic_head`):

* ``protocol=convlora`` → ``queries``: AutoMM's ``SAMForSemanticSegmentation`` as the Conv-LoRA paper's
  Trans10K-v2 table ran it (:class:`~bench.tasks.heads.QueriesHead`, the Mask2Former loss summed unweighted,
  ``m2f_sum``), with ``task.queries`` mask tokens (10 by default: AutoMM's multi-class test; [I] for the paper).
* ``protocol=clean`` → ``per_class``: SAMed's one-token-per-class head with CE + Dice
  (:class:`~bench.tasks.heads.PerClassHead`): no matching, no sampled points, a deterministic loss; chosen as
  the suite's clean alternative because it is the standard multi-class SAM fine-tuning (SAMed, and the
  nnU-Net-style loss) and needs no assumption about the number of queries.

Training items carry the label map resized into the model-input frame with nearest neighbours, padding set to
the ignore index (AutoMM's ``resize_gt_to_square`` under the square preprocessing). Evaluation scores the argmax
label map with :class:`~bench.eval.semantic.SemanticAccumulator` under both definitions (``clean``; ``convlora``
= autogluon's ``Multiclass_IoU`` and Trans2Seg's pixel accuracy), at the original resolution or, with
``eval.resolution=input``, in the input frame against the nearest-resized label map (as AutoMM scores).
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Optional

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from bench.backbones import Backbone, Prompts
from bench.config import ConfigError, TrainConfig
from bench.config.protocols import get_protocol
from bench.contracts.dataset import SegmentationDataset
from bench.contracts.distill import Features
from bench.data.batches import collate
from bench.data.prompts import stable_seed
from bench.eval.evaluate import merge_rows
from bench.eval.semantic import SemanticAccumulator
from bench.hardware.accel import autocast_for, images_to
from bench.tasks.base import EvalSettings, Evaluation, Task, TaskError, register_task, teacher_features
from bench.tasks.heads import PerClassHead, QueriesHead, set_mask_tokens
from bench.tasks.losses import ce_dice_terms, m2f_terms

log = logging.getLogger(__name__)

HEAD_LOSSES = {"queries": ("m2f_sum", "m2f_weighted"), "per_class": ("ce_dice",)}


def resize_labels(labels: np.ndarray, backbone: Backbone, ignore_index: int) -> np.ndarray:
    """(H, W) uint8 label map → (S, S) int64 in the model-input frame: nearest resize, padding = ignore."""
    h, w = backbone.resized_shape(*labels.shape)
    resized = np.asarray(Image.fromarray(labels).resize((w, h), Image.NEAREST), dtype=np.int64)
    out = np.full((backbone.img_size, backbone.img_size), ignore_index, dtype=np.int64)
    out[:h, :w] = resized
    return out


class LabelMapItems(Dataset):
    """Preprocessed semantic samples: ``image`` (3, S, S), ``target`` (S, S) int64, ``index``, ``name``, ``size``,
    ``epoch`` (the loss's sampling seed), ``valid``; evaluation items also carry ``gt`` (H, W) uint8.
    ``train.hflip`` flips training samples with the binary path's seeded draw."""

    def __init__(
        self, dataset: SegmentationDataset, backbone: Backbone, seed: int, *, train: bool, hflip: bool = False
    ) -> None:
        self.dataset = dataset
        self.backbone = backbone
        self.seed = seed
        self.train = train
        self.hflip = hflip and train
        self.ignore_index = dataset.info.ignore_index
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict[str, Any]:
        sample = self.dataset[index]
        image, labels = sample["image"], sample["labels"]
        if self.hflip and np.random.default_rng(stable_seed(self.seed, self.epoch, index, "hflip")).random() < 0.5:
            image, labels = np.ascontiguousarray(image[:, ::-1]), np.ascontiguousarray(labels[:, ::-1])
        item = {
            "image": torch.from_numpy(self.backbone.preprocess_image(image)),
            "target": torch.from_numpy(resize_labels(labels, self.backbone, self.ignore_index)),
            "valid": True,
            "index": index,
            "epoch": self.epoch,
            "name": sample["name"],
            "size": torch.tensor(labels.shape),
        }
        if not self.train:
            item["gt"] = labels
        return item


@register_task
class SemanticTask(Task):
    name = "semantic"
    selection_metric = "miou"
    definitions = ("clean", "convlora")

    def __init__(self, info: Any, run: Any) -> None:
        super().__init__(info, run)
        protocol = get_protocol(run.protocol)
        self.head_kind = protocol.semantic_head if run.task.head == "auto" else run.task.head
        self.queries = run.task.queries or protocol.semantic_queries
        loss = run.task.loss if run.task.loss != "auto" else HEAD_LOSSES[self.head_kind][0]
        if loss not in HEAD_LOSSES[self.head_kind]:
            raise ConfigError(
                f"task.loss={loss} does not fit task.head={self.head_kind} "
                f"(valid: {', '.join(('auto', *HEAD_LOSSES[self.head_kind]))})"
            )
        self.loss = loss
        self.num_classes = info.num_classes
        self.ignore_index = info.ignore_index

    @property
    def num_tokens(self) -> int:
        return self.queries if self.head_kind == "queries" else self.num_classes

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "head": self.head_kind, "loss": self.loss, "mask_tokens": self.num_tokens}

    # ------------------------------------------------------------------ model
    def prepare_student(self, student: Backbone) -> None:
        set_mask_tokens(student, self.num_tokens)

    def attach_head(self, student: Backbone) -> None:
        ext = student.decoder_extension
        if ext is not None and _overrides_adapt_logits(ext):
            raise TaskError(
                f"the PEFT method's decoder extension {type(ext).__name__} rewrites SAM's one-mask logits "
                "(adapt_logits); it has no multi-class form: use another method for semantic datasets"
            )
        head: nn.Module
        if self.head_kind == "queries":
            head = QueriesHead(student.embed_dim, self.num_classes)
        else:
            head = PerClassHead(self.num_classes)
        device = next(student.mask_decoder.parameters()).device
        student.task_head = head.to(device)

    # ------------------------------------------------------------------ data
    def dataset(self, split_set: SegmentationDataset, backbone: Backbone, seed: int, *, train: bool) -> Dataset:
        return LabelMapItems(split_set, backbone, seed, train=train, hflip=self.run.train.hflip)

    def collate(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        return collate(items)

    # ------------------------------------------------------------------ forward
    def predict(
        self, backbone: Backbone, z: torch.Tensor, blocks: dict[int, torch.Tensor]
    ) -> tuple[torch.Tensor, Optional[torch.Tensor], Any]:
        """Input-frame mask logits (B, Q, S, S), class logits (B, Q, K + 1) or None, and the decoder's output."""
        out = backbone.decode_queries(z, blocks)
        head = backbone.task_head
        return backbone.upscale(out.masks), head.class_logits(out.tokens), out

    def loss_terms(
        self, parts: Any, batch: dict[str, Any], use_box: Optional[bool], device: torch.device, cfg: TrainConfig
    ) -> tuple[dict[str, torch.Tensor], Features, Optional[Features]]:
        images = images_to(batch["image"], device, cfg.channels_last)
        target = batch["target"].to(device, non_blocking=True)
        z, blocks = parts.student_encoder(images)
        masks, class_logits, out = self.predict(parts.student, z, blocks)
        if self.head_kind == "queries":
            seed = stable_seed("m2f", self.run.seed, *batch["epoch"][:1], *batch["index"])
            terms = m2f_terms(masks, class_logits, target, self.ignore_index, self.loss == "m2f_weighted", seed)
        else:
            terms = ce_dice_terms(masks, target, self.ignore_index)
        b = z.shape[0]
        student = Features(out.embedding, out.tokens[:, 0], out.masks[:, :1], out.masks.new_zeros(b, 1), blocks)
        return terms, student, teacher_features(parts, images, Prompts())

    # ------------------------------------------------------------------ evaluation
    @torch.no_grad()
    def evaluate(
        self,
        backbone: Backbone,
        encoder: Callable[[torch.Tensor], tuple[torch.Tensor, dict[int, torch.Tensor]]],
        data: Dataset,
        device: torch.device,
        settings: EvalSettings,
    ) -> Evaluation:
        backbone.eval()
        accs = {d: SemanticAccumulator(self.info.classes, self.ignore_index, d) for d in self.definitions}
        loader = DataLoader(data, batch_size=settings.batch_size, shuffle=False, collate_fn=self.collate)
        for batch in tqdm(loader, desc=settings.desc, leave=False, dynamic_ncols=True):
            images = images_to(batch["image"], device, settings.channels_last)
            with autocast_for(device, settings.precision):
                z, blocks = encoder(images)
                out = backbone.decode_queries(z, blocks)
                class_logits = backbone.task_head.class_logits(out.tokens)
            for i, gt in enumerate(batch["gt"]):
                pred, gt = self.label_map(
                    backbone, out.masks[i : i + 1], class_logits, i, gt, batch, settings.resolution
                )
                for acc in accs.values():
                    acc.add(batch["name"][i], pred, gt)
        return merge_rows(accs, self.definitions[0]), {d: acc.mean() for d, acc in accs.items()}

    def label_map(
        self,
        backbone: Backbone,
        masks: torch.Tensor,
        class_logits: Optional[torch.Tensor],
        i: int,
        gt: np.ndarray,
        batch: dict[str, Any],
        resolution: str,
    ) -> tuple[np.ndarray, np.ndarray]:
        """The predicted label map of image ``i`` and the GT it is scored against, in the ``resolution`` frame."""
        if resolution == "input":
            h, w = backbone.resized_shape(*gt.shape)
            up = backbone.upscale(masks.float())[..., :h, :w]
            gt = batch["target"][i, :h, :w].numpy()
        else:
            up = backbone.postprocess(masks.float(), tuple(gt.shape))
        cls = class_logits[i : i + 1] if class_logits is not None else None
        scores = backbone.task_head.scores(up, cls)
        return scores[0].argmax(0).cpu().numpy(), gt


def _overrides_adapt_logits(ext: Any) -> bool:
    from bench.contracts.decoder import DecoderExtension

    return type(ext).adapt_logits is not DecoderExtension.adapt_logits
