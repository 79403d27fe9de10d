"""Per-image segmentation metrics at original resolution, and their aggregation over a dataset.

Inputs (every public function): ``prob`` is a float ``HxW`` map in ``[0, 1]`` (the sigmoid of the
model's logits, resized to the original image size) and ``gt`` is a ``HxW`` mask with values in
``{0, 1}`` (uint8 or bool). Anything else (NaN, values outside ``[0, 1]``, a non-binary ``gt``, a
shape mismatch, a non-2-D or empty array) raises ``ValueError``.

Definitions (keys of :data:`METRICS`):

* ``sm``, ``em_adp``, ``em_mean``, ``em_max``, ``wfm``, ``mae`` follow the SOD-toolbox convention
  through ``py_sod_metrics`` 1.6.2 (``Smeasure(alpha=0.5)``, ``Emeasure``, ``WeightedFmeasure(beta=1)``,
  ``MAE``): the prediction is passed as ``uint8(round(prob * 255))`` (``np.rint``, round half to
  even) and the GT as ``uint8`` 0/255, with the library default ``normalize=True``. The library
  therefore **min-max rescales each prediction** (MATLAB ``mapminmax``) before scoring, exactly as the
  MATLAB COD/SOD/polyp toolboxes do; a constant prediction is not rescaled. Empty-GT conventions are
  the library's (e.g. ``wfm = 0`` when the GT has no foreground).

  - ``em_adp``: E-measure at the adaptive threshold ``min(2 * mean(pred), 1)``.
  - ``em_mean``: mean over the 256 thresholds of the E-measure curve.
  - ``em_max``: per image, the max of that image's curve. **Dataset level** (:meth:`MetricAccumulator.mean`)
    it is the max over thresholds of the image-averaged curve, which is what ``Emeasure.get_results()``
    gives and what papers report. This is *not* the mean of the per-image values (max does not
    commute with mean; the mean of per-image maxima is an upper bound of it).
  - All other metrics are plain means of the per-image values, which equal the library's
    ``get_results()`` because the library also averages per image.

* ``iou``, ``dice``, ``ber`` on the binary prediction ``P = prob > 0.5`` (raw ``prob``, *not*
  min-max rescaled) against ``G = gt``:

  - ``iou = |P∩G| / |P∪G|``; ``dice = 2|P∩G| / (|P| + |G|)``. Both are 1.0 when P and G are both
    empty and 0.0 when exactly one is empty.
  - ``ber = 1 - (TPR + TNR) / 2`` (balanced error rate, lower is better). If G has no positives
    ``ber = 1 - TNR``; if G has no negatives ``ber = 1 - TPR``.

  These are computed in numpy: ``py_sod_metrics``' IoU/DICE/BER handlers return 0 for an empty
  union and use ``TPR = 0`` for an empty GT, which contradicts the conventions above. On
  non-degenerate masks they agree with the handlers' ``binary`` results (tested).

* ``bf1_k`` (k = 0, 1, 2, 3): boundary F1 at a tolerance of k pixels, see :func:`boundary_f1`, with
  the same binary prediction ``prob > 0.5``.

Aggregation: :class:`MetricAccumulator` scores each image independently (a fresh ``py_sod_metrics``
object per image, so no state leaks between images) and keeps one row per image.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
from scipy.ndimage import binary_erosion, distance_transform_edt, generate_binary_structure

logger = logging.getLogger(__name__)

BF1_TOLERANCES: tuple[int, ...] = (0, 1, 2, 3)


@dataclass(frozen=True)
class MetricInfo:
    """Display information about one metric.

    Attributes:
        label: Display name for tables, e.g. ``"S_α"``.
        higher_better: Whether a larger value is better.
    """

    label: str
    higher_better: bool


BASE_DEFINITION = "clean"  # the name of these definitions: every run is scored under them (bench.eval.evaluate)

METRICS: dict[str, MetricInfo] = {
    "sm": MetricInfo("S_α", True),
    "em_adp": MetricInfo("E_φ^adp", True),
    "em_mean": MetricInfo("E_φ^mean", True),
    "em_max": MetricInfo("E_φ^max", True),
    "wfm": MetricInfo("F_β^w", True),
    "mae": MetricInfo("MAE", False),
    "iou": MetricInfo("IoU", True),
    "dice": MetricInfo("Dice", True),
    "ber": MetricInfo("BER", False),
    **{f"bf1_{k}": MetricInfo(f"BF1@{k}px", True) for k in BF1_TOLERANCES},
}

SEMANTIC_METRICS: dict[str, MetricInfo] = {"acc": MetricInfo("Acc", True), "miou": MetricInfo("mIoU", True)}
"""Dataset-level metrics of a ``semantic`` task (:mod:`bench.eval.semantic`); per-class IoUs are ``iou_<class>``."""


def metric_info(key: str) -> MetricInfo:
    """Display information of any metric key a run can report: the binary :data:`METRICS`, the semantic
    :data:`SEMANTIC_METRICS` and the per-class ``iou_<class>`` keys; unknown keys raise ``KeyError``."""
    if key in METRICS:
        return METRICS[key]
    if key in SEMANTIC_METRICS:
        return SEMANTIC_METRICS[key]
    if key.startswith("iou_") and len(key) > 4:
        return MetricInfo(f"IoU({key[4:]})", True)
    raise KeyError(f"unknown metric {key!r}")


_FOUR_CONNECTED = generate_binary_structure(2, 1)


def _validate(prob: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Check the inputs and return them as ``(float64 prob, bool gt)``.

    Raises:
        ValueError: On a shape mismatch, a non-2-D or empty array, a non-finite or out-of-range
            ``prob``, or a ``gt`` with values other than 0 and 1.
    """
    prob = np.asarray(prob)
    gt = np.asarray(gt)
    if prob.shape != gt.shape:
        raise ValueError(f"shape mismatch: prob has shape {prob.shape} but gt has shape {gt.shape}")
    if prob.ndim != 2 or prob.size == 0:
        raise ValueError(f"prob and gt must be non-empty 2-D (HxW) arrays, got shape {prob.shape}")
    if not (np.issubdtype(prob.dtype, np.number) or prob.dtype == bool):
        raise ValueError(f"prob must be numeric, got dtype {prob.dtype}")
    prob = prob.astype(np.float64, copy=False)
    if not np.all(np.isfinite(prob)):
        raise ValueError("prob contains NaN or infinite values")
    lo, hi = float(prob.min()), float(prob.max())
    if lo < 0.0 or hi > 1.0:
        raise ValueError(f"prob must lie in [0, 1] (apply a sigmoid to the logits first), got range [{lo}, {hi}]")
    if gt.dtype != bool:
        if not np.issubdtype(gt.dtype, np.number) or not np.all((gt == 0) | (gt == 1)):
            raise ValueError(
                f"gt must contain only 0 and 1 (dtype {gt.dtype}, values {np.unique(gt)[:5]}...); "
                "convert a 0/255 mask with gt > 127"
            )
        gt = gt == 1
    return prob, gt


def _inner_boundary(mask: np.ndarray) -> np.ndarray:
    """Return the 1-px inner contour of a boolean mask.

    A pixel is on the boundary if it is in the mask and one of its 4-neighbours is not. Pixels
    outside the image count as *inside* the mask (``border_value=1``), so the image border never
    creates a boundary: an object cut off by the frame has no contour along the frame.
    """
    eroded = binary_erosion(mask, structure=_FOUR_CONNECTED, border_value=1)
    return mask & ~eroded


def boundary_f1(pred: np.ndarray, gt: np.ndarray, tolerance: int) -> float:
    """Boundary F1 between two binary masks.

    Boundaries are the 1-px inner contours (see :func:`_inner_boundary`: 4-neighbourhood, the image
    border does not count as a boundary). A predicted boundary pixel is correct if a GT boundary
    pixel lies within Euclidean distance ``<= tolerance``; recall is defined symmetrically, and
    ``F1 = 2PR / (P + R)`` (0 if ``P + R = 0``). Both boundaries empty gives 1.0, exactly one empty
    gives 0.0. ``tolerance=0`` means an exact pixel match.

    Args:
        pred: ``HxW`` binary prediction (bool or 0/1).
        gt: ``HxW`` binary ground truth (bool or 0/1).
        tolerance: Matching distance in pixels, ``>= 0``.

    Returns:
        The boundary F1 in ``[0, 1]``.

    Raises:
        ValueError: On a negative tolerance, a shape mismatch or non-binary inputs.
    """
    return boundary_f1_at(pred, gt, (tolerance,))[tolerance]


def boundary_f1_at(pred: np.ndarray, gt: np.ndarray, tolerances: tuple[int, ...]) -> dict[int, float]:
    """:func:`boundary_f1` at several tolerances, from one pair of boundaries and distance transforms (the values
    of separate calls, at a quarter of the cost for the four tolerances of :data:`BF1_TOLERANCES`)."""
    if any(t < 0 for t in tolerances):
        raise ValueError(f"tolerance must be >= 0, got {min(tolerances)}")
    pred, gt = _validate(pred, gt)
    if not np.all((pred == 0) | (pred == 1)):
        raise ValueError("pred must be a binary mask (bool or 0/1)")
    pred_b = _inner_boundary(pred > 0.5)
    gt_b = _inner_boundary(gt)
    n_pred, n_gt = int(pred_b.sum()), int(gt_b.sum())
    if n_pred == 0 and n_gt == 0:
        return dict.fromkeys(tolerances, 1.0)
    if n_pred == 0 or n_gt == 0:
        return dict.fromkeys(tolerances, 0.0)
    # distance_transform_edt gives each pixel's distance to the nearest zero, i.e. boundary pixel.
    to_gt = distance_transform_edt(~gt_b)[pred_b]
    to_pred = distance_transform_edt(~pred_b)[gt_b]
    out = {}
    for tolerance in tolerances:
        precision = np.count_nonzero(to_gt <= tolerance) / n_pred
        recall = np.count_nonzero(to_pred <= tolerance) / n_gt
        out[tolerance] = 0.0 if precision + recall == 0 else float(2 * precision * recall / (precision + recall))
    return out


def _binary_scores(pred: np.ndarray, gt: np.ndarray) -> dict[str, float]:
    """IoU, Dice and BER of boolean masks with the module's empty-mask conventions."""
    tp = int(np.count_nonzero(pred & gt))
    fp = int(np.count_nonzero(pred & ~gt))
    fn = int(np.count_nonzero(~pred & gt))
    tn = int(gt.size) - tp - fp - fn
    union = tp + fp + fn
    iou = 1.0 if union == 0 else tp / union
    dice = 1.0 if union == 0 else 2 * tp / (2 * tp + fp + fn)
    rates = []
    if tp + fn > 0:
        rates.append(tp / (tp + fn))  # TPR
    if tn + fp > 0:
        rates.append(tn / (tn + fp))  # TNR
    ber = 1.0 - float(np.mean(rates))
    return {"iou": float(iou), "dice": float(dice), "ber": ber}


def _score(prob: np.ndarray, gt: np.ndarray) -> tuple[dict[str, float], np.ndarray]:
    """Score one image; also return its 256-threshold E-measure curve for dataset-level ``em_max``."""
    prob, gt = _validate(prob, gt)
    pred_u8 = np.rint(prob * 255).astype(np.uint8)
    gt_u8 = gt.astype(np.uint8) * 255

    import py_sod_metrics as sod  # here, not at the top: with sklearn ~1.4 s that sweeps, plans, reports need not pay

    sm, em, wfm, mae = sod.Smeasure(), sod.Emeasure(), sod.WeightedFmeasure(), sod.MAE()
    for metric in (sm, em, wfm, mae):
        metric.step(pred=pred_u8, gt=gt_u8)
    em_res = em.get_results()["em"]
    curve = np.asarray(em_res["curve"], dtype=np.float64)
    scores = {
        "sm": float(sm.get_results()["sm"]),
        "em_adp": float(em_res["adp"]),
        "em_mean": float(curve.mean()),
        "em_max": float(curve.max()),
        "wfm": float(wfm.get_results()["wfm"]),
        "mae": float(mae.get_results()["mae"]),
    }
    binary = prob > 0.5
    scores.update(_binary_scores(binary, gt))
    scores.update({f"bf1_{k}": v for k, v in boundary_f1_at(binary, gt, BF1_TOLERANCES).items()})
    return scores, curve


def _sod(handler: str, key: str) -> Callable[[np.ndarray, np.ndarray], float]:
    def score(pred_u8: np.ndarray, gt_u8: np.ndarray) -> float:
        import py_sod_metrics as sod

        metric = getattr(sod, handler)()
        metric.step(pred=pred_u8, gt=gt_u8)
        return float(metric.get_results()[key])

    return score


def _em(pred_u8: np.ndarray, gt_u8: np.ndarray) -> dict[str, Any]:
    import py_sod_metrics as sod

    metric = sod.Emeasure()
    metric.step(pred=pred_u8, gt=gt_u8)
    return metric.get_results()["em"]


# the one metric a validation candidate is chosen by, computed with the operations of _score (the same values)
_ON_UINT8: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
    "sm": _sod("Smeasure", "sm"),
    "wfm": _sod("WeightedFmeasure", "wfm"),
    "mae": _sod("MAE", "mae"),
    "em_adp": lambda p, g: float(_em(p, g)["adp"]),
    "em_mean": lambda p, g: float(np.asarray(_em(p, g)["curve"], dtype=np.float64).mean()),
}


def score_one(key: str, prob: np.ndarray, gt: np.ndarray) -> float:
    """The value of one metric of :data:`METRICS` for one image, equal to ``score_image(prob, gt)[key]`` at a
    fraction of its cost (what the validation split of ``eval.select=val_best`` needs); ``em_max``, a dataset-level
    max over the image-averaged curve, has no per-image form here and raises ``KeyError``."""
    prob, gt = _validate(prob, gt)
    if key in _ON_UINT8:
        return _ON_UINT8[key](np.rint(prob * 255).astype(np.uint8), gt.astype(np.uint8) * 255)
    binary = prob > 0.5
    if key in ("iou", "dice", "ber"):
        return _binary_scores(binary, gt)[key]
    if key.startswith("bf1_") and int(key[4:]) in BF1_TOLERANCES:
        return boundary_f1(binary, gt, int(key[4:]))
    raise KeyError(f"no per-image form of metric {key!r}")


def score_image(prob: np.ndarray, gt: np.ndarray) -> dict[str, float]:
    """Compute every metric of :data:`METRICS` for one image (definitions in the module docstring).

    Args:
        prob: ``HxW`` float map in ``[0, 1]`` at original resolution.
        gt: ``HxW`` mask with values in ``{0, 1}``.

    Returns:
        ``{metric key: value}`` for all keys of :data:`METRICS`.

    Raises:
        ValueError: On invalid inputs (see module docstring).
    """
    return _score(prob, gt)[0]


class MetricAccumulator:
    """Scores images one by one and aggregates them over a dataset.

    Attributes:
        rows: One dict per image, ``{"name": name, <metric key>: value, ...}``, in insertion order.
    """

    def __init__(self) -> None:
        self.rows: list[dict] = []
        self._em_curves: list[np.ndarray] = []

    def __len__(self) -> int:
        return len(self.rows)

    def add(self, name: str, prob: np.ndarray, gt: np.ndarray) -> dict[str, float]:
        """Score one image and keep its row.

        Args:
            name: Image identifier stored in the row under ``"name"``.
            prob: ``HxW`` float map in ``[0, 1]``.
            gt: ``HxW`` mask with values in ``{0, 1}``.

        Returns:
            The image's scores (without ``"name"``).
        """
        scores, curve = _score(prob, gt)
        if any(row["name"] == name for row in self.rows):
            logger.warning("image name %r added twice to the metric accumulator", name)
        self.rows.append({"name": name, **scores})
        self._em_curves.append(curve)
        return scores

    def mean(self) -> dict[str, float]:
        """Dataset-level value of every metric.

        The mean over images of each per-image value, except ``em_max``, which is the max over
        thresholds of the image-averaged E-measure curve (the ``py_sod_metrics`` / toolbox
        convention). All values equal what ``py_sod_metrics``' ``get_results()`` gives when all
        images are stepped into one object.

        Raises:
            ValueError: If no image has been added.
        """
        if not self.rows:
            raise ValueError("no images were added to the MetricAccumulator")
        out = {key: float(np.mean([row[key] for row in self.rows])) for key in METRICS}
        out["em_max"] = float(np.mean(np.stack(self._em_curves), axis=0).max())
        return out
