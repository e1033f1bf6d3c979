"""Injected faults and bad input: the run stops cleanly or carries on, and no
checkpoint is lost or corrupted.

The trainer runs in-process on Fashion-MNIST with the tiny `:runlocal` model
on the 8 simulated devices; faults come in through its seams
(`make_train_iter`, `on_step`). That the command line prints these errors as
one line with exit status 1 is tested once, in test_cli.py.
"""

import json
import os
import shutil

import jax
import numpy as np
import pytest

from inception_jax import metrics as metrics_lib
from inception_jax import train
from inception_jax.data import pipeline
from tests.helpers import (assert_trees_equal, restore_state, saved_steps,
                           tiny_config)
from tests.runner import PoisonedInput


def nan_at(step):
  """A training input whose `step`-th batch is all NaN."""
  def make(*args, **kwargs):
    return PoisonedInput(pipeline.create_train_iterator(*args, **kwargs), step)
  return make


def all_finite(tree):
  return all(np.all(np.isfinite(np.asarray(x)))
             for x in jax.tree_util.tree_leaves(tree)
             if np.issubdtype(np.asarray(x).dtype, np.floating))


def one_line_error(fn, *args, **kwargs) -> str:
  with pytest.raises((ValueError, ArithmeticError)) as e:
    fn(*args, **kwargs)
  message = str(e.value)
  assert '\n' not in message, message
  return message


# --- Non-finite loss. -------------------------------------------------------

def test_nonfinite_loss_stops_and_is_never_saved(tmp_path):
  # Checkpoints every 3 steps: step 3 saved; step 5's batch is NaN; the
  # check before the save at step 6 stops the run.
  workdir = str(tmp_path / 'run')
  message = one_line_error(train.train_and_evaluate, tiny_config(), workdir,
                           make_train_iter=nan_at(5))
  assert message.startswith('train/loss is not finite at step 5'), message
  assert 'skip_nonfinite' in message
  assert saved_steps(workdir) == [3]
  state = restore_state(workdir, 3)
  assert int(state['step']) == 3 and all_finite(state)


def test_nonfinite_loss_skipped_and_counted(tmp_path):
  workdir = str(tmp_path / 'run')
  summary = train.train_and_evaluate(
      tiny_config(skip_nonfinite=True, total_steps=8), workdir,
      make_train_iter=nan_at(5))
  assert summary['nonfinite_steps'] == 1 and summary['step'] == 8
  records = [json.loads(l) for l in open(os.path.join(workdir,
                                                      'metrics.jsonl'))]
  counts = {r['step']: r['train/nonfinite_steps'] for r in records
            if 'train/nonfinite_steps' in r}
  assert counts == {2: 0, 4: 0, 6: 1, 8: 1}
  state = restore_state(workdir, 8)
  assert int(state['nonfinite_steps']) == 1 and all_finite(state)


def test_metric_history_is_bounded_and_checked_without_logs():
  # No logging and no periodic checkpoints: the loop still checks and trims
  # the fetched history whenever it is full, so a NaN at step 3 stops a run
  # at step 4 of a history of 4, long before its end.
  progress = metrics_lib.Progress(total_steps=40, steps_per_epoch=10,
                                  enabled=False)
  log = train.TrainLog(None, progress, batch_size=8, steps_per_epoch=10,
                       skip_nonfinite=False, start_step=0,
                       max_pending_steps=4)
  for step in range(1, 5):
    assert not log.full
    log.add(step, {'train/loss': np.float32(1.0), 'train/lr': np.float32(0.1),
                   'nonfinite/loss': np.bool_(step == 3),
                   'nonfinite/grad_norm': np.bool_(False)})
  assert log.full
  with pytest.raises(train.NonFiniteError,
                     match='train/loss is not finite at step 3'):
    log.check()
  # Finite histories are trimmed to half, so memory stays bounded.
  log.history = []
  for step in range(1, 5):
    log.add(step, {'train/loss': np.float32(1.0), 'train/lr': np.float32(0.1),
                   'nonfinite/loss': np.bool_(False),
                   'nonfinite/grad_norm': np.bool_(False)})
  log.check()
  assert [s for s, _ in log.history] == [3, 4]


# --- Unwritable workdir. ------------------------------------------------------

def test_workdir_that_cannot_be_created(tmp_path):
  # Tests run as root, for whom chmod 555 does not stop writes; a path under
  # a regular file cannot be created by anyone.
  blocker = tmp_path / 'a_file'
  blocker.write_text('not a directory')
  message = one_line_error(train.train_and_evaluate, tiny_config(),
                           f'{blocker}/run')
  assert message.startswith('cannot write to --workdir'), message
  assert str(blocker) in message


def test_unwritable_workdir_leaves_checkpoints_intact(tiny_run, tmp_path):
  # A finished run whose workdir stopped accepting writes. As root the write
  # that fails is forced: config.json is a directory.
  workdir = tmp_path / 'run'
  shutil.copytree(tiny_run, workdir)

  def snapshot():
    return {str(p.relative_to(workdir)): p.read_bytes()
            for p in sorted((workdir / 'checkpoints').rglob('*'))
            if p.is_file()}
  before = snapshot()
  (workdir / 'config.json').unlink()
  (workdir / 'config.json').mkdir()
  message = one_line_error(train.train_and_evaluate,
                           tiny_config(total_steps=9), str(workdir))
  assert message.startswith('cannot write to --workdir'), message
  assert snapshot() == before


# --- SIGKILL during a checkpoint save. ------------------------------------------

def test_interrupted_save_resumes_from_newest_complete(tiny_run, tmp_path):
  runs = {}
  for name in ('interrupted', 'reference'):
    runs[name] = tmp_path / name
    shutil.copytree(tiny_run, runs[name])
    (runs[name] / 'summary.json').unlink()  # a killed run has not finished
  # What a SIGKILL during the save of step 6 leaves: Orbax writes into
  # <step>.orbax-checkpoint-tmp and renames it when complete.
  partial = runs['interrupted'] / 'checkpoints' / '6.orbax-checkpoint-tmp'
  (runs['interrupted'] / 'checkpoints' / '6').rename(partial)
  shutil.rmtree(partial / 'state')
  # The reference resumes from step 3 with nothing in the way.
  shutil.rmtree(runs['reference'] / 'checkpoints' / '6')

  with pytest.warns(UserWarning, match='Ignoring the incomplete checkpoint '
                    '.*/6.orbax-checkpoint-tmp'):
    assert train.train_and_evaluate(
        tiny_config(), str(runs['interrupted']))['step'] == 6
  assert train.train_and_evaluate(
      tiny_config(), str(runs['reference']))['step'] == 6
  assert saved_steps(runs['interrupted']) == [3, 6]
  assert not partial.exists()
  assert_trees_equal(restore_state(runs['reference'], 6),
                     restore_state(runs['interrupted'], 6))


# --- Bad input: a ValueError of one line that names the fix. ---------------------

def _bad_input_cases(tmp_root):
  empty_manual = tmp_root / 'manual'
  empty_manual.mkdir()
  empty_folder = tmp_root / 'images'
  (empty_folder / 'train' / 'cat').mkdir(parents=True)
  (empty_folder / 'val' / 'cat').mkdir(parents=True)
  return [
      ({'model.num_classes': 7},
       'model.num_classes=7 but the data set has 10 classes'),
      ({'data.image_size': 16}, 'data.image_size=16 is too small'),
      ({'batch_size': 12},
       'batch_size=12 cannot be split evenly over the 8 devices'),
      ({'model.module': 'inception'},
       "model.module='inception' is not one of ('reduced', 'naive')"),
      ({'data.name': 'imagenet2012', 'data.data_dir': f'{tmp_root}/tfds',
        'data.manual_dir': str(empty_manual)},
       'ILSVRC2012_img_train.tar and ILSVRC2012_img_val.tar are missing'),
      ({'data.name': 'image_folder', 'data.root': str(empty_folder),
        'data.data_dir': f'{tmp_root}/tfds'},
       'no image files'),
  ]


@pytest.mark.parametrize('case', range(6))
def test_bad_input_is_one_line(tmp_path, case):
  overrides, expected = _bad_input_cases(tmp_path)[case]
  message = one_line_error(train.train_and_evaluate,
                           tiny_config(**overrides), str(tmp_path / 'run'))
  assert expected in message, message
  assert not (tmp_path / 'run' / 'checkpoints').exists()
