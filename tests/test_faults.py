"""Injected faults and bad input: the run stops cleanly or carries on, and no
checkpoint is lost or corrupted.

The command line runs in subprocesses on Fashion-MNIST with the tiny
`:runlocal` model on the 8 simulated devices, sharing test_checkpoint.py's
persistent compilation cache.
"""

import json
import shutil
import subprocess
import sys

import jax
import numpy as np
import pytest

from tests.test_checkpoint import REPO, TINY, restore_state, run
from tests.test_train import subprocess_env

# The command line with one training batch made NaN (the batch of the step
# given by NAN_AT_STEP, 1-based): a loss that stops being finite.
INJECT_NAN = r'''
import os, sys
import numpy as np
from absl import app
from inception_jax import data, main

original = data.create_train_iterator
NAN_AT_STEP = int(os.environ['NAN_AT_STEP'])

class Poisoned:
  def __init__(self, iterator):
    self.iterator, self.count = iterator, 0
  def __iter__(self):
    return self
  def __next__(self):
    batch = next(self.iterator)
    self.count += 1
    if self.count == NAN_AT_STEP:
      batch = dict(batch, image=np.full_like(batch['image'], np.nan))
    return batch
  def get_state(self):
    return self.iterator.get_state()
  def set_state(self, state):
    self.iterator.set_state(state)

data.create_train_iterator = lambda *a, **k: Poisoned(original(*a, **k))
sys.argv[0] = 'inception_jax.main'
from inception_jax import cli
cli.run(main.main, main.define_flags)
'''

# Steps 1-8, logs every 2, a checkpoint every 3 (and at the end).
NAN_ARGS = TINY + ['--config.checkpoint_every_steps=3']


def run_with_nan(args, step):
  env = subprocess_env()
  env['NAN_AT_STEP'] = str(step)
  return subprocess.run([sys.executable, '-c', INJECT_NAN, *args], cwd=REPO,
                        env=env, capture_output=True, text=True, timeout=600)


def saved_steps(workdir):
  directory = workdir / 'checkpoints'
  return sorted(int(p.name) for p in directory.iterdir() if p.name.isdigit())


def all_finite(tree):
  return all(np.all(np.isfinite(np.asarray(x)))
             for x in jax.tree_util.tree_leaves(tree)
             if np.issubdtype(np.asarray(x).dtype, np.floating))


def last_stderr_line(result):
  assert 'Traceback' not in result.stderr, result.stderr[-3000:]
  lines = result.stderr.strip().splitlines()
  assert lines, result.stdout[-2000:]
  return lines[-1]


# --- Non-finite loss. -------------------------------------------------------

def test_nonfinite_loss_stops_and_is_never_saved(tmp_path):
  # Checkpoints every 3 steps: step 3 saved; step 5's batch is NaN; the
  # check before the save at step 6 stops the run.
  workdir = tmp_path / 'run'
  result = run_with_nan(NAN_ARGS + [f'--workdir={workdir}'], step=5)
  assert result.returncode == 1, result.stderr[-3000:]
  last = last_stderr_line(result)
  assert last.startswith('error: train/loss is not finite at step 5'), last
  assert 'skip_nonfinite' in last
  assert saved_steps(workdir) == [3]
  state = restore_state(workdir, 3)
  assert int(state['step']) == 3 and all_finite(state)


def test_nonfinite_loss_skipped_and_counted(tmp_path):
  workdir = tmp_path / 'run'
  result = run_with_nan(NAN_ARGS + [f'--workdir={workdir}',
                                    '--config.skip_nonfinite=True'], step=5)
  assert result.returncode == 0, result.stderr[-3000:]
  summary = json.loads((workdir / 'summary.json').read_text())
  assert summary['nonfinite_steps'] == 1 and summary['step'] == 8
  records = [json.loads(l) for l in
             (workdir / 'metrics.jsonl').read_text().splitlines()]
  counts = {r['step']: r['train/nonfinite_steps'] for r in records
            if 'train/nonfinite_steps' in r}
  assert counts == {2: 0, 4: 0, 6: 1, 8: 1}
  state = restore_state(workdir, 8)
  assert int(state['nonfinite_steps']) == 1 and all_finite(state)


# --- Unwritable workdir. ------------------------------------------------------

def test_workdir_that_cannot_be_created(tmp_path):
  # Tests run as root, for whom chmod 555 does not stop writes; a path under
  # a regular file cannot be created by anyone.
  blocker = tmp_path / 'a_file'
  blocker.write_text('not a directory')
  result = run(TINY + [f'--workdir={blocker}/run'])
  assert result.returncode == 1, result.stderr[-3000:]
  last = last_stderr_line(result)
  assert last.startswith('error: cannot write to --workdir'), last
  assert str(blocker) in last


def test_unwritable_workdir_leaves_checkpoints_intact(tmp_path):
  # The run finished, then its workdir stopped accepting writes. As root the
  # write that fails is forced: config.json is a directory.
  workdir = tmp_path / 'run'
  first = run(TINY + [f'--workdir={workdir}', '--config.total_steps=4'])
  assert first.returncode == 0, first.stderr[-3000:]

  def snapshot():
    return {str(p.relative_to(workdir)): p.read_bytes()
            for p in sorted((workdir / 'checkpoints').rglob('*'))
            if p.is_file()}
  before = snapshot()
  (workdir / 'config.json').unlink()
  (workdir / 'config.json').mkdir()
  result = run(TINY + [f'--workdir={workdir}'])
  assert result.returncode == 1, result.stderr[-3000:]
  last = last_stderr_line(result)
  assert last.startswith('error: cannot write to --workdir'), last
  assert snapshot() == before
  assert saved_steps(workdir) == [4]


# --- SIGKILL during a checkpoint save. ------------------------------------------

def test_interrupted_save_resumes_from_newest_complete(tmp_path):
  workdir = tmp_path / 'run'
  args = TINY + ['--config.total_steps=4', '--config.checkpoint_every_steps=2',
                 f'--workdir={workdir}']
  first = run(args)
  assert first.returncode == 0, first.stderr[-3000:]
  assert saved_steps(workdir) == [2, 4]
  expected = restore_state(workdir, 4)

  # What a SIGKILL during the save of step 4 leaves: Orbax (0.12.8) writes
  # into <step>.orbax-checkpoint-tmp and renames it when complete.
  complete = workdir / 'checkpoints' / '4'
  partial = workdir / 'checkpoints' / '4.orbax-checkpoint-tmp'
  complete.rename(partial)
  shutil.rmtree(partial / 'state')
  (workdir / 'summary.json').unlink()  # a killed run has not finished

  resumed = run(args)
  assert resumed.returncode == 0, resumed.stderr[-3000:]
  assert 'Resuming from the checkpoint at step 2' in resumed.stdout
  assert saved_steps(workdir) == [2, 4]
  assert not partial.exists()
  actual = restore_state(workdir, 4)
  for x, y in zip(jax.tree_util.tree_leaves(expected),
                  jax.tree_util.tree_leaves(actual)):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


# --- Bad input: one line on stderr, exit 1, no traceback. ------------------------

def _bad_input_cases(tmp_root):
  empty_manual = tmp_root / 'manual'
  empty_manual.mkdir()
  empty_folder = tmp_root / 'images'
  (empty_folder / 'train' / 'cat').mkdir(parents=True)
  (empty_folder / 'val' / 'cat').mkdir(parents=True)
  return [
      (['--config.model.num_classes=7'],
       'model.num_classes=7 but fashion_mnist has 10 classes'),
      (['--config.data.image_size=16'], 'data.image_size=16 is too small'),
      (['--config=configs/fashion_mnist.py:runlocal,module=inception'],
       "module='inception' is not one of reduced|naive"),
      (['--config.data.name=imagenet2012',
        f'--config.data.data_dir={tmp_root}/tfds',
        f'--config.data.manual_dir={empty_manual}'],
       'ILSVRC2012_img_train.tar and ILSVRC2012_img_val.tar are missing'),
      (['--config.data.name=image_folder', f'--config.data.root={empty_folder}',
        f'--config.data.data_dir={tmp_root}/tfds'],
       'no image files'),
  ]


@pytest.mark.parametrize('case', range(5))
def test_bad_input_is_one_line(tmp_path, case):
  args, message = _bad_input_cases(tmp_path)[case]
  base = ['--config=configs/fashion_mnist.py:runlocal']
  if args[0].startswith('--config='):
    base = []
  result = run(base + args + [f'--workdir={tmp_path}/run'])
  assert result.returncode == 1, result.stderr[-3000:]
  last = last_stderr_line(result)
  assert last.startswith('error: ') and message in last, result.stderr[-2000:]
