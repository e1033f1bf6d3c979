"""Sweeps over the training configs: run locally, launch on Cloud TPU, report.

  sweeps.py  named sweeps (lists of members) built from product/zip helpers
  run.py     runs a sweep's members one after another on this machine
  launch.py  prints or runs the gcloud commands that run a sweep on Cloud TPU
  report/    turns a sweep's run directories into a table, a CSV and plots
"""
