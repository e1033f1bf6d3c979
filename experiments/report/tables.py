"""The report's tables: report.md (markdown) and the CSV files."""

from __future__ import annotations

import csv
from typing import Any, Dict, List, Optional, Sequence

from experiments.report import metrics
from experiments.report import stats

Row = Dict[str, Any]


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
  if column in metrics.ACCURACY_COLUMNS:
    return f'{100 * value:.2f}'
  if column in metrics.TIME_COLUMNS:
    return format_duration(value)
  return f'{value:.0f}'


def format_aggregate(column: str, agg: Dict[str, Optional[float]]) -> str:
  """'85.00 ± 63.53' for accuracies, 'mean (min–max)' for the rest."""
  if not agg['n']:
    return '-'
  mean = format_value(column, agg['mean'])
  if agg['n'] == 1 or agg.get('ci95') is None:
    return mean
  if column in metrics.ACCURACY_COLUMNS:
    return f'{mean} ± {100 * agg["ci95"]:.2f}'
  return (f'{mean} ({format_value(column, agg["min"])}–'
          f'{format_value(column, agg["max"])})')


def format_difference(diff: Dict[str, Any]) -> str:
  """'+1.38 ± 0.94' in percentage points (no interval for a single run)."""
  text = f'{100 * diff["mean"]:+.2f}'
  if diff['ci95'] is not None:
    text += f' ± {100 * diff["ci95"]:.2f}'
  return text


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]
                   ) -> str:
  lines = ['| ' + ' | '.join(header) + ' |',
           '|' + '|'.join('---' for _ in header) + '|']
  lines += ['| ' + ' | '.join(row) + ' |' for row in rows]
  return '\n'.join(lines)


_METRIC_HEADERS = [h for _, h in metrics.METRIC_COLUMNS]


def _legend(wall_from_metrics: bool) -> str:
  return (
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
       'from summary.json (the last session of a resumed run only).'))


def _variant_cells(row: Row) -> List[str]:
  size = row['image_size']
  return (
      [row['variant'], f'{row["runs"]} ({row["finished"]})',
       f'{size}x{size}' if size else '-', format_count(row['params']),
       format_count(row['params_with_aux']), format_count(row['macs']),
       format_count(row['macs_224'])] +
      [format_aggregate(c, {s: row[f'{c}_{s}'] for s in stats.AGGREGATE_KEYS})
       for c, _ in metrics.METRIC_COLUMNS])


def variant_table(variant_rows: Sequence[Row]) -> str:
  header = ['variant', 'runs (finished)', 'input', 'params',
            'params with aux', 'mult-adds', 'mult-adds @224'] + _METRIC_HEADERS
  return markdown_table(header, [_variant_cells(r) for r in variant_rows])


def run_table(run_rows: Sequence[Row]) -> str:
  header = ['run', 'variant', 'seed', 'status'] + _METRIC_HEADERS
  return markdown_table(
      header, [[r['run'], r['variant'], str(r['seed']), r['status']] +
               [format_value(c, r[c]) for c, _ in metrics.METRIC_COLUMNS]
               for r in run_rows])


_FAMILY = (
    'Shown: the two-sided t-test\'s p-value, Holm-adjusted over every '
    'distinct pair of variants this report compares, is below 0.05 (the '
    'intervals are per contrast: one can exclude 0 while the adjusted test '
    'does not show the difference).')


def _differences_section(differences: Sequence[Row]) -> List[str]:
  ref = differences[0]['reference']
  return [
      f'## Differences from {ref}', '',
      'Final top-1 (percentage points) of each variant minus that of '
      f'{ref}, with its 95% confidence interval; paired by seed where the '
      'variants share seeds. ' + _FAMILY, '',
      markdown_table(
          ['variant', 'difference', 'seeds', 'method', 'verdict'],
          [[d['variant'], format_difference(d), str(d['n']), d['method'],
            d['verdict']] for d in differences]),
      '']


def _switches_section(switches: Sequence[Row]) -> List[str]:
  return [
      '## One switch at a time', '',
      'Every two variants that differ in one setting only: final top-1 '
      '(percentage points) of the second minus the first, the other '
      'settings held where the table says, with its 95% confidence '
      'interval (paired by seed where the two share seeds). ' + _FAMILY, '',
      markdown_table(
          ['switch', 'from', 'to', 'held', 'difference (to - from)',
           'seeds', 'method', 'verdict'],
          [[d['switch'], str(d['from']), str(d['to']), d['held'],
            format_difference(d), str(d['n']), d['method'], d['verdict']]
           for d in switches]),
      '']


def format_markdown(root: str, variant_rows: Sequence[Row],
                    run_rows: Sequence[Row], problems: Sequence[str],
                    wall_from_metrics: bool,
                    differences: Sequence[Row] = (),
                    switches: Sequence[Row] = ()) -> str:
  """report.md: the variants, the differences between them, the runs and
  what could not be read."""
  parts = [f'# Sweep report: {root}', '', _legend(wall_from_metrics), '',
           variant_table(variant_rows), '']
  if differences:
    parts += _differences_section(differences)
  if switches:
    parts += _switches_section(switches)
  parts += ['## Runs', '', run_table(run_rows)]
  if problems:
    parts += ['', '## Missing or unreadable', '']
    parts += [f'- {p}' for p in problems]
  return '\n'.join(parts) + '\n'


def write_csv(path: str, rows: Sequence[Row]) -> None:
  """The rows, one column per key any row has (empty where None)."""
  fields: List[str] = []
  for row in rows:
    fields += [k for k in row if k not in fields]
  with open(path, 'w', newline='', encoding='utf-8') as f:
    writer = csv.DictWriter(f, fieldnames=fields)
    writer.writeheader()
    for row in rows:
      writer.writerow({k: '' if v is None else v for k, v in row.items()})
