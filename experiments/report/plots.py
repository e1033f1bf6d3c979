"""The report's plots: eval top-1 against step and against time.

One line per variant (the mean over its seeds), with a band from the
lowest to the highest seed where a variant has several.
"""

from __future__ import annotations

import os
import statistics
from typing import List, Optional, Sequence, Tuple

from experiments.report import grouping
from experiments.report import metrics

# steps, mean, min and max top-1, and time at each step.
Curve = Tuple[List[int], List[float], List[float], List[float],
              List[Optional[float]]]


def _mean_times(runs, steps: List[int], use_wall: bool
                ) -> List[Optional[float]]:
  """Mean over the runs of the time at each step (wall time when the
  sweep logs it: then only the runs that logged it count)."""
  times_per_run = [metrics.time_at_steps(run, steps) for run in runs
                   if not use_wall or metrics.has_wall_time(run)]
  out = []
  for i in range(len(steps)):
    ts = [t[i] for t in times_per_run if t[i] is not None]
    out.append(statistics.fmean(ts) if ts else None)
  return out


def variant_curve(variant: grouping.Variant, use_wall: bool) -> Curve:
  """A variant's curve: per evaluated step, mean/min/max top-1 and time.

  At each step the statistics are over the runs that evaluated it, so a seed
  that is still running does not cut the other seeds' curves short.
  """
  per_run = []
  for run in variant.runs:
    points = {r['step']: r['eval/top1']
              for r in metrics.eval_points(run, 'eval')}
    if points:
      per_run.append((run, points))
  if not per_run:
    return [], [], [], [], []
  steps = sorted(set().union(*(set(p) for _, p in per_run)))
  values = [[p[s] for _, p in per_run if s in p] for s in steps]
  times = _mean_times([run for run, _ in per_run], steps, use_wall)
  return (steps, [statistics.fmean(v) for v in values],
          [min(v) for v in values], [max(v) for v in values], times)


def _time_axis(curves: Sequence[Curve], use_wall: bool) -> Tuple[int, str]:
  """The time axis's unit (seconds per unit) and label."""
  longest = max((t for c in curves for t in c[4] if t is not None),
                default=0.0)
  scale, unit = (3600, 'h') if longest > 2 * 3600 else (60, 'min')
  label = (f'wall time ({unit})' if use_wall else
           f'training time ({unit}, from step times; excludes '
           f'compilation and evaluation)')
  return scale, label


def _draw(ax, variant: grouping.Variant, curve: Curve, against: str,
          scale: int) -> bool:
  """One variant's line (and band) against 'step' or 'time'; False if the
  variant has no point to draw."""
  steps, mean, lo, hi, times = curve
  if against == 'step':
    xs = steps
  else:
    keep = [i for i, t in enumerate(times) if t is not None]
    xs = [times[i] / scale for i in keep]
    mean, lo, hi = ([m[i] for i in keep] for m in (mean, lo, hi))
  if not xs:
    return False
  n = len(variant.runs)
  line, = ax.plot(xs, [100 * m for m in mean], marker='o', markersize=3,
                  label=f'{variant.label} (n={n})')
  if n > 1:
    ax.fill_between(xs, [100 * v for v in lo], [100 * v for v in hi],
                    color=line.get_color(), alpha=0.15)
  return True


def _plot(plt, variants: Sequence[grouping.Variant], curves: Sequence[Curve],
          against: str, time_axis: Tuple[int, str], path: str) -> None:
  scale, time_label = time_axis
  fig, ax = plt.subplots(figsize=(8, 5))
  drew = [_draw(ax, v, c, against, scale) for v, c in zip(variants, curves)]
  if any(drew):
    ax.legend(fontsize=8)
  else:
    ax.text(0.5, 0.5, 'no evaluation yet', ha='center', va='center',
            transform=ax.transAxes)
  ax.set_xlabel('step' if against == 'step' else time_label)
  ax.set_ylabel('eval top-1 (%), Polyak weights; band: min-max over seeds')
  ax.grid(True, alpha=0.3)
  ax.set_title(f'eval top-1 against {against}')
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def write_plots(variants: Sequence[grouping.Variant], out_dir: str
                ) -> List[str]:
  """Writes eval_top1_vs_step.png and eval_top1_vs_time.png; their paths."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  from matplotlib import pyplot as plt  # pylint: disable=g-import-not-at-top

  use_wall = metrics.uses_wall_time([r for v in variants for r in v.runs])
  curves = [variant_curve(v, use_wall) for v in variants]
  time_axis = _time_axis(curves, use_wall)
  paths = []
  for against in ('step', 'time'):
    path = os.path.join(out_dir, f'eval_top1_vs_{against}.png')
    _plot(plt, variants, curves, against, time_axis, path)
    paths.append(path)
  return paths
