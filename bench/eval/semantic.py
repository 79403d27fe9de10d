"""Multi-class semantic-segmentation metrics: per-image rows and dataset-level values, under two definitions.

Inputs (:meth:`SemanticAccumulator.add`): ``pred`` is an ``HxW`` integer map of class ids ``0..K-1`` (the
argmax over the class logits already taken) and ``gt`` an ``HxW`` integer label map (usually ``uint8``) whose
values are class ids ``0..K-1`` or ``ignore_index``. Anything else (a shape mismatch, a non-2-D or empty
array, a non-integer dtype, a ``pred`` value outside ``0..K-1``, a ``gt`` value that is neither a class id nor
``ignore_index``) raises ``ValueError``. ``K = len(classes) >= 2``, class names unique, and ``ignore_index``
must not be a class id.

Keys of every row and of :meth:`SemanticAccumulator.mean`: ``acc`` (pixel accuracy), ``miou`` and one
``iou_<class>`` per class, in class order.

Definitions:

* ``clean`` (the suite's): pixels whose ``gt`` is ``ignore_index`` take no part anywhere. For class ``c``,
  over the labelled pixels, ``I_c = #(pred == c & gt == c)``, ``U_c = #(pred == c | gt == c)``,
  ``IoU_c = I_c / U_c``, **NaN** when ``U_c = 0`` (the class is in neither prediction nor GT);
  ``miou = nanmean_c IoU_c`` (NaN if every class is NaN); ``acc = #(pred == gt) / #labelled`` (NaN if no pixel
  is labelled). A per-image row applies these formulas to the one image (so a class absent from the image is
  NaN and left out of its ``miou``).

* ``convlora``: exactly what Conv-LoRA's evaluation computes (autogluon
  ``multimodal/src/autogluon/multimodal/optim/metrics/semantic_seg_metrics.py``, class ``Multiclass_IoU``,
  itself Trans2Seg's ``segmentron/utils/score.py``)::

      predict = argmax + 1;  target = gt + 1
      predict = predict * (target > 0)
      intersection = predict * (predict == target)
      area_inter = histc(intersection, bins=K, min=1, max=K)   # likewise area_pred (predict), area_lab (target)
      union = area_pred + area_lab - area_inter                # summed over the dataset
      IoU = inter / (2.220446049250313e-16 + union);  miou = IoU.mean()  # over ALL K classes

  and pixel accuracy as Trans2Seg's ``batch_pix_accuracy`` with the same ``+1`` convention:
  ``labeled = sum(target > 0)``, ``correct = sum((predict == target) * (target > 0))``,
  ``acc = correct / (eps + labeled)``. ``torch.histc(min=1, max=K, bins=K)`` puts the integer ``v`` in bin
  ``v - 1`` for ``1 <= v <= K`` and drops every value outside ``[1, K]``; this is restated with
  ``np.bincount`` (checked against ``torch.histc`` in the tests). Quirks, reproduced on purpose:

  - **Ignored pixels are not masked.** ``target > 0`` is meant to drop ignored pixels, but it only works for
    ``ignore_index = -1``. With ``ignore_index = 255`` the target is 256 > 0, so ignored pixels keep their
    predicted class: they count in ``area_pred`` and so **inflate the union** of the predicted class, while
    256 lies outside histc's ``[1, K]`` range, so they are in no ``area_lab`` and no ``area_inter``.
  - **Ignored pixels count in the accuracy's denominator** (``target = 256 > 0`` is "labeled") and are
    never correct (``predict <= K < 256``): accuracy is lowered by the fraction of ignored pixels.
  - **A class absent everywhere scores 0**, not NaN (``0 / (eps + 0)``), and still counts in the ``miou``
    mean over all K classes; the same holds for a class absent from one image in that image's row.
  - An image (or dataset) without any pixel has ``acc = 0`` (``0 / eps``), not NaN.

  Per-image rows apply the same formulas to the one image (the code itself reports only the dataset value).
  Counts are int64 and ratios float64 here; the original accumulates histc's float32 counts, which is exact
  only while a bin stays below 2**24 pixels.

Aggregation (both definitions): :meth:`SemanticAccumulator.mean` sums the intersections, unions, correct and
labelled pixel counts over the dataset and takes the ratios once; this is **not** the mean of the per-image
values (rows are for inspection; a class frequent in large images weighs more in the dataset value).
"""

from __future__ import annotations

import logging

import numpy as np

logger = logging.getLogger(__name__)

DEFINITIONS: tuple[str, ...] = ("clean", "convlora")
CONVLORA_EPS = 2.220446049250313e-16  # the constant in autogluon's Multiclass_IoU.compute (= np.spacing(1))


def _histc(values: np.ndarray, k: int) -> np.ndarray:
    """``torch.histc(values, bins=k, min=1, max=k)`` for integer ``values`` and ``k >= 2``, as int64 counts:
    ``v`` in ``1..k`` goes to bin ``v - 1``, anything outside ``[1, k]`` is dropped."""
    inside = values[(values >= 1) & (values <= k)]
    return np.bincount(inside - 1, minlength=k).astype(np.int64)


class SemanticAccumulator:
    """Scores multi-class label maps image by image and aggregates them over a dataset (see module docstring).

    Args:
        classes: Class names, ``K = len(classes) >= 2``; class id ``c`` is ``classes[c]``; row keys
            ``iou_<name>``.
        ignore_index: GT value of unlabelled pixels; must not be a class id.
        definition: ``"clean"`` or ``"convlora"``.

    Attributes:
        rows: One dict per image, ``{"name": name, "acc": ..., "miou": ..., "iou_<class>": ...}``, in order.
    """

    def __init__(self, classes: tuple[str, ...], ignore_index: int = 255, definition: str = "clean") -> None:
        classes = tuple(classes)
        if definition not in DEFINITIONS:
            raise ValueError(f"unknown semantic metric definition {definition!r}; expected one of {DEFINITIONS}")
        if len(classes) < 2:
            raise ValueError(f"semantic metrics need at least 2 classes, got {classes!r}")
        if len(set(classes)) != len(classes):
            raise ValueError(f"class names must be unique, got {classes!r}")
        ignore_index = int(ignore_index)
        if 0 <= ignore_index < len(classes):
            raise ValueError(f"ignore_index {ignore_index} is a class id (classes are 0..{len(classes) - 1})")
        self.classes = classes
        self.ignore_index = ignore_index
        self.definition = definition
        self.rows: list[dict] = []
        k = len(classes)
        self._inter = np.zeros(k, dtype=np.int64)
        self._union = np.zeros(k, dtype=np.int64)
        self._correct = 0
        self._labeled = 0

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def keys(self) -> tuple[str, ...]:
        """The keys of every row (besides ``name``) and of :meth:`mean`, in order."""
        return ("acc", "miou", *(f"iou_{c}" for c in self.classes))

    def _validate(self, pred: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        pred, gt = np.asarray(pred), np.asarray(gt)
        if pred.shape != gt.shape:
            raise ValueError(f"shape mismatch: pred has shape {pred.shape} but gt has shape {gt.shape}")
        if pred.ndim != 2 or pred.size == 0:
            raise ValueError(f"pred and gt must be non-empty 2-D (HxW) arrays, got shape {pred.shape}")
        for label, array in (("pred", pred), ("gt", gt)):
            if not np.issubdtype(array.dtype, np.integer):
                raise ValueError(f"{label} must be an integer class-id map, got dtype {array.dtype}")
        k = len(self.classes)
        pred = pred.astype(np.int64)
        gt = gt.astype(np.int64)
        lo, hi = int(pred.min()), int(pred.max())
        if lo < 0 or hi >= k:
            raise ValueError(
                f"pred values must be class ids in 0..{k - 1} (the argmax over {k} classes), got range [{lo}, {hi}]"
            )
        bad = (gt < 0) | (gt >= k)
        bad &= gt != self.ignore_index
        if bad.any():
            raise ValueError(
                f"gt values must be class ids in 0..{k - 1} or ignore_index {self.ignore_index}, "
                f"got {np.unique(gt[bad])[:5].tolist()}"
            )
        return pred, gt

    def _counts(self, pred: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray, int, int]:
        """``(intersections, unions, correct, labeled)`` of one image under the definition."""
        k = len(self.classes)
        if self.definition == "clean":
            keep = gt != self.ignore_index
            p, g = pred[keep], gt[keep]
            area_inter = np.bincount(p[p == g], minlength=k)
            union = np.bincount(p, minlength=k) + np.bincount(g, minlength=k) - area_inter
            return area_inter, union, int(np.count_nonzero(p == g)), int(p.size)
        # convlora: autogluon's Multiclass_IoU.batch_intersection_union, literally (see module docstring).
        target = gt + 1
        predict = (pred + 1) * (target > 0)
        intersection = predict * (predict == target)
        area_inter = _histc(intersection, k)
        union = _histc(predict, k) + _histc(target, k) - area_inter
        labeled = int(np.count_nonzero(target > 0))
        correct = int(np.count_nonzero((predict == target) & (target > 0)))
        return area_inter, union, correct, labeled

    def _scores(self, inter: np.ndarray, union: np.ndarray, correct: int, labeled: int) -> dict[str, float]:
        inter, union = inter.astype(np.float64), union.astype(np.float64)
        if self.definition == "clean":
            iou = np.where(union > 0, inter / np.maximum(union, 1), np.nan)
            miou = float(np.nanmean(iou)) if np.any(~np.isnan(iou)) else float("nan")
            acc = correct / labeled if labeled else float("nan")
        else:
            iou = inter / (CONVLORA_EPS + union)
            miou = float(iou.mean())
            acc = correct / (CONVLORA_EPS + labeled)
        return {"acc": float(acc), "miou": miou, **{f"iou_{c}": float(v) for c, v in zip(self.classes, iou)}}

    def add(self, name: str, pred: np.ndarray, gt: np.ndarray) -> dict[str, float]:
        """Score one image, keep its row and add its counts to the dataset totals.

        Args:
            name: Image identifier stored in the row under ``"name"``.
            pred: ``HxW`` integer class ids ``0..K-1``.
            gt: ``HxW`` integer label map (class ids or ``ignore_index``).

        Returns:
            The image's scores (without ``"name"``).

        Raises:
            ValueError: On invalid inputs (see module docstring).
        """
        pred, gt = self._validate(pred, gt)
        inter, union, correct, labeled = self._counts(pred, gt)
        scores = self._scores(inter, union, correct, labeled)
        if any(row["name"] == name for row in self.rows):
            logger.warning("image name %r added twice to the semantic accumulator", name)
        self.rows.append({"name": name, **scores})
        self._inter += inter
        self._union += union
        self._correct += correct
        self._labeled += labeled
        return scores

    def mean(self) -> dict[str, float]:
        """Dataset-level values from the intersections, unions and pixel counts summed over all images.

        Raises:
            ValueError: If no image has been added.
        """
        if not self.rows:
            raise ValueError("no images were added to the SemanticAccumulator")
        return self._scores(self._inter, self._union, self._correct, self._labeled)
