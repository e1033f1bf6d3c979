"""The statistics of a sweep: means over seeds, 95% intervals, differences.

Every interval is Student's t at 95%, from scipy.stats: over a variant's
seeds for its mean; over the per-seed differences where two variants share
seeds (paired: same data order and initialisation, so a seed's own luck
cancels); Welch's for two means otherwise.

A report compares several pairs of variants at once, so a difference is
"shown" only when its t-test's p-value, Holm-adjusted over every contrast of
the report (`holm`), is below 0.05: the chance that any of the report's
"shown" is a fluke of the seeds stays under 5%. The 95% intervals are per
contrast, and can exclude 0 while the adjusted test does not show it.
"""

from __future__ import annotations

import math
import statistics
import warnings
from typing import Any, Callable, Dict, List, Optional, Sequence

from scipy import stats

CONFIDENCE = 0.95
FAMILY_ALPHA = 1 - CONFIDENCE

# The keys of `aggregate`'s result, in the order report.csv lists them.
AGGREGATE_KEYS = ('mean', 'std', 'min', 'max', 'n', 'ci95')


def t95(df: float) -> float:
  """The 97.5% quantile of Student's t with `df` degrees of freedom (the
  factor of the standard error in a two-sided 95% interval)."""
  return float(stats.t.ppf(0.5 + CONFIDENCE / 2, df))


def aggregate(values: Sequence[Optional[float]]) -> Dict[str, Optional[float]]:
  """mean, sample std, min, max, n and the 95% confidence half-width of
  the mean (Student's t over the seeds; None for a single value)."""
  xs = [float(v) for v in values if v is not None and math.isfinite(v)]
  if not xs:
    return {'mean': None, 'std': None, 'min': None, 'max': None, 'n': 0,
            'ci95': None}
  n = len(xs)
  return {'mean': statistics.fmean(xs),
          'std': statistics.stdev(xs) if n > 1 else 0.0,
          'min': min(xs), 'max': max(xs), 'n': n,
          'ci95': t95(n - 1) * float(stats.sem(xs)) if n > 1 else None}


def _t_test(t_test: Callable[[], Any]) -> Dict[str, float]:
  """Half the width of the 95% interval of a scipy t-test, run here, and
  its two-sided p-value (0 where every seed agrees exactly)."""
  with warnings.catch_warnings():
    # Samples that agree to rounding (every seed gains the same) make scipy
    # warn of lost precision; the interval it returns, zero wide, is right.
    warnings.filterwarnings('ignore', 'Precision loss', RuntimeWarning)
    result = t_test()
    low, high = result.confidence_interval(CONFIDENCE)
  half = float(high - low) / 2
  p = float(result.pvalue)
  if not math.isfinite(p):  # zero spread: nan from scipy
    p = 0.0 if half == 0 and low != 0 else 1.0
  return {'ci95': half, 'p': p}


def difference(a: Dict[Any, float], b: Dict[Any, float]) -> Dict[str, Any]:
  """Mean of b - a and its 95% confidence half-width.

  `a` and `b` map seeds to values. Where at least two seeds are shared the
  difference is paired by seed (`scipy.stats.ttest_rel`); otherwise Welch's
  interval for two means (`scipy.stats.ttest_ind`, unequal variances).
  """
  shared = sorted(set(a) & set(b), key=str)
  if len(shared) >= 2:
    xa, xb = [a[s] for s in shared], [b[s] for s in shared]
    return {'mean': statistics.fmean(y - x for x, y in zip(xa, xb)),
            **_t_test(lambda: stats.ttest_rel(xb, xa)),
            'n': len(shared), 'method': 'paired by seed'}
  xa, xb = list(a.values()), list(b.values())
  mean = statistics.fmean(xb) - statistics.fmean(xa) if xa and xb else None
  n = min(len(xa), len(xb))
  if n < 2:
    return {'mean': mean, 'ci95': None, 'p': None, 'n': n,
            'method': 'one run: no interval'}
  welch = lambda: stats.ttest_ind(xb, xa, equal_var=False)
  return {'mean': mean, **_t_test(welch), 'n': n, 'method': 'Welch'}


def holm(pvalues: Sequence[Optional[float]]) -> List[Optional[float]]:
  """Holm's step-down adjustment of a family of p-values (None skipped).

  The k-th smallest of m is multiplied by m - k + 1, and each adjusted value
  is at least the one before it: rejecting where the adjusted p < alpha
  keeps the family-wise error rate at alpha for any dependence.
  """
  tested = sorted((p, i) for i, p in enumerate(pvalues) if p is not None)
  adjusted: List[Optional[float]] = [None] * len(pvalues)
  running = 0.0
  for k, (p, i) in enumerate(tested):
    running = max(running, min(1.0, (len(tested) - k) * p))
    adjusted[i] = running
  return adjusted


def verdict(diff: Dict[str, Any]) -> str:
  """Whether the seeds show a difference: its Holm-adjusted p (`p_holm`,
  over the report's `contrasts`) is below 0.05."""
  if diff['mean'] is None:
    return '-'
  if diff.get('p_holm') is None:
    return 'no interval (a variant has one run)'
  of = f'Holm p={diff["p_holm"]:.3g} over {diff["contrasts"]}'
  if diff['p_holm'] < FAMILY_ALPHA:
    return f'shown ({of})'
  return f'not shown ({of})'
