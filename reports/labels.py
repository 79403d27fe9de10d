"""Display facts of any metric key a report shows, through :func:`bench.eval.metrics.metric_info` (the binary
keys, the semantic ``acc`` / ``miou`` and the per-class ``iou_<class>``); a key it does not know (e.g. Table 11's
``time_ms``) is shown as written and counted higher-better, as the reports always did."""

from __future__ import annotations

from bench.eval.metrics import metric_info


def metric_label(key: str) -> str:
    """``"sm"`` -> ``"S_α"``, ``"miou"`` -> ``"mIoU"``, ``"iou_shelf"`` -> ``"IoU(shelf)"``; unknown keys as written."""
    try:
        return metric_info(key).label
    except KeyError:
        return key


def higher_better(key: str) -> bool:
    try:
        return metric_info(key).higher_better
    except KeyError:
        return True
