"""Significance of a row against the table's reference row: Welch's t-test over seeds.

Welch's unequal-variance t-test (``scipy.stats.ttest_ind(equal_var=False)``, two-sided) on the per-seed
values of one column. A row is marked when p < :data:`ALPHA` and each side has at least
:data:`MIN_SEEDS` seeds; with fewer seeds, or when both samples are constant (p undefined), no test is
made and nothing is marked.
"""

from __future__ import annotations

import math
import warnings
from typing import Optional, Sequence

from scipy import stats

ALPHA = 0.05
MIN_SEEDS = 2
MARK = "†"


def welch_p(values: Sequence[float], reference: Sequence[float]) -> Optional[float]:
    """Two-sided Welch p-value of ``values`` vs ``reference``; None if untestable (see module doc)."""
    if len(values) < MIN_SEEDS or len(reference) < MIN_SEEDS:
        return None
    with warnings.catch_warnings():  # nearly constant samples: scipy warns, the p-value is still defined
        warnings.simplefilter("ignore", RuntimeWarning)
        p = float(stats.ttest_ind(list(values), list(reference), equal_var=False).pvalue)
    return None if math.isnan(p) else p


def significant(p: Optional[float]) -> bool:
    return p is not None and p < ALPHA
