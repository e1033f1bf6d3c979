r"""Turns a sweep's run directories into a table, a CSV and plots.

  python -m experiments.report --root=runs/ablation [--flops=True]

Reads `config.json`, `metrics.jsonl` and (when the run ended) `summary.json`
of every run directory under --root and writes there:

  report.md                  one row per variant (runs that differ only in
                             the seed are one variant: mean and the 95%
                             interval over seeds); each variant's final
                             top-1 against the baseline's, and every pair
                             of variants that differ in one setting only
                             (the effect of one switch, others held), as
                             differences with their intervals, paired by
                             seed; then one row per run with its status
  report.csv                 the variant rows, with mean/std/min/max/n columns
  report_runs.csv            the run rows
  eval_top1_vs_step.png      eval top-1 (Polyak weights) against step
  eval_top1_vs_time.png      ... against time, one line per variant

Parameters and multiply-adds come from `inception_jax.summary.summarize`
for the run's model at its input size and at 224x224 (the paper's size).
"Best" is the highest eval top-1 of a run, with the top-5 of that same
evaluation, so the two columns describe one set of weights; "final" is the
last evaluation. Runs still training, or interrupted, are reported with the
step they reached; missing or unreadable files are listed, never fatal.
"""

from __future__ import annotations

import csv
import dataclasses
import itertools
import json
import math
import os
import re
import statistics
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from absl import flags

from inception_jax import cli
from inception_jax.data import config as data_config
from experiments import run as run_lib

# Keys that do not change what is measured: bookkeeping, paths, and the seed
# (runs that differ only in these are repetitions of one variant).
IGNORED_KEYS = frozenset({
    'seed', 'multihost', 'log_every_steps', 'checkpoint_every_steps',
    'keep_checkpoints', 'eval_every_steps', 'data.data_dir', 'data.manual_dir',
    'data.root', 'data.fashion_mnist_dir', 'data.worker_count',
})
# What a variant is called when nothing differs between variants.
DEFAULT_LABEL_KEYS = ('model.module', 'model.aux', 'model.norm',
                      'model.variant')
KNOWN_NUM_CLASSES = {'fashion_mnist': 10, 'imagenet2012': 1000}
PAPER_IMAGE_SIZE = 224

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


# --- Reading runs -------------------------------------------------------------

@dataclasses.dataclass
class Run:
  """What one run directory holds, and what could not be read."""
  name: str
  path: str
  config: Optional[Dict[str, Any]] = None
  records: List[Dict[str, Any]] = dataclasses.field(default_factory=list)
  summary: Optional[Dict[str, Any]] = None
  problems: List[str] = dataclasses.field(default_factory=list)

  @property
  def finished(self) -> bool:
    return self.summary is not None

  @property
  def last_step(self) -> Optional[int]:
    steps = [r['step'] for r in self.records if 'step' in r]
    return max(steps) if steps else None

  @property
  def status(self) -> str:
    if self.finished:
      return 'finished'
    if self.records:
      return f'unfinished (step {self.last_step})'
    return 'no metrics yet'


def read_jsonl(path: str) -> Tuple[List[Dict[str, Any]], int]:
  """The parseable records of a JSON-lines file, and how many were not.

  A run killed mid-write leaves a cut-off last line; skipping it keeps the
  rest of the run usable.
  """
  records, bad = [], 0
  with open(path, encoding='utf-8') as f:
    for line in f:
      line = line.strip()
      if not line:
        continue
      try:
        record = json.loads(line)
      except ValueError:
        bad += 1
        continue
      if isinstance(record, dict) and isinstance(record.get('step'), int):
        records.append(record)
      else:
        bad += 1
  return records, bad


def _read_json(path: str, problems: List[str]) -> Optional[Dict[str, Any]]:
  if not os.path.exists(path):
    return None
  try:
    with open(path, encoding='utf-8') as f:
      return json.load(f)
  except (OSError, ValueError) as e:
    problems.append(f'{os.path.basename(path)} unreadable: {e}')
    return None


def load_run(path: str, name: Optional[str] = None) -> Run:
  run = Run(name=name or os.path.basename(os.path.normpath(path)), path=path)
  run.config = _read_json(os.path.join(path, 'config.json'), run.problems)
  if run.config is None and not any('config.json' in p for p in run.problems):
    run.problems.append('config.json missing')
  if run.config and isinstance(run.config.get('data'), dict):
    # Data keys added since the run started take their defaults, so the runs
    # of a sweep that spans a new key are still one variant.
    run.config['data'] = data_config.upgrade(run.config['data']).to_dict()
  run.summary = _read_json(os.path.join(path, run_lib.FINISHED_MARKER),
                           run.problems)
  metrics = os.path.join(path, 'metrics.jsonl')
  if os.path.exists(metrics):
    try:
      run.records, bad = read_jsonl(metrics)
    except OSError as e:
      run.problems.append(f'metrics.jsonl unreadable: {e}')
    else:
      if bad:
        run.problems.append(f'metrics.jsonl: {bad} unreadable line(s) skipped')
  else:
    run.problems.append('metrics.jsonl missing')
  run.records.sort(key=lambda r: r['step'])
  return run


def find_runs(root: str) -> List[Run]:
  """Every directory under root (root itself included) that looks like a run."""
  markers = ('config.json', 'metrics.jsonl', run_lib.FINISHED_MARKER)
  runs = []
  if any(os.path.exists(os.path.join(root, m)) for m in markers):
    runs.append(load_run(root))
  for entry in sorted(os.listdir(root)):
    path = os.path.join(root, entry)
    if os.path.isdir(path) and (
        any(os.path.exists(os.path.join(path, m)) for m in markers) or
        os.path.isdir(os.path.join(path, 'checkpoints'))):
      runs.append(load_run(path, entry))
  return runs


# --- One run's numbers --------------------------------------------------------

def _eval_points(run: Run, prefix: str) -> List[Dict[str, Any]]:
  return [r for r in run.records if r.get(f'{prefix}/top1') is not None]


def cumulative_train_time(run: Run) -> List[Tuple[int, float]]:
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


def time_at_steps(run: Run, steps: Sequence[int]) -> List[Optional[float]]:
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


def uses_wall_time(runs: Sequence[Run]) -> bool:
  return any(r.get('wall_time_sec') is not None
             for run in runs for r in run.records)


def run_metrics(run: Run) -> Dict[str, Optional[float]]:
  """The table's numbers for one run (None where not measured)."""
  out: Dict[str, Optional[float]] = {c: None for c, _ in METRIC_COLUMNS}
  for prefix, suffix in (('eval', ''), ('eval_raw', '_raw')):
    points = _eval_points(run, prefix)
    if not points:
      continue
    best = max(points, key=lambda r: r[f'{prefix}/top1'])
    final = points[-1]
    out[f'best_top1{suffix}'] = best[f'{prefix}/top1']
    out[f'final_top1{suffix}'] = final[f'{prefix}/top1']
    out[f'final_top5{suffix}'] = final.get(f'{prefix}/top5')
    if not suffix:
      out['best_top5'] = best.get(f'{prefix}/top5')
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


# --- Variants -----------------------------------------------------------------

def flatten(tree: Any, prefix: str = '') -> Dict[str, Any]:
  if not isinstance(tree, dict):
    return {prefix: tree}
  out = {}
  for key, value in tree.items():
    out.update(flatten(value, f'{prefix}{key}.' if isinstance(value, dict)
                       else f'{prefix}{key}'))
  return out


def variant_settings(config: Optional[Dict[str, Any]]) -> Dict[str, Any]:
  return {k: v for k, v in flatten(config or {}).items()
          if k not in IGNORED_KEYS}


def _short(key: str) -> str:
  return key[len('model.'):] if key.startswith('model.') else key


def _same(a: Any, b: Any) -> bool:
  return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def _paper_order(keys: List[str]) -> List[str]:
  """The paper's switches first, in their usual order."""
  order = {k: i for i, k in enumerate(DEFAULT_LABEL_KEYS)}
  return sorted(keys, key=lambda k: (order.get(k, len(order)), k))


def _varying_keys(settings: Sequence[Dict[str, Any]]) -> List[str]:
  """The keys whose values are not the same in all `settings`, the
  paper's switches first."""
  keys = sorted({k for s in settings for k in s})
  return _paper_order([k for k in keys
                       if any(not _same(s.get(k), settings[0].get(k))
                              for s in settings)])


def variant_labels(settings: Sequence[Dict[str, Any]]) -> List[str]:
  """Names for variants from the settings in which they differ."""
  label_keys = _varying_keys(settings) or [
      k for k in DEFAULT_LABEL_KEYS if any(k in s for s in settings)]
  labels = []
  for s in settings:
    parts = [f'{_short(k)}={s.get(k)}' for k in label_keys]
    labels.append(','.join(parts) if parts else 'default')
  return labels


@dataclasses.dataclass
class Variant:
  label: str
  settings: Dict[str, Any]
  runs: List[Run]
  model: Dict[str, Any] = dataclasses.field(default_factory=dict)


def group_variants(runs: Sequence[Run]) -> List[Variant]:
  groups: Dict[str, List[Run]] = {}
  settings: Dict[str, Dict[str, Any]] = {}
  unknown = []
  for run in runs:
    if run.config is None:
      # Without its config a run cannot be matched with others; it stays
      # visible on its own.
      unknown.append(Variant(f'unknown ({run.name})', {}, [run]))
      continue
    s = variant_settings(run.config)
    key = json.dumps(s, sort_keys=True, default=str)
    groups.setdefault(key, []).append(run)
    settings[key] = s
  keys = list(groups)
  labels = variant_labels([settings[k] for k in keys])
  return [Variant(label, settings[k], groups[k])
          for label, k in zip(labels, keys)] + unknown


# --- Parameters and multiply-adds ---------------------------------------------

def model_kwargs(config: Dict[str, Any]) -> Optional[Dict[str, Any]]:
  """The model's constructor arguments from a run's config.json, or None
  if its class count is unknown."""
  model = config.get('model', {})
  data = config.get('data', {})
  num_classes = model.get('num_classes') or KNOWN_NUM_CLASSES.get(
      data.get('name'))
  if not num_classes:
    return None
  # config.model holds the model's constructor arguments; counts do not
  # depend on the compute dtype.
  return dict(model, num_classes=int(num_classes), dtype='float32')


def summarize_model(kwargs: Dict[str, Any], image_size: int
                    ) -> Dict[str, int]:
  """Parameters and inference multiply-adds of one model at one size."""
  from inception_jax import summary  # pylint: disable=g-import-not-at-top
  # pylint: disable-next=g-import-not-at-top
  from inception_jax.models import googlenet
  s = summary.summarize(googlenet.create_model(**kwargs), image_size)
  return {'params': s.total_params_no_aux, 'params_with_aux': s.total_params,
          'macs': s.total_macs}


SummarizeFn = Callable[[Dict[str, Any], int], Dict[str, int]]


def model_columns(variant: Variant, summarize_fn: Optional[SummarizeFn],
                  cache: Dict[str, Dict[str, int]],
                  problems: List[str]) -> Dict[str, Any]:
  config = next((r.config for r in variant.runs if r.config), None)
  out: Dict[str, Any] = {'image_size': None, 'params': None,
                         'params_with_aux': None, 'macs': None,
                         'macs_224': None}
  if config is None:
    return out
  image_size = config.get('data', {}).get('image_size')
  out['image_size'] = image_size
  if summarize_fn is None:
    return out
  kwargs = model_kwargs(config)
  if kwargs is None or not image_size:
    problems.append(f'{variant.label}: number of classes or image size '
                    f'unknown; no parameter or multiply-add count')
    return out
  for size, suffix in ((int(image_size), ''), (PAPER_IMAGE_SIZE, '_224')):
    key = json.dumps([kwargs, size], sort_keys=True)
    if key not in cache:
      try:
        cache[key] = summarize_fn(kwargs, size)
      except Exception as e:  # pylint: disable=broad-except
        problems.append(f'{variant.label}: summary at {size}x{size} failed: '
                        f'{e}')
        continue
    counts = cache[key]
    out['macs' + suffix] = counts['macs']
    if not suffix:
      out['params'] = counts['params']
      out['params_with_aux'] = counts['params_with_aux']
  return out


# --- Aggregation and formatting -----------------------------------------------

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


def format_count(n: Optional[float]) -> str:
  if n is None:
    return '-'
  for scale, unit in ((1e9, 'G'), (1e6, 'M'), (1e3, 'K')):
    if abs(n) >= scale:
      return f'{n / scale:.3g}{unit}'
  return f'{n:.0f}'


def format_duration(seconds: Optional[float]) -> str:
  if seconds is None:
    return '-'
  seconds = int(round(seconds))
  h, rest = divmod(seconds, 3600)
  m, s = divmod(rest, 60)
  return f'{h}h{m:02d}m' if h else f'{m}m{s:02d}s'


def format_value(column: str, value: Optional[float]) -> str:
  if value is None:
    return '-'
  if column in ACCURACY_COLUMNS:
    return f'{100 * value:.2f}'
  if column in TIME_COLUMNS:
    return format_duration(value)
  return f'{value:.0f}'


def format_aggregate(column: str, agg: Dict[str, Optional[float]]) -> str:
  if not agg['n']:
    return '-'
  mean = format_value(column, agg['mean'])
  if agg['n'] == 1 or agg.get('ci95') is None:
    return mean
  if column in ACCURACY_COLUMNS:
    return f'{mean} ± {100 * agg["ci95"]:.2f}'
  return (f'{mean} ({format_value(column, agg["min"])}–'
          f'{format_value(column, agg["max"])})')


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]
                   ) -> str:
  lines = ['| ' + ' | '.join(header) + ' |',
           '|' + '|'.join('---' for _ in header) + '|']
  lines += ['| ' + ' | '.join(row) + ' |' for row in rows]
  return '\n'.join(lines)


# --- Plots --------------------------------------------------------------------

def variant_curve(variant: Variant, use_wall: bool
                  ) -> Tuple[List[int], List[float], List[float], List[float],
                             List[Optional[float]]]:
  """A variant's curve: per evaluated step, mean/min/max top-1 and time.

  At each step the statistics are over the runs that evaluated it, so a seed
  that is still running does not cut the other seeds' curves short.
  """
  per_run = []
  for run in variant.runs:
    points = {r['step']: r['eval/top1'] for r in _eval_points(run, 'eval')}
    if points:
      per_run.append((run, points))
  if not per_run:
    return [], [], [], [], []
  steps = sorted(set().union(*(set(p) for _, p in per_run)))
  values = [[p[s] for _, p in per_run if s in p] for s in steps]
  times_per_run = []
  for run, _ in per_run:
    times = time_at_steps(run, steps)
    if not use_wall or any(r.get('wall_time_sec') is not None
                           for r in run.records):
      times_per_run.append(times)
  times = []
  for i in range(len(steps)):
    ts = [t[i] for t in times_per_run if t[i] is not None]
    times.append(statistics.fmean(ts) if ts else None)
  return (steps, [statistics.fmean(v) for v in values],
          [min(v) for v in values], [max(v) for v in values], times)


def write_plots(variants: Sequence[Variant], out_dir: str) -> List[str]:
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  from matplotlib import pyplot as plt  # pylint: disable=g-import-not-at-top

  use_wall = uses_wall_time([r for v in variants for r in v.runs])
  curves = [(v, variant_curve(v, use_wall)) for v in variants]
  longest = max((t for _, c in curves for t in c[4] if t is not None),
                default=0.0)
  scale, unit = (3600, 'h') if longest > 2 * 3600 else (60, 'min')
  time_label = (f'wall time ({unit})' if use_wall else
                f'training time ({unit}, from step times; excludes '
                f'compilation and evaluation)')
  paths = []
  for kind in ('step', 'time'):
    fig, ax = plt.subplots(figsize=(8, 5))
    drew = False
    for variant, (steps, mean, lo, hi, times) in curves:
      if kind == 'step':
        xs = steps
      else:
        keep = [i for i, t in enumerate(times) if t is not None]
        xs = [times[i] / scale for i in keep]
        mean, lo, hi = ([m[i] for i in keep] for m in (mean, lo, hi))
      if not xs:
        continue
      n = len(variant.runs)
      line, = ax.plot(xs, [100 * m for m in mean], marker='o', markersize=3,
                      label=f'{variant.label} (n={n})')
      if n > 1:
        ax.fill_between(xs, [100 * v for v in lo], [100 * v for v in hi],
                        color=line.get_color(), alpha=0.15)
      drew = True
    if drew:
      ax.legend(fontsize=8)
    else:
      ax.text(0.5, 0.5, 'no evaluation yet', ha='center', va='center',
              transform=ax.transAxes)
    ax.set_xlabel('step' if kind == 'step' else time_label)
    ax.set_ylabel('eval top-1 (%), Polyak weights; band: min-max over seeds')
    ax.grid(True, alpha=0.3)
    ax.set_title(f'eval top-1 against {kind}')
    fig.tight_layout()
    path = os.path.join(out_dir, f'eval_top1_vs_{kind}.png')
    fig.savefig(path, dpi=120)
    plt.close(fig)
    paths.append(path)
  return paths


# --- The report ---------------------------------------------------------------

@dataclasses.dataclass
class Report:
  variants: List[Variant]
  variant_rows: List[Dict[str, Any]]
  run_rows: List[Dict[str, Any]]
  problems: List[str]
  markdown: str
  differences: List[Dict[str, Any]] = dataclasses.field(default_factory=list)
  switches: List[Dict[str, Any]] = dataclasses.field(default_factory=list)


# The metric the differences between variants are computed on.
DIFFERENCE_COLUMN = 'final_top1'


def variant_differences(variants: Sequence[Variant],
                        per_run: Sequence[Sequence[Dict[str, Any]]],
                        baseline: Optional[str] = None
                        ) -> List[Dict[str, Any]]:
  """Each variant's final top-1 minus the reference variant's, with its
  95% interval. The reference is the first variant whose label matches the
  regular expression `baseline`, or the first variant."""
  values = [_final_top1_by_seed(v, m) for v, m in zip(variants, per_run)]
  candidates = [i for i, v in enumerate(variants)
                if values[i] and (baseline is None or
                                  re.search(baseline, v.label))]
  if not candidates:
    return []
  ref = candidates[0]
  rows = []
  for i, variant in enumerate(variants):
    if i == ref or not values[i]:
      continue
    diff = difference(values[ref], values[i])
    rows.append({'variant': variant.label, 'reference': variants[ref].label,
                 **diff, 'verdict': verdict(diff)})
  return rows


def _final_top1_by_seed(variant: Variant, metrics: Sequence[Dict[str, Any]]
                        ) -> Dict[Any, float]:
  out = {}
  for i, (run, m) in enumerate(zip(variant.runs, metrics)):
    if m[DIFFERENCE_COLUMN] is not None:
      out[(run.config or {}).get('seed', f'run{i}')] = m[DIFFERENCE_COLUMN]
  return out


def one_switch_differences(variants: Sequence[Variant],
                           per_run: Sequence[Sequence[Dict[str, Any]]]
                           ) -> List[Dict[str, Any]]:
  """The effect of each switch with everything else held fixed.

  For every two variants whose settings differ in exactly one key (in a
  module x aux sweep: aux on -> off within each module, and the module
  within each aux setting), the second's final top-1 minus the first's,
  paired by seed, with its 95% interval. `held` names the other settings
  in which the sweep's variants differ, at the values the pair shares.
  """
  values = [_final_top1_by_seed(v, m) for v, m in zip(variants, per_run)]
  settings = [v.settings for v in variants]
  varying = _varying_keys(settings)
  rows = []
  for i, j in itertools.combinations(range(len(variants)), 2):
    a, b = settings[i], settings[j]
    changed = [k for k in varying if not _same(a.get(k), b.get(k))]
    if len(changed) != 1 or not (values[i] and values[j] and a and b):
      continue
    key = changed[0]
    diff = difference(values[i], values[j])
    held = ','.join(f'{_short(k)}={a.get(k)}' for k in varying if k != key)
    rows.append({'switch': _short(key), 'from': a.get(key), 'to': b.get(key),
                 'held': held or '-', **diff, 'verdict': verdict(diff)})
  return rows


def build_report(root: str,
                 summarize_fn: Optional[SummarizeFn] = summarize_model,
                 baseline: Optional[str] = None) -> Report:
  """Reads every run under root; the numbers and the markdown text."""
  runs = find_runs(root)
  problems = [f'{run.name}: {p}' for run in runs for p in run.problems]
  variants = group_variants(runs)
  cache: Dict[str, Dict[str, int]] = {}
  variant_rows, run_rows, all_metrics = [], [], []
  for variant in variants:
    variant.model = model_columns(variant, summarize_fn, cache, problems)
    per_run = [run_metrics(run) for run in variant.runs]
    all_metrics.append(per_run)
    row: Dict[str, Any] = {'variant': variant.label, **variant.model,
                           'runs': len(variant.runs),
                           'finished': sum(r.finished for r in variant.runs)}
    for column, _ in METRIC_COLUMNS:
      agg = aggregate([m[column] for m in per_run])
      for stat, value in agg.items():
        row[f'{column}_{stat}'] = value
    variant_rows.append(row)
    for run, metrics in zip(variant.runs, per_run):
      seed = (run.config or {}).get('seed')
      run_rows.append({'run': run.name, 'variant': variant.label,
                       'seed': seed, 'status': run.status,
                       'last_step': run.last_step, **metrics})
  differences = variant_differences(variants, all_metrics, baseline)
  switches = one_switch_differences(variants, all_metrics)
  markdown = format_markdown(root, variant_rows, run_rows, problems,
                             uses_wall_time(runs), differences, switches)
  return Report(variants, variant_rows, run_rows, problems, markdown,
                differences, switches)


def _format_difference(diff: Dict[str, Any]) -> str:
  """'+1.38 ± 0.94' in percentage points (no interval for a single run)."""
  text = f'{100 * diff["mean"]:+.2f}'
  if diff['ci95'] is not None:
    text += f' ± {100 * diff["ci95"]:.2f}'
  return text


def format_markdown(root: str, variant_rows, run_rows, problems,
                    wall_from_metrics: bool, differences=(),
                    switches=()) -> str:
  metric_headers = [h for _, h in METRIC_COLUMNS]
  header = (['variant', 'runs (finished)', 'input', 'params',
             'params with aux', 'mult-adds', 'mult-adds @224'] +
            metric_headers)
  rows = []
  for row in variant_rows:
    size = row['image_size']
    rows.append(
        [row['variant'], f'{row["runs"]} ({row["finished"]})',
         f'{size}x{size}' if size else '-', format_count(row['params']),
         format_count(row['params_with_aux']), format_count(row['macs']),
         format_count(row['macs_224'])] +
        [format_aggregate(c, {s: row[f'{c}_{s}'] for s in
                              ('mean', 'std', 'min', 'max', 'n', 'ci95')})
         for c, _ in METRIC_COLUMNS])
  run_header = ['run', 'variant', 'seed', 'status'] + metric_headers
  run_table = [[r['run'], r['variant'], str(r['seed']), r['status']] +
               [format_value(c, r[c]) for c, _ in METRIC_COLUMNS]
               for r in run_rows]
  parts = [
      f'# Sweep report: {root}', '',
      'Accuracies in %, on the evaluation split, with the Polyak-averaged '
      'weights unless marked raw. Where a variant has several runs (seeds): '
      'mean ± the half-width of its 95% confidence interval (Student\'s t '
      'over the seeds; speeds and times: mean (min–max)); report.csv also '
      'has the sample std, min and max. "top-5 at best" '
      'is the top-5 of the evaluation with the best top-1. Params and '
      'mult-adds: inference model (no auxiliary heads) at the run\'s input '
      'size and at 224x224; "params with aux" adds the auxiliary heads at '
      'the run\'s input size. Train time: the sum of logged step times '
      '(no compilation, evaluation or saving). Wall time: ' +
      ('as logged in metrics.jsonl.' if wall_from_metrics else
       'from summary.json (the last session of a resumed run only).'), '',
      markdown_table(header, rows), '']
  if differences:
    ref = differences[0]['reference']
    parts += [
        f'## Differences from {ref}', '',
        'Final top-1 (percentage points) of each variant minus that of '
        f'{ref}, with its 95% confidence interval; paired by seed where the '
        'variants share seeds. An interval that contains 0 means these seeds '
        'cannot tell the two apart.', '',
        markdown_table(
            ['variant', 'difference', 'seeds', 'method', 'verdict'],
            [[d['variant'], _format_difference(d), str(d['n']), d['method'],
              d['verdict']] for d in differences]),
        '']
  if switches:
    parts += [
        '## One switch at a time', '',
        'Every two variants that differ in one setting only: final top-1 '
        '(percentage points) of the second minus the first, the other '
        'settings held where the table says, with its 95% confidence '
        'interval (paired by seed where the two share seeds).', '',
        markdown_table(
            ['switch', 'from', 'to', 'held', 'difference (to - from)',
             'seeds', 'method', 'verdict'],
            [[d['switch'], str(d['from']), str(d['to']), d['held'],
              _format_difference(d), str(d['n']), d['method'], d['verdict']]
             for d in switches]),
        '']
  parts += ['## Runs', '',
      markdown_table(run_header, run_table),
  ]
  if problems:
    parts += ['', '## Missing or unreadable', '']
    parts += [f'- {p}' for p in problems]
  return '\n'.join(parts) + '\n'


def write_csv(path: str, rows: Sequence[Dict[str, Any]]) -> None:
  fields: List[str] = []
  for row in rows:
    fields += [k for k in row if k not in fields]
  with open(path, 'w', newline='', encoding='utf-8') as f:
    writer = csv.DictWriter(f, fieldnames=fields)
    writer.writeheader()
    for row in rows:
      writer.writerow({k: '' if v is None else v for k, v in row.items()})


def write_report(root: str, out_dir: Optional[str] = None,
                 summarize_fn: Optional[SummarizeFn] = summarize_model,
                 baseline: Optional[str] = None) -> Report:
  """Writes report.md, report.csv, report_runs.csv and the plots."""
  out_dir = out_dir or root
  os.makedirs(out_dir, exist_ok=True)
  report = build_report(root, summarize_fn, baseline)
  with open(os.path.join(out_dir, 'report.md'), 'w', encoding='utf-8') as f:
    f.write(report.markdown)
  write_csv(os.path.join(out_dir, 'report.csv'), report.variant_rows)
  write_csv(os.path.join(out_dir, 'report_runs.csv'), report.run_rows)
  write_plots(report.variants, out_dir)
  return report


FLAGS = flags.FLAGS


def main(argv) -> None:
  del argv
  if not os.path.isdir(FLAGS.root):
    raise ValueError(f'--root={FLAGS.root} is not a directory (for a gs:// '
                     'sweep, copy it here first: launch --action=results).')
  report = write_report(FLAGS.root, FLAGS.out,
                        summarize_model if FLAGS.flops else None,
                        FLAGS.baseline)
  print(report.markdown)
  out = FLAGS.out or FLAGS.root
  print(f'Wrote {os.path.join(out, "report.md")}, report.csv, '
        f'report_runs.csv, eval_top1_vs_step.png and eval_top1_vs_time.png.')


def define_flags() -> None:
  cli.DEFINE_path('root', None, 'The sweep\'s directory.')
  cli.DEFINE_path('out', None, 'Where to write; default: --root.')
  flags.DEFINE_bool('flops', True,
                    'Count parameters and multiply-adds (a few seconds per '
                    'variant).')
  flags.DEFINE_string('baseline', None,
                      'Regular expression naming the variant the others are '
                      'compared with; default: the first variant.')
  flags.mark_flag_as_required('root')


if __name__ == '__main__':
  cli.run(main, define_flags)
