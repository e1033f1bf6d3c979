"""A sweep's run directories, read: config, metrics and summary of each.

Missing or unreadable files are noted on the run, never raised, so a sweep
that is still running, or a run killed mid-write, is still reported.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Dict, List, Optional, Tuple

from experiments import run as run_lib

# Files of which any one makes a directory a run.
RUN_FILES = ('config.json', 'metrics.jsonl', run_lib.FINISHED_MARKER)


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


def _read_config(run: Run) -> None:
  run.config = _read_json(os.path.join(run.path, 'config.json'), run.problems)
  if run.config is None and not any('config.json' in p for p in run.problems):
    run.problems.append('config.json missing')


def _read_metrics(run: Run) -> None:
  path = os.path.join(run.path, 'metrics.jsonl')
  if not os.path.exists(path):
    run.problems.append('metrics.jsonl missing')
    return
  try:
    run.records, bad = read_jsonl(path)
  except OSError as e:
    run.problems.append(f'metrics.jsonl unreadable: {e}')
    return
  if bad:
    run.problems.append(f'metrics.jsonl: {bad} unreadable line(s) skipped')
  run.records.sort(key=lambda r: r['step'])


def load_run(path: str, name: Optional[str] = None) -> Run:
  run = Run(name=name or os.path.basename(os.path.normpath(path)), path=path)
  _read_config(run)
  run.summary = _read_json(os.path.join(path, run_lib.FINISHED_MARKER),
                           run.problems)
  _read_metrics(run)
  return run


def _is_run(path: str) -> bool:
  return any(os.path.exists(os.path.join(path, f)) for f in RUN_FILES)


def find_runs(root: str) -> List[Run]:
  """Every directory under root (root itself included) that looks like a run.

  A directory with only `checkpoints/` counts: its run has not written its
  config yet, and the report lists it as such.
  """
  runs = [load_run(root)] if _is_run(root) else []
  for entry in sorted(os.listdir(root)):
    path = os.path.join(root, entry)
    if os.path.isdir(path) and (
        _is_run(path) or os.path.isdir(os.path.join(path, 'checkpoints'))):
      runs.append(load_run(path, entry))
  return runs
