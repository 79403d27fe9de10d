"""The ``instances`` task: COCO-style objects, one prompt and one binary mask per object.

Each image is encoded **once**; its embedding (and the block outputs a PEFT method asked for) is indexed by the
objects' ``owner`` to one row per object, and SAM's one-mask decoder runs once per (object, prompt) pair, as the
binary path does per image. Prompts are drawn as :class:`~bench.data.batches.PromptedDataset` draws them:
training boxes jittered (``train.box_jitter``, ``train.box_jitter_form``) and ``train.num_points`` points
sampled from generators seeded by (run seed, epoch, image index, object k); evaluation prompts fixed per
(image name, k) with the ``eval.*`` settings (``eval.box_jitter``, the points of
:func:`~bench.data.batches.eval_points_split`). The loss is the binary structure loss over the objects.

Evaluation scores every object's logits with the binary :class:`~bench.eval.evaluate.Scorer` (every
definition); a row per object (``name = <image>#<k>``, with ``image`` and ``category`` columns). The means
by definition are means over objects; the clean definition adds ``iou_<class>`` (the mean IoU of that
category's objects, for the categories that have objects) and ``miou`` (their mean).

Promptless decoding (``train.prompt=none`` / ``eval.prompt=none``, the ``convlora`` protocol) has no per-object
form and is refused when the task is built.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Optional

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from bench.backbones import Backbone, Prompts
from bench.config import ConfigError, RunConfig, TrainConfig
from bench.contracts.dataset import DatasetInfo, SegmentationDataset
from bench.contracts.distill import Features
from bench.data.batches import PromptDraw, batch_prompts, eval_points_split
from bench.data.prompts import (
    EmptyMaskError,
    stable_seed,
    to_input_frame,
)
from bench.eval.evaluate import Scorer, definitions
from bench.eval.metrics import BASE_DEFINITION
from bench.hardware.accel import autocast_for, images_to
from bench.tasks.base import EvalSettings, Evaluation, Task, register_task
from bench.tasks.structure import structure_loss

log = logging.getLogger(__name__)

OBJECT_KEYS = ("box", "points", "labels", "target", "category", "object")  # concatenated over a batch


class ObjectItems(Dataset):
    """Preprocessed instance samples, one item per image.

    Each item: ``image`` (3, S, S), ``valid`` (True), ``index``, ``name``, ``size`` (H, W), ``epoch``, and per
    object (K of them, possibly 0): ``box`` (K, 4), ``points`` (K, P, 2), ``labels`` (K, P), ``target``
    (K, S, S) float32 in the model-input frame, ``category`` (K,), ``object`` (K,) its index in the image's
    annotations; evaluation items also carry ``gt``, the K original (H, W) uint8 masks.
    """

    def __init__(
        self,
        dataset: SegmentationDataset,
        backbone: Backbone,
        seed: int,
        *,
        train: bool,
        draw: PromptDraw,
        hflip: bool = False,
    ) -> None:
        self.dataset = dataset
        self.backbone = backbone
        self.seed = seed
        self.train = train
        self.draw = draw  # how each object's box and points are drawn (the binary items' draw)
        self.num_pos, self.num_neg = draw.num_pos, draw.num_neg
        self.hflip = hflip and train
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.dataset)

    def _rng(self, index: int, name: str, k: int) -> np.random.Generator:
        if self.train:
            return np.random.default_rng(stable_seed(self.seed, self.epoch, index, k))
        return np.random.default_rng(stable_seed("eval", name, k))  # identical for every method and seed

    def __getitem__(self, index: int) -> dict[str, Any]:
        sample = self.dataset[index]
        image, name = sample["image"], sample["name"]
        masks = [inst["mask"] for inst in sample["instances"]]
        if self.hflip and np.random.default_rng(stable_seed(self.seed, self.epoch, index, "hflip")).random() < 0.5:
            image = np.ascontiguousarray(image[:, ::-1])
            masks = [np.ascontiguousarray(m[:, ::-1]) for m in masks]
        size = image.shape[:2]
        resized = self.backbone.resized_shape(*size)
        s, p = self.backbone.img_size, self.num_pos + self.num_neg
        boxes, points, labels, targets, cats, ks, gts = [], [], [], [], [], [], []
        for k, (mask, inst) in enumerate(zip(masks, sample["instances"])):
            try:
                box, pts, lab = self.draw(mask, self._rng(index, name, k))
            except EmptyMaskError:
                log.warning("%s: object %d has an empty mask; it is left out", name, k)
                continue
            boxes.append(to_input_frame(box, size, resized))
            points.append(to_input_frame(pts, size, resized))
            labels.append(lab)
            targets.append(self.backbone.preprocess_mask(mask))
            cats.append(int(inst["category"]))
            ks.append(k)
            gts.append(mask)
        item: dict[str, Any] = {
            "image": torch.from_numpy(self.backbone.preprocess_image(image)),
            "valid": True,
            "index": index,
            "name": name,
            "size": torch.tensor(size),
            "epoch": self.epoch,
            "box": _stacked(boxes, (4,), np.float32),
            "points": _stacked(points, (p, 2), np.float32),
            "labels": _stacked(labels, (p,), np.int64),
            "target": _stacked(targets, (s, s), np.float32),
            "category": torch.tensor(cats, dtype=torch.long),
            "object": torch.tensor(ks, dtype=torch.long),
        }
        if not self.train:
            item["gt"] = gts
        return item


def _stacked(rows: list[np.ndarray], shape: tuple[int, ...], dtype: type) -> torch.Tensor:
    """``rows`` stacked as (K, *shape) ``dtype``; (0, *shape) for an image without objects."""
    if not rows:
        return torch.from_numpy(np.zeros((0, *shape), dtype))
    return torch.from_numpy(np.stack(rows).astype(dtype, copy=False))


def collate_objects(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Images stacked (B, 3, S, S), ``valid`` (B,); per-image ``name``, ``index``, ``size``, ``epoch`` lists;
    objects concatenated over the batch (N rows) with ``owner`` (N,), the index of each object's image;
    ``gt`` (evaluation) is the list of the N original masks."""
    out: dict[str, Any] = {
        "image": torch.stack([it["image"] for it in items]),
        "valid": torch.ones(len(items), dtype=torch.bool),
        **{key: [it[key] for it in items] for key in ("name", "index", "size", "epoch")},
        **{key: torch.cat([it[key] for it in items]) for key in OBJECT_KEYS},
        "owner": torch.cat([torch.full((len(it["category"]),), i, dtype=torch.long) for i, it in enumerate(items)]),
    }
    if "gt" in items[0]:
        out["gt"] = [m for it in items for m in it["gt"]]
    return out


def per_object(
    z: torch.Tensor, blocks: dict[int, torch.Tensor], owner: torch.Tensor
) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
    """One embedding row (and block-output row) per object: the rows of its image."""
    owner = owner.to(z.device)
    return z[owner], {k: v[owner] for k, v in blocks.items()}


def teacher_object_features(
    parts: Any, images: torch.Tensor, owner: torch.Tensor, prompts: Prompts
) -> Optional[Features]:
    """The frozen teacher's per-object features (no grad), its encoder run once per image; None without a
    distiller or for a batch without objects (no row to distil)."""
    if parts.distiller is None or len(owner) == 0:
        return None
    assert parts.teacher is not None and parts.teacher_encoder is not None
    with torch.no_grad():
        zt, tblocks = parts.teacher_encoder(images)
        zo, bo = per_object(zt, tblocks, owner)
        tout = parts.teacher.decode(zo, prompts, bo)
    return Features(zo, tout.mask_token, tout.logits, tout.iou, bo)


@register_task
class InstancesTask(Task):
    name = "instances"
    selection_metric = "iou"

    def __init__(self, info: DatasetInfo, run: RunConfig) -> None:
        super().__init__(info, run)
        self.definitions = tuple(definitions())  # every binary definition, the base one first
        self.prompt = run.eval.prompt or info.eval_prompt
        if run.train.prompt == "none" or self.prompt == "none":
            raise ConfigError(
                f"the instances task (dataset {run.dataset}) prompts every object with its box or points; "
                f"promptless decoding (train.prompt={run.train.prompt}, eval prompt {self.prompt}"
                f"{', protocol=' + run.protocol if run.protocol else ''}) has no per-object form: "
                "use train.prompt=mixed and eval.prompt=box|points (e.g. protocol=clean)"
            )
        if run.train.grad_accumulation > 1:
            raise ConfigError(
                "train.grad_accumulation > 1 cuts batches by image, not by object; the instances task "
                "needs train.grad_accumulation=1"
            )

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "prompt": self.prompt, "loss": "structure_loss per object"}

    # ------------------------------------------------------------------ data
    def dataset(self, split_set: SegmentationDataset, backbone: Backbone, seed: int, *, train: bool) -> Dataset:
        if train:
            t = self.run.train
            return ObjectItems(
                split_set,
                backbone,
                seed,
                train=True,
                draw=PromptDraw(backbone.img_size, t.box_jitter, t.num_points, 0, t.box_jitter_form),
                hflip=t.hflip,
            )
        e = self.run.eval
        n_pos, n_neg = eval_points_split(e.num_points or self.info.eval_points)
        return ObjectItems(
            split_set,
            backbone,
            seed,
            train=False,
            draw=PromptDraw(backbone.img_size, e.box_jitter, n_pos, n_neg, e.box_jitter_form),
        )

    def collate(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        return collate_objects(items)

    # ------------------------------------------------------------------ training
    def loss_terms(
        self, parts: Any, batch: dict[str, Any], use_box: Optional[bool], device: torch.device, cfg: TrainConfig
    ) -> tuple[dict[str, torch.Tensor], Features, Optional[Features]]:
        if use_box is None:
            raise ConfigError("the instances task needs box or point prompts (got a promptless batch)")
        images = images_to(batch["image"], device, cfg.channels_last)
        owner = batch["owner"].to(device)
        prompts = batch_prompts(batch, use_box).to(device)
        z, blocks = parts.student_encoder(images)
        zo, bo = per_object(z, blocks, owner)
        out = parts.student.decode(zo, prompts, bo)
        embedding = out.embedding if out.embedding is not None else zo
        student = Features(embedding, out.mask_token, out.logits, out.iou, bo)
        if len(owner) == 0:  # no object in the batch: a zero loss that still reaches the graph
            seg = z.float().sum() * 0
        else:
            target = batch["target"].to(device, non_blocking=True)[:, None]
            seg = structure_loss(parts.student.upscale(out.logits), target, cfg.structure_loss)
        return {"seg": seg}, student, teacher_object_features(parts, images, owner, prompts)

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
        scorer = Scorer()
        meta: list[tuple[str, int]] = []  # (image name, category) per scored object
        use_box = self.prompt == "box"
        loader = DataLoader(data, batch_size=settings.batch_size, shuffle=False, collate_fn=self.collate)
        for batch in tqdm(loader, desc=settings.desc, leave=False, dynamic_ncols=True):
            if len(batch["owner"]) == 0:
                continue
            logits = self.object_logits(backbone, encoder, batch, use_box, device, settings)
            for j, gt in enumerate(batch["gt"]):
                image = batch["name"][int(batch["owner"][j])]
                scored, gt = self.frame(backbone, logits[j : j + 1], gt, batch["target"][j], settings.resolution)
                scorer.add(f"{image}#{int(batch['object'][j])}", scored[0, 0].cpu().numpy().astype("float64"), gt)
                meta.append((image, int(batch["category"][j])))
        if not meta:
            raise ValueError(f"{settings.desc}: no object to score (every image of the split has no annotation)")
        rows = [
            {"name": row["name"], "image": image, "category": self.info.classes[cat], **row}
            for row, (image, cat) in zip(scorer.rows(), meta)
        ]
        means = scorer.means()
        means[BASE_DEFINITION].update(self.category_means(scorer.accs[BASE_DEFINITION].rows, meta))
        return rows, means

    def object_logits(
        self,
        backbone: Backbone,
        encoder: Callable[[torch.Tensor], tuple[torch.Tensor, dict[int, torch.Tensor]]],
        batch: dict[str, Any],
        use_box: bool,
        device: torch.device,
        settings: EvalSettings,
    ) -> torch.Tensor:
        """Low-resolution logits (N, 1, h', w') of the batch's objects, every image encoded once."""
        images = images_to(batch["image"], device, settings.channels_last)
        with autocast_for(device, settings.precision):
            z, blocks = encoder(images)
            zo, bo = per_object(z, blocks, batch["owner"])
            out = backbone.decode(zo, batch_prompts(batch, use_box).to(device), bo)
        return out.logits.float()

    @staticmethod
    def frame(
        backbone: Backbone, logits: torch.Tensor, gt: np.ndarray, target: torch.Tensor, resolution: str
    ) -> tuple[torch.Tensor, np.ndarray]:
        """One object's logits and GT in the scoring frame: the original size, or the input frame (``input``)."""
        if resolution == "input":
            h, w = backbone.resized_shape(*gt.shape)
            return backbone.upscale(logits)[..., :h, :w], target[:h, :w].numpy().astype("uint8")
        return backbone.postprocess(logits, tuple(gt.shape)), gt

    def category_means(self, rows: list[dict[str, Any]], meta: list[tuple[str, int]]) -> dict[str, float]:
        """``iou_<class>`` (mean IoU of the class's objects, classes with objects only) and ``miou``."""
        by_cat: dict[int, list[float]] = {}
        for row, (_, cat) in zip(rows, meta):
            by_cat.setdefault(cat, []).append(float(row["iou"]))
        per = {f"iou_{self.info.classes[c]}": float(np.mean(by_cat[c])) for c in sorted(by_cat)}
        return {**per, "miou": float(np.mean(list(per.values())))}
