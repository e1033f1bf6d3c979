"""The train step, optimiser, configs and the loop's helpers.

The step tests run on the 8 simulated CPU devices that conftest.py sets up.
Compilation dominates on a small CPU, so the models are tiny (width 1/16,
32x32 input) and XLA's backend optimisation is turned down where only the
numbers' agreement matters.
"""

import glob
import json
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec as P

from configs import fashion_mnist
from configs import imagenet
from inception_jax import config as config_lib
from inception_jax import mesh as mesh_lib
from inception_jax import optim
from inception_jax import steps
from inception_jax import train
from inception_jax.data import pipeline
from inception_jax.models import googlenet
from tests.helpers import FAST_COMPILE, tiny_config
from tests.runner import InputWrapper


# --- Schedules and optimiser. ------------------------------------------------

def opt_config(**overrides):
  c = config_lib.default_config().optimizer
  c.update(overrides)
  return c


def test_lr_scales_with_batch_size():
  c = opt_config(lr=0.01, reference_batch_size=32)
  assert optim.scaled_learning_rate(c, 256) == pytest.approx(0.08)


def test_staircase_is_4_percent_every_8_epochs():
  c = opt_config(lr=0.01, reference_batch_size=32, schedule='staircase')
  s = optim.create_learning_rate_schedule(c, batch_size=32,
                                          steps_per_epoch=100,
                                          total_steps=10_000)
  assert float(s(0)) == pytest.approx(0.01)
  assert float(s(799)) == pytest.approx(0.01)
  assert float(s(800)) == pytest.approx(0.0096)
  assert float(s(1600)) == pytest.approx(0.01 * 0.96**2)
  assert float(s(8000)) == pytest.approx(0.01 * 0.96**10, rel=1e-5)


def test_poly_cosine_and_warmup():
  poly = optim.create_learning_rate_schedule(
      opt_config(lr=0.01, schedule='poly'), batch_size=32,
      steps_per_epoch=10, total_steps=1000)
  assert float(poly(0)) == pytest.approx(0.01)
  assert float(poly(750)) == pytest.approx(0.01 * 0.25**0.5)
  assert float(poly(1000)) == pytest.approx(0.0, abs=1e-9)
  cosine = optim.create_learning_rate_schedule(
      opt_config(lr=0.01, schedule='cosine', warmup_epochs=10),
      batch_size=32, steps_per_epoch=10, total_steps=1100)
  assert float(cosine(0)) == pytest.approx(0.0)
  assert float(cosine(50)) == pytest.approx(0.005)
  assert float(cosine(100)) == pytest.approx(0.01)
  assert float(cosine(600)) == pytest.approx(0.005)
  assert float(cosine(1100)) == pytest.approx(0.0, abs=1e-9)
  with pytest.raises(ValueError, match='schedule'):
    optim.create_learning_rate_schedule(
        opt_config(schedule='exponential'), batch_size=32,
        steps_per_epoch=10, total_steps=100)


def test_weight_decay_only_on_kernels():
  params = {'conv': {'kernel': jnp.ones(2), 'bias': jnp.ones(2)},
            'bn': {'scale': jnp.ones(2), 'bias': jnp.ones(2)}}
  mask = optim.weight_decay_mask(params)
  assert mask == {'conv': {'kernel': True, 'bias': False},
                  'bn': {'scale': False, 'bias': False}}
  tx = optim.create_optimizer(opt_config(weight_decay=0.5, momentum=0.0),
                              lambda step: 1.0)
  zero = jax.tree_util.tree_map(jnp.zeros_like, params)
  updates, _ = tx.update(zero, tx.init(params), params)
  assert np.allclose(updates['conv']['kernel'], -0.5)
  assert np.allclose(updates['conv']['bias'], 0.0)
  assert np.allclose(updates['bn']['scale'], 0.0)


def test_polyak_decay_ramps_up():
  assert float(optim.polyak_decay_at(jnp.array(0), 0.9999)) == pytest.approx(
      0.1)
  assert float(optim.polyak_decay_at(jnp.array(10**7), 0.9999)) == (
      pytest.approx(0.9999))


# --- Configs. -------------------------------------------------------------------

def test_config_args():
  c = fashion_mnist.get_config('module=naive,aux=False,norm=lrn,runlocal')
  assert (c.model.module, c.model.aux, c.model.norm) == ('naive', False, 'lrn')
  assert c.model.width == 0.0625 and c.total_steps > 0
  assert fashion_mnist.get_config().model.norm == 'batchnorm'
  i = imagenet.get_config()
  assert (i.model.norm, i.data.image_size, i.optimizer.schedule) == (
      'lrn', 224, 'staircase')
  with pytest.raises(ValueError, match='lrn|batchnorm|none'):
    imagenet.get_config('norm=group')
  with pytest.raises(ValueError, match='unknown config arg'):
    imagenet.get_config('depth=2')


def test_config_model_is_the_constructor_arguments():
  c = fashion_mnist.get_config()
  assert sorted(c.model) == sorted(googlenet.MODEL_ARGS)
  model = googlenet.model_from_config(c.model, 10)
  assert googlenet.model_kwargs(model) == dict(
      c.model, num_classes=10, dtype='float32')
  tv = imagenet.get_config('variant=torchvision')
  assert tv.model.norm == 'batchnorm'  # torchvision's network has BatchNorm
  assert googlenet.create_model(num_classes=10,
                                variant='torchvision').normalization == (
                                    'batchnorm')
  with pytest.raises(ValueError, match='model.widht is not an argument'):
    googlenet.create_model(num_classes=10, widht=0.5)
  with pytest.raises(ValueError, match='has module=reduced and norm=batchnorm'):
    googlenet.create_model(num_classes=10, variant='torchvision', norm='lrn')


def test_itstime_every_n_steps_and_at_the_end():
  assert [s for s in range(1, 11) if train.itstime(s, 4, 10)] == [4, 8, 10]
  assert [s for s in range(1, 11) if train.itstime(s, 0, 10)] == [10]


def test_input_line_names_the_bottleneck_and_the_fix():
  data = tiny_config().data
  assert train.input_line(0.02, data).endswith('the input kept up.')
  slow = train.input_line(0.6, data)
  assert '60%' in slow and 'bottleneck' in slow
  assert f'data.worker_count={data.worker_count}' in slow
  assert 'data.read_threads=' in slow


class SlowInput(InputWrapper):
  """The real input, each batch `seconds` late (a starved accelerator)."""

  def __init__(self, iterator, seconds):
    super().__init__(iterator)
    self.seconds = seconds

  def __next__(self):
    time.sleep(self.seconds)
    return next(self.iterator)


class _Pending:
  """An output of a step still running (False) or finished (True)."""

  def __init__(self, ready):
    self.ready = ready

  def is_ready(self):
    return self.ready


def test_waiting_while_the_device_is_busy_is_not_data_wait():
  # The loop ran ahead of the device: the batch took 0.2 s to arrive, but
  # the last dispatched step had still not finished, so the device never
  # waited for it.
  log = train.TrainLog(None, None, batch_size=1, steps_per_epoch=1,
                       skip_nonfinite=False, start_step=0)
  slow = SlowInput(iter(range(3)), 0.2)
  log.timed_next(slow, _Pending(False))
  assert log.interval_wait == 0
  log.timed_next(slow, _Pending(True))
  assert 0.2 <= log.interval_wait < 1


def test_data_wait_fraction_measures_a_slow_input_and_a_profile_shows_it(
    tmp_path, capsys):
  def make(*args, **kwargs):
    return SlowInput(pipeline.create_train_iterator(*args, **kwargs), 1.0)
  summary = train.train_and_evaluate(
      tiny_config(total_steps=6, checkpoint_every_steps=0, profile_steps=2),
      str(tmp_path), make_train_iter=make)
  # The trace of steps 2-3, where TensorBoard's profile plugin looks.
  traces = glob.glob(str(tmp_path / 'plugins/profile/*/*.xplane.pb'))
  assert len(traces) == 1 and os.path.getsize(traces[0]) > 0
  records = [json.loads(l) for l in open(tmp_path / 'metrics.jsonl')]
  waits = [r['train/data_wait_fraction'] for r in records
           if 'train/data_wait_fraction' in r]
  # Logs at steps 2, 4 and 6 (the first step's compilation is not timed).
  # A 1 s batch against a step of about 0.2 s: most of the session is
  # waiting, and every interval shows it even when a 2-core machine stalls
  # for a second or two in one of them (seen: 0.34 with a 0.5 s batch).
  assert len(waits) == 3 and all(0.25 < w <= 1 for w in waits), waits
  assert 0.5 < summary['data_wait_fraction'] <= 1
  out = capsys.readouterr().out
  assert 'data wait' in out and 'the input was the bottleneck' in out
  assert f'Profiled steps 2-3 into {tmp_path}/plugins/profile' in out


# --- The sharded step. -----------------------------------------------------------

def _step_once(mesh, norm, initial, batch):
  """One step from the host copy `initial` of the state, on `mesh`."""
  model = googlenet.create_model(num_classes=10, norm=norm, width=0.0625)
  c = opt_config(lr=0.1, polyak_decay=0.99)
  schedule = optim.create_learning_rate_schedule(
      c, batch_size=16, steps_per_epoch=10, total_steps=100)
  tx = optim.create_optimizer(c, schedule)
  if initial is None:
    state = steps.create_train_state(model, tx, seed=0, image_size=32,
                                     mesh=mesh,
                                     compiler_options=FAST_COMPILE)
    initial = jax.device_get(state)
  state = jax.device_put(initial, NamedSharding(mesh, P()))
  step = steps.make_train_step(
      model, tx, schedule, steps.StepSettings(num_classes=10,
                                              normalization='minus_one_one',
                                              polyak_decay=0.99),
      mesh, compiler_options=FAST_COMPILE)
  sharded = mesh_lib.to_global(batch, NamedSharding(mesh, P('data')))
  new_state, metrics = step(state, sharded)
  assert new_state.params['conv1']['conv']['kernel'].sharding.is_equivalent_to(
      NamedSharding(mesh, P()), 4)
  return initial, jax.device_get(new_state), jax.device_get(metrics)


@pytest.mark.parametrize('norm', ['lrn', 'batchnorm'])
def test_sharded_step_equals_one_device(norm):
  assert jax.device_count() == 8
  rng = np.random.default_rng(0)
  batch = {'image': rng.integers(0, 256, (16, 32, 32, 3), np.uint8),
           'label': rng.integers(0, 10, 16).astype(np.int32)}
  initial, one, m1 = _step_once(mesh_lib.create_mesh(jax.devices()[:1]), norm,
                                None, batch)
  _, eight, m8 = _step_once(mesh_lib.create_mesh(), norm, initial, batch)
  assert m8['train/loss'] == pytest.approx(m1['train/loss'], rel=1e-5)
  assert m8['train/grad_norm'] == pytest.approx(m1['train/grad_norm'],
                                                rel=1e-4)
  assert len([k for k in m8 if k.startswith('train/aux')]) == 2
  if norm == 'batchnorm':
    assert eight.model_state['batch_stats']
  # The change each step makes agrees to float32 round-off (the sums over
  # the batch are split over 8 devices, so they add in another order).
  for tree in ('params', 'model_state', 'ema_params', 'opt_state'):
    flat0 = jax.tree_util.tree_leaves(getattr(initial, tree))
    flat1 = jax.tree_util.tree_leaves(getattr(one, tree))
    flat8 = jax.tree_util.tree_leaves(getattr(eight, tree))
    assert len(flat1) == len(flat8) == len(flat0)
    for x0, x1, x8 in zip(flat0, flat1, flat8):
      d1, d8 = np.ravel(x1 - x0), np.ravel(x8 - x0)
      scale = max(np.linalg.norm(d1), 1e-12)
      assert np.linalg.norm(d8 - d1) / scale < 1e-3
  # The step moved the parameters.
  assert not np.allclose(initial.params['classifier']['kernel'],
                         one.params['classifier']['kernel'])


def test_nonfinite_update_is_not_applied():
  mesh = mesh_lib.create_mesh()
  model = googlenet.create_model(num_classes=10, norm='none', aux=False,
                                 width=0.0625)
  tx = optim.create_optimizer(opt_config(), lambda s: 0.1)
  state = steps.create_train_state(model, tx, seed=0, image_size=32,
                                   mesh=mesh, compiler_options=FAST_COMPILE)
  step = steps.make_train_step(model, tx, lambda s: 0.1,
                               steps.StepSettings(num_classes=10,
                                                  normalization='none'),
                               mesh,
                               compiler_options=FAST_COMPILE)
  batch = {'image': np.full((8, 32, 32, 3), np.nan, np.float32),
           'label': np.zeros(8, np.int32)}
  before = jax.device_get(state.params)
  state, metrics = step(state, mesh_lib.to_global(
      batch, NamedSharding(mesh, P('data'))))
  assert bool(metrics['nonfinite/loss'])
  assert int(state.step) == 1 and int(state.nonfinite_steps) == 1
  jax.tree_util.tree_map(np.testing.assert_array_equal, before,
                         jax.device_get(state.params))
  with pytest.raises(train.NonFiniteError, match='step 1'):
    train.check_finite([(1, jax.device_get(metrics))], skip_nonfinite=False)


def test_batch_not_divisible_names_both_numbers():
  with pytest.raises(ValueError, match=r'batch_size=12 .* 8 devices'):
    mesh_lib.check_divisible(12, mesh_lib.create_mesh(), 'batch_size')


def test_bias_lr_mult_scales_only_the_biases_updates():
  # A convolution's bias gets Caffe's multiplier; BatchNorm's offset, which
  # Caffe's networks never had, does not.
  params = {'conv': {'kernel': jnp.ones(2), 'bias': jnp.ones(2),
                     'bn': {'scale': jnp.ones(2), 'bias': jnp.ones(2)}}}
  grads = jax.tree_util.tree_map(jnp.ones_like, params)
  updates = {}
  for mult in (1.0, 2.0):
    tx = optim.create_optimizer(
        opt_config(weight_decay=0.0, momentum=0.9, bias_lr_mult=mult),
        lambda step: 0.1)
    state = tx.init(params)
    for _ in range(2):  # through the momentum buffer too
      updates[mult], state = tx.update(grads, state, params)
  np.testing.assert_allclose(updates[2.0]['conv']['bias'],
                             2 * updates[1.0]['conv']['bias'])
  for kept in (('kernel',), ('bn', 'scale'), ('bn', 'bias')):
    two, one = updates[2.0]['conv'], updates[1.0]['conv']
    for key in kept:
      two, one = two[key], one[key]
    np.testing.assert_array_equal(two, one)


def test_imagenet_recipes():
  paper = imagenet.get_config()
  quick = imagenet.get_config('recipe=caffe_quick')
  assert (paper.optimizer.schedule, paper.data.crop,
          paper.optimizer.decay_every_epochs) == ('staircase', 'inception', 8)
  assert paper.data.distort_color and paper.data.random_interpolation
  assert paper.optimizer.polyak_decay > 0
  assert (quick.optimizer.schedule, quick.optimizer.poly_power,
          quick.num_epochs, quick.data.crop) == ('poly', 0.5, 60, 'caffe')
  assert not quick.data.distort_color and not quick.optimizer.polyak_decay
  for c in (paper, quick):
    assert c.data.normalization == 'caffe' and c.model.norm == 'lrn'
    assert c.optimizer.bias_lr_mult == 2.0
    assert optim.scaled_learning_rate(c.optimizer, c.batch_size) == (
        pytest.approx(0.08))
  assert imagenet.get_config('norm=none').data.normalization == 'imagenet'
