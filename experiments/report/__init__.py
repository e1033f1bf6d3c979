"""A sweep's report: `python -m experiments.report --root=DIR` (see __main__).

  run_dirs.py      reads each run directory: config, metrics, summary
  metrics.py       one run's numbers: best and final accuracy, speed, times
  grouping.py      runs grouped into variants (same settings but the seed)
  model_counts.py  parameters and multiply-adds of a variant's model
  stats.py         means, 95% t-intervals and differences (scipy.stats)
  contrasts.py     which variants are compared: baseline, one switch
  tables.py        report.md and the CSV files
  plots.py         eval top-1 against step and time
  build.py         all of it for one sweep: build_report, write_report
  __main__.py      the command line
"""
