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

import os

from absl import flags

from inception_jax import cli
from experiments.report import build
from experiments.report import model_counts

FLAGS = flags.FLAGS


def main(argv) -> None:
  del argv
  if not os.path.isdir(FLAGS.root):
    raise ValueError(f'--root={FLAGS.root} is not a directory (for a gs:// '
                     'sweep, copy it here first: launch --action=results).')
  report = build.write_report(
      FLAGS.root, FLAGS.out,
      model_counts.summarize_model if FLAGS.flops else None, FLAGS.baseline)
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
