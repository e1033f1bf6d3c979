"""The statistics of a sweep: means over seeds, 95% intervals, differences.

Every interval is Student's t at 95%, from scipy.stats: over a variant's
seeds for its mean; over the per-seed differences where two variants share
seeds (paired: same data order and initialisation, so a seed's own luck
cancels); Welch's for two means otherwise.
"""

from __future__ import annotations

import math
import statistics
import warnings
from typing import Any, Callable, Dict, Optional, Sequence

from scipy import stats

CONFIDENCE = 0.95

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


def _half_width(t_test: Callable[[], Any]) -> float:
  """Half the width of the 95% interval of a scipy t-test, run here."""
  with warnings.catch_warnings():
    # Samples that agree to rounding (every seed gains the same) make scipy
    # warn of lost precision; the interval it returns, zero wide, is right.
    warnings.filterwarnings('ignore', 'Precision loss', RuntimeWarning)
    low, high = t_test().confidence_interval(CONFIDENCE)
  return float(high - low) / 2


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
            'ci95': _half_width(lambda: stats.ttest_rel(xb, xa)),
            'n': len(shared), 'method': 'paired by seed'}
  xa, xb = list(a.values()), list(b.values())
  mean = statistics.fmean(xb) - statistics.fmean(xa) if xa and xb else None
  n = min(len(xa), len(xb))
  if n < 2:
    return {'mean': mean, 'ci95': None, 'n': n,
            'method': 'one run: no interval'}
  welch = lambda: stats.ttest_ind(xb, xa, equal_var=False)
  return {'mean': mean, 'ci95': _half_width(welch), 'n': n, 'method': 'Welch'}


def verdict(diff: Dict[str, Any]) -> str:
  """Whether the seeds show a difference: its interval excludes 0."""
  if diff['mean'] is None:
    return '-'
  if diff['ci95'] is None:
    return 'no interval (a variant has one run)'
  if abs(diff['mean']) > diff['ci95']:
    return 'the interval excludes 0'
  return 'within the seeds\' spread: not shown'
