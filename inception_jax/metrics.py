"""Where training metrics go: TensorBoard, `metrics.jsonl` and the terminal.

TensorBoard (`DIR/tensorboard/`, scalar events as the flax examples write
them through clu) is for looking at curves; `DIR/metrics.jsonl` (one JSON
object per logged step, with `step` and the metric names as keys) is for
scripts and plots that should not depend on TensorBoard's event format; the
progress line is for the person watching the run. Only process 0 writes any
of them.

The event files are written with TensorBoard's own protos and record
checksum, not through TensorFlow's summary writer (clu's): importing
TensorFlow costs every trainer process about 2.4 s of CPU at start-up, and a
Fashion-MNIST run needs TensorFlow for nothing else.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import socket
import struct
import sys
import time
from typing import Any, Mapping, Optional, Sequence

import jax
import numpy as np
from etils import epath


def can_append(path: str) -> bool:
  """Whether `path`'s file system appends in place: local paths do; object
  stores (a scheme such as gs://) do not, and their files are rewritten."""
  return '://' not in str(path)


class _RewrittenFile:
  """Append-like writes to an object store (gs://), which cannot append:
  the contents are kept and the whole file is rewritten on flush. A metrics
  or event file holds a few thousand short records at most."""

  def __init__(self, path: epath.Path, *, binary: bool = False):
    self._path = path
    self._binary = binary
    empty = b'' if binary else ''
    if path.exists():
      self._data = path.read_bytes() if binary else path.read_text()
    else:
      self._data = empty
    self._dirty = False

  def write(self, data):
    self._data += data
    self._dirty = True

  def flush(self):
    if self._dirty:
      if self._binary:
        self._path.write_bytes(self._data)
      else:
        self._path.write_text(self._data)
      self._dirty = False

  def close(self):
    self.flush()


def _open_for_append(path: str, append: Optional[bool], binary: bool):
  if can_append(path) if append is None else append:
    return open(path, 'ab' if binary else 'a',
                **({} if binary else {'encoding': 'utf-8'}))
  return _RewrittenFile(epath.Path(path), binary=binary)


class JsonlWriter:
  """Appends one JSON line per `write_scalars` call: {"step": s, name: v}.

  Args:
    path: the metrics file; lines already in it are kept.
    append: whether to append to the file in place (True) or keep its lines
      and rewrite it whole on every flush (False, what an object store needs);
      None: `can_append(path)`.
  """

  def __init__(self, path: str, *, append: Optional[bool] = None):
    self._file = _open_for_append(path, append, binary=False)

  def write_scalars(self, step: int, scalars: Mapping[str, Any]):
    record = {'step': int(step)}
    for name, value in scalars.items():
      value = float(np.asarray(value))
      # JSON has no NaN/Inf; null keeps the line parseable.
      record[name] = value if math.isfinite(value) else None
    self._file.write(json.dumps(record) + '\n')
    self._file.flush()

  def flush(self):
    self._file.flush()

  def close(self):
    self._file.close()


def _masked_crc32c(data: bytes) -> int:
  # TensorBoard's pure-Python CRC-32C (its TensorFlow stub, not TensorFlow).
  from tensorboard.compat.tensorflow_stub import pywrap_tensorflow  # pylint: disable=g-import-not-at-top
  return pywrap_tensorflow.masked_crc32c(data)


def tfrecord(data: bytes) -> bytes:
  """One TFRecord: the length, its masked CRC-32C, the data, its CRC."""
  length = struct.pack('<Q', len(data))
  return (length + struct.pack('<I', _masked_crc32c(length)) + data +
          struct.pack('<I', _masked_crc32c(data)))


# Numbers the event files of one process apart (TensorFlow's `.N` suffix).
_EVENT_FILES = itertools.count()


class TensorBoardWriter:
  """Scalars as a TensorBoard event file in `directory`.

  One file per writer, named as TensorFlow names its event files; a resumed
  run adds a file beside the earlier ones and TensorBoard reads them all. On
  an object store the file is rewritten whole on each write (`append`, as for
  `JsonlWriter`).
  """

  def __init__(self, directory: str, *, append: Optional[bool] = None):
    # pylint: disable=g-import-not-at-top
    from tensorboard.compat.proto import event_pb2
    from tensorboard.compat.proto import summary_pb2
    # pylint: enable=g-import-not-at-top
    self._event, self._summary = event_pb2.Event, summary_pb2.Summary
    epath.Path(directory).mkdir(parents=True, exist_ok=True)
    name = (f'events.out.tfevents.{int(time.time())}.{socket.gethostname()}'
            f'.{os.getpid()}.{next(_EVENT_FILES)}.v2')
    self.path = os.path.join(directory, name)
    self._file = _open_for_append(self.path, append, binary=True)
    self._write(self._event(wall_time=time.time(),
                            file_version='brain.Event:2'))

  def _write(self, event) -> None:
    self._file.write(tfrecord(event.SerializeToString()))
    self._file.flush()

  def write_scalars(self, step: int, scalars: Mapping[str, Any]):
    values = [self._summary.Value(tag=name,
                                  simple_value=float(np.asarray(value)))
              for name, value in scalars.items()]
    self._write(self._event(wall_time=time.time(), step=int(step),
                            summary=self._summary(value=values)))

  def flush(self):
    self._file.flush()

  def close(self):
    self._file.close()


class Writers:
  """The writers of a run as one: each call goes to every writer."""

  def __init__(self, writers: Sequence[Any]):
    self._writers = list(writers)

  def write_scalars(self, step: int, scalars: Mapping[str, Any]):
    for writer in self._writers:
      writer.write_scalars(step, scalars)

  def flush(self):
    for writer in self._writers:
      writer.flush()

  def close(self):
    for writer in self._writers:
      writer.close()


def _records(path: epath.Path):
  """(line, record) for each line of a metrics file that parses."""
  for line in path.read_text().splitlines(keepends=True):
    try:
      record = json.loads(line)
      int(record['step'])
    except (ValueError, KeyError, TypeError):
      continue  # a line cut short by a kill
    yield line, record


def truncate_jsonl(path: str, last_step: int) -> None:
  """Drops records after `last_step`, so a resumed run does not repeat them.

  Steps logged after the checkpoint a run resumes from are trained again; the
  file then holds each step once, from the run that the checkpoint continues.
  """
  path = epath.Path(path)
  if not path.exists():
    return
  path.write_text(''.join(line for line, record in _records(path)
                          if record['step'] <= last_step))


def create_writer(workdir: str, *, is_primary: bool,
                  resume_step: Optional[int] = None) -> Writers:
  """TensorBoard events in DIR/tensorboard plus DIR/metrics.jsonl.

  Other processes than the primary get a writer that drops everything, so
  the training loop does not branch on the process index.
  """
  if not is_primary:
    return Writers([])
  jsonl = os.path.join(workdir, 'metrics.jsonl')
  if resume_step is not None:
    truncate_jsonl(jsonl, resume_step)
  return Writers([TensorBoardWriter(os.path.join(workdir, 'tensorboard')),
                  JsonlWriter(jsonl)])


def format_duration(seconds: float) -> str:
  seconds = int(max(0, seconds))
  h, rest = divmod(seconds, 3600)
  m, s = divmod(rest, 60)
  if h:
    return f'{h}h{m:02d}m'
  if m:
    return f'{m}m{s:02d}s'
  return f'{s}s'


class Progress:
  """The terminal progress line: step, epoch, loss, accuracy, speed, ETA.

  The rate behind the ETA comes from the last logging interval, so the first
  step's compilation does not distort it.
  """

  def __init__(self, *, total_steps: int, steps_per_epoch: int,
               enabled: bool, stream=None, previous_seconds: float = 0.0):
    self.total_steps = total_steps
    # Wall time of earlier sessions of a resumed run.
    self.previous_seconds = previous_seconds
    self.steps_per_epoch = max(1, steps_per_epoch)
    self.enabled = enabled
    self.stream = stream or sys.stdout
    self.start_time = time.time()

  def print(self, text: str) -> None:
    if self.enabled:
      print(text, file=self.stream, flush=True)

  def train_line(self, step: int, scalars: Mapping[str, float],
                 seconds_per_step: float) -> None:
    eta = (self.total_steps - step) * seconds_per_step
    width = len(str(self.total_steps))
    parts = [f'step {step:>{width}}/{self.total_steps}',
             f'epoch {step / self.steps_per_epoch:6.2f}',
             f'loss {scalars["train/loss"]:.4f}',
             f'top1 {100 * scalars["train/top1"]:5.1f}%',
             f'lr {scalars["train/lr"]:.3g}',
             f'{scalars["train/images_per_sec"]:.0f} img/s',
             f'data wait '
             f'{100 * scalars.get("train/data_wait_fraction", 0.0):.0f}%',
             f'ETA {format_duration(eta)}']
    self.print(' | '.join(parts))

  def eval_line(self, step: int, scalars: Mapping[str, float]) -> None:
    for prefix, label in (('eval', 'Polyak average'), ('eval_raw', 'raw')):
      if f'{prefix}/top1' in scalars:
        self.print(
            f'eval at step {step}: top1 {100 * scalars[prefix + "/top1"]:.2f}% '
            f'top5 {100 * scalars[prefix + "/top5"]:.2f}% '
            f'loss {scalars[prefix + "/loss"]:.4f} '
            f'({int(scalars[prefix + "/num_examples"])} images, {label})')

  def done_line(self, step: int, eval_scalars: Mapping[str, float],
                checkpoints: Any, workdir: str) -> None:
    top1 = eval_scalars.get('eval/top1')
    self.print(
        f'Done: {step} steps in {format_duration(self.total_elapsed())}'
        + (f' ({format_duration(self.elapsed())} this session)'
           if self.previous_seconds else '')
        + (f', eval top1 {100 * top1:.2f}% (Polyak average) on '
           f'{eval_scalars["eval/num_examples"]} images' if top1 is not None
           else '')
        + f'. Checkpoints in {checkpoints}, metrics in '
        f'{os.path.join(workdir, "metrics.jsonl")}.')

  def elapsed(self) -> float:
    """Seconds since this session started."""
    return time.time() - self.start_time

  def total_elapsed(self) -> float:
    """Seconds of the whole run, earlier sessions of a resumed run included."""
    return self.previous_seconds + self.elapsed()


class StepTrace:
  """A `jax.profiler` trace of ``num_steps`` training steps into ``logdir``.

  It starts once the session's first step (its compilation) is done and
  stops after ``num_steps`` more or at the run's last step, the device's
  work finished first so that the trace holds it. TensorBoard finds it under
  ``logdir/plugins/profile/``, beside the scalars.
  """

  def __init__(self, logdir: str, num_steps: int, *, start_step: int,
               total_steps: int, progress: Progress):
    self.logdir, self.num_steps = logdir, num_steps
    self.first = start_step + 2
    self.last = min(start_step + 1 + num_steps, total_steps)
    self.progress = progress
    self.active = False

  def after_step(self, step: int, metrics) -> None:
    """Called after each step is dispatched (its metrics not yet ready)."""
    if self.num_steps <= 0 or self.first > self.last:
      return
    if step == self.first - 1:
      jax.block_until_ready(metrics)
      jax.profiler.start_trace(self.logdir)
      self.active = True
    elif step == self.last and self.active:
      jax.block_until_ready(metrics)
      jax.profiler.stop_trace()
      self.active = False
      self.progress.print(
          f'Profiled steps {self.first}-{self.last} into {self.logdir}/'
          f'plugins/profile: tensorboard --logdir {self.logdir}')
