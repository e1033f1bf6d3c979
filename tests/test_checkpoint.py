"""Saving and resuming: exact resume after SIGKILL, SIGTERM, wrong architecture.

Each test runs the real command line in a subprocess on Fashion-MNIST with a
tiny model (width 1/16, 32x32, batch 16) on the 8 simulated devices. The runs
share a persistent compilation cache, so only the first one compiles.
"""

import json
import os
import signal
import subprocess
import sys

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from inception_jax import checkpointing
from tests.test_train import subprocess_env

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

TINY = ['--config=configs/fashion_mnist.py:runlocal',
        '--config.total_steps=8', '--config.checkpoint_every_steps=4',
        '--config.log_every_steps=2', '--config.data.eval_split=test[:32]',
        '--config.eval_batch_size=32']

# Runs the command line, but SIGKILLs itself once the checkpoint of step 4
# is complete and step 6 has been trained: a crash between checkpoints.
KILL_AFTER_FIRST_CHECKPOINT = r'''
import os, signal, sys, time
from absl import app
from inception_jax import main, metrics

original = metrics.Progress.train_line
def train_line(self, step, scalars, seconds_per_step):
  original(self, step, scalars, seconds_per_step)
  if step == 6:
    done = os.path.join(sys.argv[-1].split('=', 1)[1], 'checkpoints', '4')
    for _ in range(600):
      if os.path.isdir(done):
        break
      time.sleep(0.1)
    os.kill(os.getpid(), signal.SIGKILL)
metrics.Progress.train_line = train_line
sys.argv[0] = 'inception_jax.main'
from inception_jax import cli
cli.run(main.main, main.define_flags)
'''


def run(args, **kwargs):
  return subprocess.run([sys.executable, '-m', 'inception_jax.main', *args],
                        cwd=REPO, env=subprocess_env(), capture_output=True,
                        text=True, timeout=600, **kwargs)


def restore_state(workdir, step):
  path = os.path.join(workdir, 'checkpoints', str(step), 'state')
  return ocp.StandardCheckpointer().restore(path)


@pytest.fixture(scope='module')
def uninterrupted(tmp_path_factory):
  workdir = tmp_path_factory.mktemp('uninterrupted') / 'run'
  result = run(TINY + [f'--workdir={workdir}'])
  assert result.returncode == 0, result.stderr[-3000:]
  return workdir


def test_sigkill_then_resume_is_bit_identical(uninterrupted, tmp_path):
  workdir = tmp_path / 'run'
  killed = subprocess.run(
      [sys.executable, '-c', KILL_AFTER_FIRST_CHECKPOINT, *TINY,
       f'--workdir={workdir}'],
      cwd=REPO, env=subprocess_env(), capture_output=True, text=True,
      timeout=600)
  assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
  assert 'step 6/8' in killed.stdout
  steps = sorted(int(p.name) for p in (workdir / 'checkpoints').iterdir()
                 if p.name.isdigit())
  assert steps == [4]

  resumed = run(TINY + [f'--workdir={workdir}'])
  assert resumed.returncode == 0, resumed.stderr[-3000:]
  assert 'Resuming from the checkpoint at step 4' in resumed.stdout

  expected = restore_state(uninterrupted, 8)
  actual = restore_state(workdir, 8)
  flat_expected = jax.tree_util.tree_leaves_with_path(expected)
  flat_actual = jax.tree_util.tree_leaves_with_path(actual)
  assert [p for p, _ in flat_expected] == [p for p, _ in flat_actual]
  for (path, x), (_, y) in zip(flat_expected, flat_actual):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y),
                                  err_msg=jax.tree_util.keystr(path))
  assert int(actual['step']) == 8

  # The metrics file holds each step once, and the same numbers.
  def train_records(d):
    return [json.loads(l) for l in (d / 'metrics.jsonl').read_text()
            .splitlines() if 'train/loss' in l]
  a, b = train_records(uninterrupted), train_records(workdir)
  assert [r['step'] for r in b] == [2, 4, 6, 8]
  assert [r['train/loss'] for r in a] == [r['train/loss'] for r in b]

  # The wall clock continues across the resume: the resumed session's records
  # start from the killed session's time at step 4, and the summary counts both.
  walls = [r['wall_time_sec'] for r in b]
  assert walls == sorted(walls) and walls[0] > 0
  summary = json.loads((workdir / 'summary.json').read_text())
  assert summary['wall_time_sec'] >= walls[-1] > walls[1]
  assert summary['session_wall_time_sec'] == pytest.approx(
      summary['wall_time_sec'] - walls[1], abs=0.01)
  assert 'this session' in resumed.stdout.splitlines()[-1]


def test_checkpoint_contents(uninterrupted):
  step_dir = uninterrupted / 'checkpoints' / '8'
  files = sorted(p.name for p in (step_dir / 'data_iterator').iterdir())
  assert 'process_0-of-1.json' in files
  mngr = ocp.CheckpointManager(uninterrupted / 'checkpoints',
                               item_names=checkpointing.ITEMS)
  restored = mngr.restore(8, args=ocp.args.Composite(
      metadata=ocp.args.JsonRestore(), config=ocp.args.JsonRestore()))
  meta = restored['metadata']
  assert meta['format'] == checkpointing.FORMAT and meta['step'] == 8
  assert meta['model']['num_classes'] == 10
  assert meta['model']['width'] == 0.0625
  assert meta['dataset']['class_names'][0] == 'T-shirt/top'
  assert restored['config']['total_steps'] == 8
  state = restore_state(uninterrupted, 8)
  assert set(state) == {'step', 'params', 'batch_stats', 'opt_state',
                        'ema_params', 'ema_batch_stats', 'rng',
                        'nonfinite_steps'}
  mngr.close()


def test_architecture_mismatch_is_a_clear_error(uninterrupted, tmp_path):
  workdir = tmp_path / 'run'
  import shutil  # pylint: disable=g-import-not-at-top
  shutil.copytree(uninterrupted, workdir)
  result = run(TINY + [f'--workdir={workdir}', '--config.model.width=0.125'])
  assert result.returncode == 1
  assert 'Traceback' not in result.stderr
  last = result.stderr.strip().splitlines()[-1]
  assert last.startswith('error: the checkpoint'), result.stderr[-2000:]
  assert 'different architecture: params/' in last and 'shape' in last


def test_resume_with_other_worker_count_is_a_clear_error(uninterrupted,
                                                        tmp_path):
  workdir = tmp_path / 'run'
  import shutil  # pylint: disable=g-import-not-at-top
  shutil.copytree(uninterrupted, workdir)
  result = run(TINY + [f'--workdir={workdir}', '--config.total_steps=12',
                       '--config.data.worker_count=1'])
  assert result.returncode == 1
  assert 'Traceback' not in result.stderr
  last = result.stderr.strip().splitlines()[-1]
  assert last.startswith('error: the checkpoint'), result.stderr[-2000:]
  assert 'data.worker_count=0 but the config has 1' in last
  assert '--config.data.worker_count=0' in last
  # Nothing was trained or written over.
  steps = sorted(p.name for p in (workdir / 'checkpoints').iterdir()
                 if p.name.isdigit())
  assert steps[-1] == '8'


def test_sigterm_saves_and_exits_0(tmp_path):
  workdir = tmp_path / 'run'
  proc = subprocess.Popen(
      [sys.executable, '-m', 'inception_jax.main', *TINY,
       '--config.total_steps=100000', f'--workdir={workdir}'],
      cwd=REPO, env=subprocess_env(), stdout=subprocess.PIPE,
      stderr=subprocess.PIPE, text=True)
  try:
    for line in proc.stdout:
      if line.startswith('step '):
        break
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
  finally:
    if proc.poll() is None:
      proc.kill()
  assert proc.returncode == 0, err[-3000:]
  assert 'SIGTERM: saved a checkpoint at step' in out
  saved = int(out.split('saved a checkpoint at step ')[1].split()[0])
  steps = sorted(int(p.name) for p in (workdir / 'checkpoints').iterdir()
                 if p.name.isdigit())
  assert steps[-1] == saved and 2 <= saved < 100000
