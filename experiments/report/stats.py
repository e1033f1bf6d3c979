"""The statistics of a sweep: means over seeds, 95% intervals, differences."""

from __future__ import annotations

import math
import statistics
from typing import Any, Dict, Optional, Sequence

# Two-sided 95% quantiles of Student's t for 1..30 degrees of freedom.
_T95 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
        2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
        2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)


def t95(df: float) -> float:
  """The 97.5% quantile of Student's t with `df` degrees of freedom."""
  if df < 1:
    return math.inf
  if df <= len(_T95):
    low = _T95[int(math.floor(df)) - 1]
    high = _T95[min(int(math.ceil(df)), len(_T95)) - 1]
    return low + (high - low) * (df - math.floor(df))
  return 1.960 + 2.4 / df  # within 0.002 of the exact value above 30


# The keys of `aggregate`'s result, in the order report.csv lists them.
AGGREGATE_KEYS = ('mean', 'std', 'min', 'max', 'n', 'ci95')


def aggregate(values: Sequence[Optional[float]]) -> Dict[str, Optional[float]]:
  """mean, sample std, min, max, n and the 95% confidence half-width of
  the mean (Student's t over the seeds; None for a single value)."""
  xs = [float(v) for v in values if v is not None and math.isfinite(v)]
  if not xs:
    return {'mean': None, 'std': None, 'min': None, 'max': None, 'n': 0,
            'ci95': None}
  std = statistics.stdev(xs) if len(xs) > 1 else 0.0
  return {'mean': statistics.fmean(xs), 'std': std,
          'min': min(xs), 'max': max(xs), 'n': len(xs),
          'ci95': (t95(len(xs) - 1) * std / math.sqrt(len(xs))
                   if len(xs) > 1 else None)}


def difference(a: Dict[Any, float], b: Dict[Any, float]
               ) -> Dict[str, Any]:
  """Mean of b - a and its 95% confidence half-width.

  `a` and `b` map seeds to values. Where at least two seeds are shared the
  difference is paired by seed (same data order and initialisation, so the
  seed's own luck cancels); otherwise Welch's interval for two means.
  """
  shared = sorted(set(a) & set(b), key=str)
  if len(shared) >= 2:
    d = [b[s] - a[s] for s in shared]
    agg = aggregate(d)
    return {'mean': agg['mean'], 'ci95': agg['ci95'], 'n': len(d),
            'method': 'paired by seed'}
  xa, xb = list(a.values()), list(b.values())
  mean = statistics.fmean(xb) - statistics.fmean(xa) if xa and xb else None
  if len(xa) < 2 or len(xb) < 2:
    return {'mean': mean, 'ci95': None, 'n': min(len(xa), len(xb)),
            'method': 'one run: no interval'}
  va, vb = (statistics.variance(xa) / len(xa),
            statistics.variance(xb) / len(xb))
  se = math.sqrt(va + vb)
  df = ((va + vb) ** 2 / (va ** 2 / (len(xa) - 1) + vb ** 2 / (len(xb) - 1))
        if va + vb > 0 else math.inf)
  return {'mean': mean, 'ci95': t95(df) * se if se else 0.0,
          'n': min(len(xa), len(xb)), 'method': 'Welch'}


def verdict(diff: Dict[str, Any]) -> str:
  if diff['mean'] is None:
    return '-'
  if diff['ci95'] is None:
    return 'no interval (a variant has one run)'
  if abs(diff['mean']) > diff['ci95']:
    return 'the interval excludes 0'
  return 'within the seeds\' spread: not shown'
