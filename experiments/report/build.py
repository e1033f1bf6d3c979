"""A sweep's report from its run directories: the numbers, then the files."""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Dict, List, Optional, Sequence

from experiments.report import contrasts
from experiments.report import grouping
from experiments.report import metrics
from experiments.report import model_counts
from experiments.report import plots
from experiments.report import run_dirs
from experiments.report import stats
from experiments.report import tables

Row = Dict[str, Any]


@dataclasses.dataclass
class Report:
  variants: List[grouping.Variant]
  variant_rows: List[Row]
  run_rows: List[Row]
  problems: List[str]
  markdown: str
  differences: List[Row] = dataclasses.field(default_factory=list)
  switches: List[Row] = dataclasses.field(default_factory=list)


def _variant_row(variant: grouping.Variant,
                 per_run: Sequence[Dict[str, Optional[float]]]) -> Row:
  """The variant's model columns, run counts and every metric aggregated
  over its runs (`<column>_<mean|std|min|max|n|ci95>`)."""
  row: Row = {'variant': variant.label, **variant.model,
              'runs': len(variant.runs),
              'finished': sum(r.finished for r in variant.runs)}
  for column, _ in metrics.METRIC_COLUMNS:
    agg = stats.aggregate([m[column] for m in per_run])
    for stat, value in agg.items():
      row[f'{column}_{stat}'] = value
  return row


def _run_rows(variant: grouping.Variant,
              per_run: Sequence[Dict[str, Optional[float]]]) -> List[Row]:
  return [{'run': run.name, 'variant': variant.label,
           'seed': (run.config or {}).get('seed'), 'status': run.status,
           'last_step': run.last_step, **m}
          for run, m in zip(variant.runs, per_run)]


def build_report(root: str,
                 summarize_fn: Optional[model_counts.SummarizeFn] = (
                     model_counts.summarize_model),
                 baseline: Optional[str] = None) -> Report:
  """Reads every run under root; the numbers and the markdown text.

  summarize_fn: counts a model's parameters and multiply-adds; None leaves
    those columns empty. baseline: a regular expression naming the variant
    the others are compared with (default: the first).
  """
  runs = run_dirs.find_runs(root)
  problems = [f'{run.name}: {p}' for run in runs for p in run.problems]
  variants = grouping.group_variants(runs)
  cache: Dict[str, Dict[str, int]] = {}
  per_variant = []
  for variant in variants:
    variant.model = model_counts.model_columns(variant, summarize_fn, cache,
                                               problems)
    per_variant.append([metrics.run_metrics(run) for run in variant.runs])
  variant_rows = [_variant_row(v, m) for v, m in zip(variants, per_variant)]
  run_rows = [row for v, m in zip(variants, per_variant)
              for row in _run_rows(v, m)]
  differences = contrasts.variant_differences(variants, per_variant, baseline)
  switches = contrasts.one_switch_differences(variants, per_variant)
  contrasts.judge(differences, switches)
  markdown = tables.format_markdown(root, variant_rows, run_rows, problems,
                                    metrics.uses_wall_time(runs), differences,
                                    switches)
  return Report(variants, variant_rows, run_rows, problems, markdown,
                differences, switches)


def write_report(root: str, out_dir: Optional[str] = None,
                 summarize_fn: Optional[model_counts.SummarizeFn] = (
                     model_counts.summarize_model),
                 baseline: Optional[str] = None) -> Report:
  """Writes report.md, report.csv, report_runs.csv and the plots to
  out_dir (default: root)."""
  out_dir = out_dir or root
  os.makedirs(out_dir, exist_ok=True)
  report = build_report(root, summarize_fn, baseline)
  with open(os.path.join(out_dir, 'report.md'), 'w', encoding='utf-8') as f:
    f.write(report.markdown)
  tables.write_csv(os.path.join(out_dir, 'report.csv'), report.variant_rows)
  tables.write_csv(os.path.join(out_dir, 'report_runs.csv'), report.run_rows)
  plots.write_plots(report.variants, out_dir)
  return report
