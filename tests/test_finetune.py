"""Fine-tuning: `init_from` loads by name and shape, `freeze` fixes weights.

The source is the shared tiny run (tests/conftest.py: 10 classes, width
1/16, BatchNorm, auxiliary heads, 32x32).
"""

import os
import shutil
import signal

from flax import traverse_util
import jax
import numpy as np
import optax
import pytest

from inception_jax import mesh as mesh_lib
from inception_jax import optim
from inception_jax import steps
from inception_jax import train
from inception_jax.checkpoints import finetune
from inception_jax.checkpoints import loader
from inception_jax.models import googlenet
from tests.helpers import FAST_COMPILE, restore_state, tiny_config


def _flat(tree):
  return traverse_util.flatten_dict(jax.device_get(tree), sep='/')


def _fresh_state(model, freeze=''):
  tx = optim.create_optimizer(tiny_config().optimizer,
                              optax.constant_schedule(0.1), freeze)
  return steps.create_train_state(model, tx, seed=1, image_size=32,
                                  mesh=mesh_lib.create_mesh(),
                                  compiler_options=FAST_COMPILE)


def _variables(state, polyak=False):
  return _flat(state.eval_variables(polyak))


def test_init_from_loads_every_variable_of_the_same_model(tiny_run):
  source = loader.load(tiny_run)
  fresh = _fresh_state(source.model)
  state = finetune.init_from(fresh, tiny_run)
  want = _flat(source.variables)
  for polyak in (False, True):
    got = _variables(state, polyak)
    assert sorted(got) == sorted(want)
    for key in want:
      np.testing.assert_array_equal(got[key], want[key], err_msg=key)
  # Replicated over the mesh, like the state it replaces.
  leaf = state.params['classifier']['kernel']
  assert leaf.sharding == fresh.params['classifier']['kernel'].sharding


def test_heads_are_reinitialised_for_another_class_count(tiny_run):
  source = loader.load(tiny_run)
  model = googlenet.create_model(**dict(source.meta['model'], num_classes=3))
  fresh = _fresh_state(model)
  state = finetune.init_from(fresh, tiny_run)
  got, init, want = _variables(state), _variables(fresh), _flat(
      source.variables)
  reinitialised = {'params/classifier/kernel', 'params/classifier/bias',
                   'params/aux1/fc2/kernel', 'params/aux1/fc2/bias',
                   'params/aux2/fc2/kernel', 'params/aux2/fc2/bias'}
  assert reinitialised <= set(got)
  for key in got:
    expected = init[key] if key in reinitialised else want[key]
    np.testing.assert_array_equal(got[key], expected, err_msg=key)
  assert got['params/classifier/kernel'].shape[-1] == 3
  # The rest of each auxiliary head (conv, fc1) is loaded.
  assert 'params/aux1/fc1/kernel' not in reinitialised


def test_a_mismatch_outside_the_heads_is_one_line_naming_it(tiny_run):
  source = loader.load(tiny_run)
  model = googlenet.create_model(**dict(source.meta['model'], width=0.125))
  with pytest.raises(ValueError) as e:
    finetune.init_from(_fresh_state(model), tiny_run)
  message = str(e.value)
  assert '\n' not in message
  assert message.split(': ')[1].startswith('params/conv1/'), message
  assert 'has shape (4,) in the checkpoint but (8,)' in message, message
  assert '--config.model' in message


def test_freeze_regex_errors_are_one_line():
  params = {'conv1': {'conv': {'kernel': np.zeros(2)}},
            'classifier': {'kernel': np.zeros(2)}}
  labels = optim.freeze_labels(params, '^conv1/')
  assert labels == {'conv1': {'conv': {'kernel': 'frozen'}},
                    'classifier': {'kernel': 'trainable'}}
  with pytest.raises(ValueError, match='matches no parameter'):
    optim.freeze_labels(params, '^inception_9')
  with pytest.raises(ValueError, match='not a valid regex'):
    optim.freeze_labels(params, '(conv')


def test_frozen_fine_tuning_resumes_without_the_source(tiny_run, tmp_path):
  """Frozen weights stay bit-identical; a resume never rereads init_from."""
  source_dir = tmp_path / 'source'
  shutil.copytree(tiny_run, source_dir)
  want = _flat(loader.load(str(source_dir)).variables['params'])
  workdir = str(tmp_path / 'finetune')
  freeze = '^(conv|inception_3)'

  config = tiny_config(init_from=str(source_dir), freeze=freeze,
                       total_steps=6, checkpoint_every_steps=3)

  def preempt_at_step_3(step, metrics):
    del metrics
    if step == 3:
      os.kill(os.getpid(), signal.SIGTERM)

  # Stopped as a preemption would (the resume's step is then the same
  # computation, compiled once).
  assert train.train_and_evaluate(config, workdir,
                                  on_step=preempt_at_step_3)['step'] == 3
  shutil.rmtree(source_dir)  # a resume that reread it would fail
  assert train.train_and_evaluate(config, workdir)['step'] == 6

  state = restore_state(workdir, 6)
  frozen = [k for k in want if k.startswith(('conv', 'inception_3'))]
  trained = [k for k in want if k not in frozen]
  assert frozen and trained
  for tree in ('params', 'ema_params'):
    got = _flat(state[tree])
    for key in frozen:
      np.testing.assert_array_equal(got[key], want[key],
                                    err_msg=f'{tree}/{key}')
  got = _flat(state['params'])
  assert not np.array_equal(got['classifier/kernel'],
                            want['classifier/kernel'])
  assert os.path.exists(os.path.join(workdir, 'summary.json'))
