"""Saving and resuming: exact resume after SIGKILL and SIGTERM, the saved
layout, copies without Orbax's commit markers, and resumes that must be
refused.

The uninterrupted reference is the session's shared `tiny_run` (6 steps,
checkpoints at 3 and 6). Crashes run in subprocesses through the trainer's
seams (`tests/runner.py`); refusals and SIGTERM run in-process.
"""

import json
import os
import shutil
import signal

import flax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from inception_jax import train
from inception_jax.checkpoints import layout
from inception_jax.checkpoints import loader
from inception_jax.checkpoints import manager
from tests.helpers import (TINY_CONFIG, assert_trees_equal, restore_state,
                           run_main, run_python, saved_steps, tiny_config)


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
  clock = manager.Clock.from_json(loader.load(workdir).meta['clock'])
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
                             item_names=layout.ITEMS) as mngr:
    restored = mngr.restore(6, args=ocp.args.Composite(
        metadata=ocp.args.JsonRestore(), config=ocp.args.JsonRestore()))
  meta = restored['metadata']
  assert meta['format'] == layout.FORMAT and meta['step'] == 6
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


def test_architecture_mismatch_is_a_clear_error(tiny_run, tmp_path):
  workdir = str(tmp_path / 'run')
  shutil.copytree(tiny_run, workdir)
  with pytest.raises(ValueError) as e:
    train.train_and_evaluate(tiny_config(**{'model.width': 0.125}), workdir)
  message = str(e.value)
  assert message.startswith('the checkpoint') and '\n' not in message
  assert 'different architecture: params/' in message and 'shape' in message


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
    if layout.COMMIT_MARKER in files:
      os.remove(os.path.join(root, layout.COMMIT_MARKER))


def test_a_copy_without_commit_markers_resumes_bit_identically_on_workers(
    tiny_run, tmp_path):
  """A copy of a run without Orbax's commit markers (as a plain file copy
  leaves it) is checked, marked and resumed; it resumes with two grain worker
  processes where it was trained with none, and ends bit-identical to the
  uninterrupted run: the order of examples and their augmentation do not
  depend on the workers."""
  workdir = tmp_path / 'copy'
  shutil.copytree(tiny_run, workdir)
  os.remove(workdir / 'summary.json')
  shutil.rmtree(workdir / 'checkpoints' / '6')
  _remove_commit_markers(workdir)
  resumed = run_main([f'--config={TINY_CONFIG}', f'--workdir={workdir}',
                      '--config.data.worker_count=2'])
  assert resumed.returncode == 0, resumed.stderr[-3000:]
  assert 'Resuming from the checkpoint at step 3' in resumed.stdout
  assert 'had no commit marker' in resumed.stderr
  assert 'data.worker_count=2' in resumed.stdout + resumed.stderr
  assert (workdir / 'checkpoints' / '3' / layout.COMMIT_MARKER).exists()
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
  assert not (workdir / 'checkpoints' / '3' / layout.COMMIT_MARKER).exists()
  # The loader's newest step is the trainer's: the same copy is refused.
  with pytest.raises(ValueError, match='has no commit marker and is '
                     'incomplete \\(data_iterator/'):
    loader.load(workdir)
