"""metrics.jsonl and the TensorBoard events, on local disks and on object
stores that cannot append."""

import json

import numpy as np

from inception_jax import metrics


def _steps(path):
  return [json.loads(line)['step'] for line in open(path)]


def test_rewritten_file_keeps_earlier_lines_and_resume_truncates(tmp_path):
  path = tmp_path / 'metrics.jsonl'
  first = metrics.JsonlWriter(str(path))
  first.write_scalars(1, {'train/loss': 2.0})
  first.write_scalars(2, {'train/loss': float('nan')})
  first.close()
  # The object-store path (as for gs://) on a local file: whole rewrites.
  metrics.truncate_jsonl(str(path), 1)
  store = metrics.JsonlWriter(str(path), append=False)
  # Each flush writes the whole file from the writer's copy of its lines: a
  # file gone meanwhile comes back whole, where an append would leave only
  # the new lines.
  path.unlink()
  store.write_scalars(2, {'train/loss': 1.5})
  store.write_scalars(3, {'train/loss': 1.0})
  store.close()
  assert _steps(path) == [1, 2, 3]
  assert json.loads(open(path).readlines()[1])['train/loss'] == 1.5
  assert not metrics.can_append('gs://bucket/run')
  assert metrics.can_append(str(path))


def test_resume_keeps_whole_lines(tmp_path):
  path = tmp_path / 'metrics.jsonl'
  path.write_text('{"step": 2, "wall_time_sec": 10.0}\n'
                  '{"step": 3, "eval/top1": 0.5}\n'
                  '{"step": 4, "wall_time_sec": 20.0}\n'
                  '{"step": 6, "wall_time_sec": 30.0}\n'
                  '{"step": 8, "wall_ti')  # cut short by a kill
  metrics.truncate_jsonl(str(path), 4)
  assert _steps(path) == [2, 3, 4]


def test_tensorboard_events_read_back_in_tensorboard_and_tensorflow(tmp_path):
  """The event files, written without TensorFlow, are what TensorBoard and
  TensorFlow's own record reader read: the scalars at their steps, every
  record's checksum right. A resumed run's writer adds a second file."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from tensorboard.backend.event_processing import event_accumulator  # pylint: disable=g-import-not-at-top
  directory = str(tmp_path / 'tensorboard')
  first = metrics.TensorBoardWriter(directory)
  first.write_scalars(2, {'train/loss': 2.5, 'train/lr': 0.1})
  first.write_scalars(4, {'train/loss': np.float32(1.25), 'train/lr': 0.05})
  first.close()
  # The object-store path (rewritten whole) on a local file, resumed.
  second = metrics.TensorBoardWriter(directory, append=False)
  second.write_scalars(6, {'train/loss': 0.75, 'eval/top1': 0.5})
  second.close()
  assert first.path != second.path

  events = event_accumulator.EventAccumulator(directory)
  events.Reload()
  assert [(e.step, e.value) for e in events.Scalars('train/loss')] == [
      (2, 2.5), (4, 1.25), (6, 0.75)]
  assert [(e.step, e.value) for e in events.Scalars('eval/top1')] == [(6, 0.5)]
  # TensorFlow's reader checks each record's length and data checksums.
  for path in (first.path, second.path):
    records = list(tf.data.TFRecordDataset(path).as_numpy_iterator())
    parsed = [tf.compat.v1.Event.FromString(r) for r in records]
    assert parsed[0].file_version == 'brain.Event:2'
    assert all(e.summary.value for e in parsed[1:])
