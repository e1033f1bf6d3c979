"""One run's numbers: best and final accuracy, speed and times.

"Best" is the highest eval top-1 of a run, with the top-5 of that same
evaluation, so the two columns describe one set of weights; "final" is the
last evaluation.
"""

from __future__ import annotations

import statistics
from typing import Dict, List, Optional, Sequence, Tuple

from experiments.report import run_dirs

# (column, header) of the metrics aggregated over seeds; values in [0, 1]
# are accuracies.
METRIC_COLUMNS = (
    ('best_top1', 'best top-1'), ('best_top5', 'top-5 at best'),
    ('final_top1', 'final top-1'), ('final_top5', 'final top-5'),
    ('best_top1_raw', 'best top-1 raw'), ('final_top1_raw', 'final top-1 raw'),
    ('final_top5_raw', 'final top-5 raw'),
    ('images_per_sec', 'train img/s (median)'),
    ('train_time_sec', 'train time'), ('wall_time_sec', 'wall time'),
)
ACCURACY_COLUMNS = frozenset(c for c, _ in METRIC_COLUMNS
                             if 'top1' in c or 'top5' in c)
TIME_COLUMNS = frozenset({'train_time_sec', 'wall_time_sec'})


def eval_points(run: run_dirs.Run, prefix: str) -> List[Dict]:
  """The records of the evaluations under `prefix` ('eval' or 'eval_raw')."""
  return [r for r in run.records if r.get(f'{prefix}/top1') is not None]


def cumulative_train_time(run: run_dirs.Run) -> List[Tuple[int, float]]:
  """(step, seconds of training up to it) from the logged step times.

  Each train record's `train/step_time` is the mean over the steps since the
  previous record (compilation, evaluation and saving excluded), so the sum
  is a training time that is comparable between runs and survives resumes.
  """
  out, total, previous = [], 0.0, 0
  for r in run.records:
    step_time = r.get('train/step_time')
    if step_time is None:
      continue
    total += step_time * max(0, r['step'] - previous)
    previous = r['step']
    out.append((r['step'], total))
  return out


def has_wall_time(run: run_dirs.Run) -> bool:
  return any(r.get('wall_time_sec') is not None for r in run.records)


def uses_wall_time(runs: Sequence[run_dirs.Run]) -> bool:
  return any(has_wall_time(run) for run in runs)


def time_at_steps(run: run_dirs.Run, steps: Sequence[int]
                  ) -> List[Optional[float]]:
  """Seconds at each step: logged wall time if there is one, else train time."""
  wall = {r['step']: r['wall_time_sec'] for r in run.records
          if r.get('wall_time_sec') is not None}
  train = cumulative_train_time(run)
  out = []
  for step in steps:
    if step in wall:
      out.append(float(wall[step]))
      continue
    before = [t for s, t in train if s <= step]
    out.append(before[-1] if before else None)
  return out


def _accuracies(run: run_dirs.Run) -> Dict[str, Optional[float]]:
  out = {}
  for prefix, suffix in (('eval', ''), ('eval_raw', '_raw')):
    points = eval_points(run, prefix)
    if not points:
      continue
    best = max(points, key=lambda r: r[f'{prefix}/top1'])
    final = points[-1]
    out[f'best_top1{suffix}'] = best[f'{prefix}/top1']
    out[f'final_top1{suffix}'] = final[f'{prefix}/top1']
    out[f'final_top5{suffix}'] = final.get(f'{prefix}/top5')
    if not suffix:
      out['best_top5'] = best.get(f'{prefix}/top5')
  return out


def _speed_and_times(run: run_dirs.Run) -> Dict[str, Optional[float]]:
  out = {}
  speeds = [r['train/images_per_sec'] for r in run.records
            if r.get('train/images_per_sec') is not None]
  if speeds:
    out['images_per_sec'] = statistics.median(speeds)
  train = cumulative_train_time(run)
  if train:
    out['train_time_sec'] = train[-1][1]
  walls = [r['wall_time_sec'] for r in run.records
           if r.get('wall_time_sec') is not None]
  if walls:
    out['wall_time_sec'] = float(walls[-1])
  elif run.summary and run.summary.get('wall_time_sec') is not None:
    out['wall_time_sec'] = float(run.summary['wall_time_sec'])
  return out


def run_metrics(run: run_dirs.Run) -> Dict[str, Optional[float]]:
  """The table's numbers for one run (None where not measured)."""
  out: Dict[str, Optional[float]] = {c: None for c, _ in METRIC_COLUMNS}
  out.update(_accuracies(run))
  out.update(_speed_and_times(run))
  return out
