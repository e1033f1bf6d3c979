"""Saving and resuming: exact resume after SIGKILL and SIGTERM, the saved
layout, old layouts, and resumes that must be refused.

The uninterrupted reference is the session's shared `tiny_run` (6 steps,
checkpoints at 3 and 6). Crashes run in subprocesses through the trainer's
seams (`tests/runner.py`); refusals and SIGTERM run in-process.
"""

import json
import os
import shutil
import signal

import flax
import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from inception_jax import checkpointing
from inception_jax import restore
from inception_jax import train
from inception_jax.data import pipeline
from tests.helpers import (TINY_CONFIG, assert_trees_equal, restore_state,
                           run_main, run_python, saved_steps, tiny_config)
from tests.runner import InputWrapper


def test_sigkill_then_resume_is_bit_identical(tiny_run, tmp_path):
  workdir = tmp_path / 'run'
  killed = run_python(['-m', 'tests.runner', f'--config={TINY_CONFIG}',
                       '--kill_at_step=5', '--kill_after_checkpoint=3',
                       f'--workdir={workdir}'])
  assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
  assert saved_steps(workdir) == [3]
  # The killed trainer's workdir lock is left behind; the rerun takes it over
  # (its pid is dead) and releases it at the end.
  lock_file = workdir / 'lock.json'
  assert json.loads(lock_file.read_text())['pid'] != os.getpid()

  resumed = run_main([f'--config={TINY_CONFIG}', f'--workdir={workdir}'])
  assert resumed.returncode == 0, resumed.stderr[-3000:]
  assert 'Resuming from the checkpoint at step 3' in resumed.stdout
  assert not lock_file.exists()
  assert_trees_equal(restore_state(tiny_run, 6), restore_state(workdir, 6))

  # The metrics file holds each step once, and the same numbers where a
  # logging interval lies wholly in one session (step 4's interval of the
  # resumed run is step 4 alone).
  def train_records(d):
    return [json.loads(l) for l in open(os.path.join(d, 'metrics.jsonl'))
            if 'train/loss' in l]
  a, b = train_records(tiny_run), train_records(workdir)
  assert [r['step'] for r in b] == [2, 4, 6]
  for i in (0, 2):
    assert a[i]['train/loss'] == b[i]['train/loss']

  # The clock continues from the checkpoint's: the resumed session's records
  # start after the killed session's time at step 3, and the summary counts
  # both sessions.
  clock = checkpointing.Clock.from_json(
      restore.load(workdir).meta['clock'])
  assert clock.examples_seen == 6 * 16
  walls = [r['wall_time_sec'] for r in b]
  assert walls == sorted(walls) and walls[0] > 0
  summary = json.loads((workdir / 'summary.json').read_text())
  assert summary['wall_time_sec'] > summary['session_wall_time_sec'] > 0
  assert 'this session' in resumed.stdout.splitlines()[-1]


def test_checkpoint_contents(tiny_run):
  step_dir = os.path.join(tiny_run, 'checkpoints', '6')
  assert 'process_0-of-1.json' in os.listdir(
      os.path.join(step_dir, 'data_iterator'))
  with ocp.CheckpointManager(os.path.join(tiny_run, 'checkpoints'),
                             item_names=checkpointing.ITEMS) as mngr:
    restored = mngr.restore(6, args=ocp.args.Composite(
        metadata=ocp.args.JsonRestore(), config=ocp.args.JsonRestore()))
  meta = restored['metadata']
  assert meta['format'] == checkpointing.FORMAT and meta['step'] == 6
  assert meta['model']['num_classes'] == 10
  assert meta['model']['width'] == 0.0625
  assert meta['model']['dtype'] == 'float32'
  assert meta['dataset']['class_names'][0] == 'T-shirt/top'
  assert meta['clock']['examples_seen'] == 6 * 16
  assert meta['clock']['wall_time_sec'] > 0
  assert restored['config']['total_steps'] == 6
  state = restore_state(tiny_run, 6)
  assert set(state) == {'step', 'params', 'model_state', 'opt_state',
                        'ema_params', 'ema_model_state', 'rng',
                        'nonfinite_steps'}
  assert set(state['model_state']) == {'batch_stats'}


def _write_legacy_layout(workdir, step):
  """Rewrites a step's state as checkpoints from before model_state were."""
  state_dir = os.path.join(workdir, 'checkpoints', str(step), 'state')
  state = restore_state(workdir, step)
  for new, old in (('model_state', 'batch_stats'),
                   ('ema_model_state', 'ema_batch_stats')):
    state[old] = state.pop(new).get('batch_stats', {})
  shutil.rmtree(state_dir)
  with ocp.StandardCheckpointer() as ckptr:
    ckptr.save(state_dir, state)
  return state


def test_checkpoints_of_the_old_layout_load_and_resume(tiny_run, tmp_path):
  runs = {}
  for name in ('legacy', 'current'):
    workdir = runs[name] = str(tmp_path / name)
    shutil.copytree(tiny_run, workdir)
    os.remove(os.path.join(workdir, 'summary.json'))
    shutil.rmtree(os.path.join(workdir, 'checkpoints', '6'))
  legacy = _write_legacy_layout(runs['legacy'], 3)

  loaded = restore.load(runs['legacy'])
  assert loaded.step == 3
  assert_trees_equal(jax.device_get(loaded.variables),
                     {'params': legacy['ema_params'],
                      'batch_stats': legacy['ema_batch_stats']})
  for workdir in runs.values():
    assert train.train_and_evaluate(tiny_config(), workdir)['step'] == 6
  assert_trees_equal(restore_state(runs['current'], 6),
                     restore_state(runs['legacy'], 6))


def test_architecture_mismatch_is_a_clear_error(tiny_run, tmp_path):
  workdir = str(tmp_path / 'run')
  shutil.copytree(tiny_run, workdir)
  with pytest.raises(ValueError) as e:
    train.train_and_evaluate(tiny_config(**{'model.width': 0.125}), workdir)
  message = str(e.value)
  assert message.startswith('the checkpoint') and '\n' not in message
  assert 'different architecture: params/' in message and 'shape' in message


def test_resume_with_other_worker_count_is_bit_identical(tiny_run, tmp_path):
  """The order of examples and their augmentation do not depend on grain's
  worker processes, so a run resumes with another data.worker_count."""
  workdir = tmp_path / 'run'
  shutil.copytree(tiny_run, workdir)
  os.remove(workdir / 'summary.json')
  shutil.rmtree(workdir / 'checkpoints' / '6')
  resumed = run_main([f'--config={TINY_CONFIG}', f'--workdir={workdir}',
                      '--config.data.worker_count=2'])
  assert resumed.returncode == 0, resumed.stderr[-3000:]
  assert 'Resuming from the checkpoint at step 3' in resumed.stdout
  assert_trees_equal(restore_state(tiny_run, 6), restore_state(workdir, 6))


def test_sigterm_saves_and_returns(tmp_path):
  workdir = str(tmp_path / 'run')

  def preempt_at_step_4(step, metrics):
    del metrics
    if step == 4:
      os.kill(os.getpid(), signal.SIGTERM)

  summary = train.train_and_evaluate(
      tiny_config(total_steps=1000), workdir, on_step=preempt_at_step_4)
  assert summary['preempted'] and summary['step'] == 4
  assert saved_steps(workdir) == [3, 4]
  assert not os.path.exists(os.path.join(workdir, 'summary.json'))
  flat = flax.traverse_util.flatten_dict(restore_state(workdir, 4)['params'])
  assert all(np.all(np.isfinite(v)) for v in flat.values())


def _remove_commit_markers(workdir):
  for root, _, files in os.walk(os.path.join(workdir, 'checkpoints')):
    if checkpointing.COMMIT_MARKER in files:
      os.remove(os.path.join(root, checkpointing.COMMIT_MARKER))


def test_a_copy_without_commit_markers_resumes_once_checked(tiny_run,
                                                            tmp_path):
  workdir = tmp_path / 'copy'
  shutil.copytree(tiny_run, workdir)
  os.remove(workdir / 'summary.json')
  shutil.rmtree(workdir / 'checkpoints' / '6')
  _remove_commit_markers(workdir)
  resumed = run_main([f'--config={TINY_CONFIG}', f'--workdir={workdir}'])
  assert resumed.returncode == 0, resumed.stderr[-3000:]
  assert 'Resuming from the checkpoint at step 3' in resumed.stdout
  assert 'had no commit marker' in resumed.stderr
  assert (workdir / 'checkpoints' / '3' / checkpointing.COMMIT_MARKER).exists()
  assert_trees_equal(restore_state(tiny_run, 6), restore_state(workdir, 6))


def test_a_truncated_copy_without_commit_markers_is_refused(tiny_run,
                                                            tmp_path):
  workdir = tmp_path / 'copy'
  shutil.copytree(tiny_run, workdir)
  _remove_commit_markers(workdir)
  step_dir = workdir / 'checkpoints' / '6'
  os.remove(step_dir / 'data_iterator' / 'process_0-of-1.json')
  with pytest.raises(ValueError) as e:
    train.train_and_evaluate(tiny_config(total_steps=9), str(workdir))
  message = str(e.value)
  assert message.startswith(f'the checkpoint {step_dir} has no commit marker '
                            'and is incomplete (data_iterator/')
  assert '\n' not in message
  assert saved_steps(workdir) == [3, 6]


def test_an_older_input_position_continues_at_the_saved_step(tiny_run,
                                                             tmp_path):
  """A checkpoint whose input state is grain's per-process JSON (runs from
  before the global order) resumes at its step of today's order."""
  workdir = str(tmp_path / 'run')
  shutil.copytree(tiny_run, workdir)
  old = os.path.join(workdir, 'checkpoints', '6', 'data_iterator',
                     'process_0-of-1.json')
  with open(old, 'w') as f:
    json.dump({'version': 2, 'last_seen_indices': {'0': 95},
               'last_worker_index': -1, 'worker_count': 0,
               'sampler': 'IndexSampler(...)', 'data_source': '...'}, f)
  config = tiny_config(total_steps=7)
  seen = []

  class Recorded(InputWrapper):
    def __next__(self):
      seen.append(next(self.iterator))
      return seen[-1]

  def make_train_iter(*args, **kwargs):
    return Recorded(pipeline.create_train_iterator(*args, **kwargs))

  assert train.train_and_evaluate(
      config, workdir, make_train_iter=make_train_iter)['step'] == 7
  reference = pipeline.create_train_iterator(
      config.data, global_batch_size=config.batch_size, seed=config.seed)
  for _ in range(6):
    next(reference)
  assert len(seen) == 1
  assert_trees_equal(seen[0], next(reference))
