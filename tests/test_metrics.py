"""metrics.jsonl on local disks and on object stores that cannot append."""

import json

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
