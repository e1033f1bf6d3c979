"""The model is the paper's network: shapes, parameter counts, behaviour."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from inception_jax import flops, summary
from inception_jax.models import googlenet
from inception_jax.models.googlenet import TABLE1, count_params, create_model

# Table 1's output column at 224x224.
TABLE1_OUTPUTS = [
    ('conv1', (112, 112, 64)), ('max pool', (56, 56, 64)),
    ('conv2', (56, 56, 192)), ('max pool', (28, 28, 192)),
    ('inception_3a', (28, 28, 256)), ('inception_3b', (28, 28, 480)),
    ('max pool', (14, 14, 480)), ('inception_4a', (14, 14, 512)),
    ('inception_4b', (14, 14, 512)), ('inception_4c', (14, 14, 512)),
    ('inception_4d', (14, 14, 528)), ('inception_4e', (14, 14, 832)),
    ('max pool', (7, 7, 832)), ('inception_5a', (7, 7, 832)),
    ('inception_5b', (7, 7, 1024)), ('avg pool', (1024,)),
    ('dropout', (1024,)), ('classifier', (1000,)),
]


def _in_channels():
  """Input channels of each Inception module, from Table 1 alone."""
  channels, out = {}, 192
  for s in TABLE1:
    channels[s.name] = out
    out = s.c1x1 + s.c3x3 + s.c5x5 + s.pool_proj
  return channels


def reduced_params(spec, cin, k5=5, bias=True, bn=False):
  def conv(cin_, cout, k):
    return k * k * cin_ * cout + (cout if bias else 0) + (2 * cout if bn else 0)
  return (conv(cin, spec.c1x1, 1) + conv(cin, spec.c3x3_reduce, 1)
          + conv(spec.c3x3_reduce, spec.c3x3, 3)
          + conv(cin, spec.c5x5_reduce, 1) + conv(spec.c5x5_reduce, spec.c5x5, k5)
          + conv(cin, spec.pool_proj, 1))


def naive_params(spec, cin):
  return sum(k * k * cin * c + c for c, k in
             ((spec.c1x1, 1), (spec.c3x3, 3), (spec.c5x5, 5)))


def _params(model, size=224):
  variables = jax.eval_shape(
      lambda: googlenet.init_variables(model, jax.random.PRNGKey(0), size))
  return variables['params']


@pytest.fixture(scope='module')
def paper_summary():
  return summary.summarize(create_model(num_classes=1000), 224)


def test_every_stage_has_table1_output_shape(paper_summary):
  rows = [(r.name, r.output) for r in paper_summary.rows if not r.is_aux]
  assert rows == TABLE1_OUTPUTS


def test_paper_parameter_counts_per_module_and_total(paper_summary):
  cin = _in_channels()
  by_name = {r.name: r for r in paper_summary.rows}
  for spec in TABLE1:
    assert by_name[spec.name].params == reduced_params(spec, cin[spec.name])
  assert by_name['conv1'].params == 7 * 7 * 3 * 64 + 64
  assert by_name['conv2'].params == 64 * 64 + 64 + 9 * 64 * 192 + 192
  assert by_name['aux1'].params == 512 * 128 + 128 + 2048 * 1024 + 1024 + 1025000
  assert paper_summary.total_params_no_aux == 6_998_552
  assert paper_summary.total_params == 13_378_280
  assert paper_summary.total_macs == 1_582_671_872


def test_aux_false_builds_no_aux_parameters():
  params = _params(create_model(num_classes=1000, aux=False))
  assert not {'aux1', 'aux2'} & set(params)
  assert count_params(params) == 6_998_552


def test_naive_module_counts_and_channel_growth():
  params = _params(create_model(num_classes=1000, module='naive', aux=False))
  # Channels grow: each module's output is its input plus three branches.
  cin, total = 192, 9_472 + 114_944
  for spec in TABLE1:
    assert count_params(params[spec.name]) == naive_params(spec, cin)
    total += naive_params(spec, cin)
    cin += spec.c1x1 + spec.c3x3 + spec.c5x5
  assert cin == 4944
  assert count_params(params) == total + cin * 1000 + 1000


def test_batchnorm_variant_counts():
  model = create_model(num_classes=10, norm='batchnorm', aux=False)
  params = _params(model)
  cin = _in_channels()
  for spec in TABLE1:
    assert count_params(params[spec.name]) == reduced_params(
        spec, cin[spec.name], bias=False, bn=True)
  assert 'bn' in params['conv1'] and 'bias' not in params['conv1']['conv']


def test_torchvision_variant_counts():
  params = _params(create_model(num_classes=1000, variant='torchvision',
                                aux=False))
  assert count_params(params) == 6_624_904  # torchvision's own count
  cin = _in_channels()
  for spec in TABLE1:
    assert count_params(params[spec.name]) == reduced_params(
        spec, cin[spec.name], k5=3, bias=False, bn=True)


def test_torchvision_variant_shapes_match_paper_outputs():
  rows = summary.summarize(
      create_model(num_classes=1000, variant='torchvision'), 224).rows
  assert [(r.name, r.output) for r in rows if not r.is_aux] == TABLE1_OUTPUTS


TINY = dict(num_classes=7, width=0.125)


def random_variables(model, size, seed=0):
  """Variables with the model's tree and shapes, filled without compiling
  `init` (each GoogLeNet compile costs seconds on a 2-core CPU)."""
  shapes = jax.eval_shape(
      lambda: googlenet.init_variables(model, jax.random.PRNGKey(0), size))
  rng = np.random.RandomState(seed)
  def fill(path, s):
    name = jax.tree_util.keystr(path)
    if name.endswith("['var']") or name.endswith("['scale']"):
      return jnp.asarray(rng.uniform(0.5, 1.5, s.shape), s.dtype)
    fan_in = int(np.prod(s.shape[:-1])) or 1
    return jnp.asarray(rng.randn(*s.shape) / np.sqrt(fan_in), s.dtype)
  return jax.tree_util.tree_map_with_path(fill, shapes)


def _init(model, size=32, batch=2):
  images = jax.random.normal(jax.random.PRNGKey(1), (batch, size, size, 3))
  return random_variables(model, size), images


_JITTED = {}


def _apply(model, variables, images, train, seed=0, **kw):
  """Jitted apply, compiled once per model and mode."""
  key = (model, train, repr(sorted(kw.items())))
  if key not in _JITTED:
    _JITTED[key] = jax.jit(
        lambda v, x, k: model.apply(v, x, train=train, rngs={'dropout': k}, **kw))
  return _JITTED[key](variables, images, jax.random.PRNGKey(seed))


@pytest.mark.parametrize('kw', [
    dict(), dict(module='naive'), dict(norm='batchnorm'), dict(norm='none'),
    dict(variant='torchvision')])
def test_aux_logits_only_in_training_at_32x32(kw):
  model = create_model(**TINY, **kw)
  variables, images = _init(model)
  logits, aux = _apply(model, variables, images, False)
  assert logits.shape == (2, 7) and aux == ()
  (logits, aux), _ = _apply(model, variables, images, True,
                            mutable=['batch_stats'])
  assert logits.shape == (2, 7)
  assert [a.shape for a in aux] == [(2, 7), (2, 7)]
  assert all(bool(jnp.isfinite(a).all()) for a in (logits,) + aux)


def test_no_aux_in_training_when_off():
  model = create_model(**TINY, aux=False)
  variables, images = _init(model)
  _, aux = _apply(model, variables, images, True)
  assert aux == ()


def test_dropout_only_in_training():
  model = create_model(**TINY, aux=False, dropout=0.5)
  variables, images = _init(model, batch=4)
  train = lambda k: _apply(model, variables, images, True, seed=k)[0]
  assert not np.allclose(train(1), train(2))
  eval_a = _apply(model, variables, images, False, seed=1)[0]
  eval_b = _apply(model, variables, images, False, seed=2)[0]
  np.testing.assert_array_equal(eval_a, eval_b)
  # Inverted dropout: at rate 0 training and evaluation agree.
  model0 = create_model(**TINY, aux=False, dropout=0.0)
  np.testing.assert_allclose(_apply(model0, variables, images, True)[0],
                             eval_a, rtol=1e-5, atol=1e-6)


def test_bfloat16_forward_is_finite_and_close_to_float32():
  kw = dict(num_classes=10, width=0.25, aux=False)
  model32 = create_model(**kw)
  model16 = create_model(**kw, dtype=jnp.bfloat16)
  variables = jax.jit(lambda k: googlenet.init_variables(model32, k, 64))(
      jax.random.PRNGKey(0))  # the real initialisation: realistic activations
  images = jax.random.normal(jax.random.PRNGKey(1), (4, 64, 64, 3))
  out32 = jax.jit(lambda v, x: model32.apply(v, x)[0])(variables, images)
  out16 = jax.jit(lambda v, x: model16.apply(v, x)[0])(variables, images)
  assert out16.dtype == jnp.float32  # logits are returned in float32
  assert jax.tree_util.tree_leaves(variables)[0].dtype == jnp.float32
  assert bool(jnp.isfinite(out16).all())
  rel = float(jnp.linalg.norm(out16 - out32) / jnp.linalg.norm(out32))
  assert rel < 0.05, rel


def test_naive_module_runs_at_224():
  model = create_model(num_classes=10, module='naive', aux=True)
  images = jnp.ones((1, 224, 224, 3))
  variables = random_variables(model, 224)
  logits, _ = jax.jit(lambda v, x: model.apply(v, x))(variables, images)
  assert logits.shape == (1, 10) and bool(jnp.isfinite(logits).all())


def test_too_small_input_is_a_clear_error():
  model = create_model(**TINY)
  with pytest.raises(ValueError, match='at least 32x32'):
    googlenet.init_variables(model, jax.random.PRNGKey(0), 31)


@pytest.mark.parametrize('kw,match', [
    (dict(module='inception'), "module='inception' is not one of"),
    (dict(norm='layernorm'), 'norm'),
    (dict(variant='tf'), 'variant'),
    (dict(variant='torchvision', module='naive'), 'torchvision'),
])
def test_bad_switches_are_clear_errors(kw, match):
  with pytest.raises(ValueError, match=match):
    create_model(num_classes=10, **kw)


def test_xla_flops_are_twice_the_in_bounds_multiply_adds():
  model = create_model(num_classes=10, width=0.25, aux=False)
  s = summary.summarize(model, 64)
  assert s.total_macs == sum(r.macs for r in s.rows)
  # At 64x64 the 3x3/5x5 convolutions run on 8x8..2x2 maps: many taps pad.
  assert s.total_macs_in_bounds < 0.9 * s.total_macs
  xla = summary.xla_forward_flops(model, 64)
  # Two FLOPs per multiply-add, plus a few percent of element-wise work.
  assert 2.0 <= xla / s.total_macs_in_bounds < 2.15


def test_macs_count_a_known_convolution():
  conv = lambda x, w: jax.lax.conv_general_dilated(
      x, w, (2, 2), 'SAME', dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
  macs = flops.count_macs(conv, jax.ShapeDtypeStruct((1, 8, 8, 3), jnp.float32),
                          jax.ShapeDtypeStruct((3, 3, 3, 5), jnp.float32))
  assert macs == 4 * 4 * 5 * 3 * 3 * 3


def test_summary_builds_the_model_a_config_describes():
  from configs import imagenet  # pylint: disable=g-import-not-at-top
  model = summary.model_from_config(imagenet.get_config('module=naive,aux=False'))
  assert (model.num_classes, model.module, model.aux, model.norm) == (
      1000, 'naive', False, 'lrn')
  assert model.dtype == jnp.float32  # 'auto' does not matter for counting


def test_lrn_acts_at_the_paper_configs_input_scale():
  """The paper model's LRNs change its output at the input scale the paper
  config feeds it (Caffe's 0-255 minus the mean); at a unit scale they would
  not (relative change ~1e-5), and the LRN ablation would measure nothing."""
  from configs import imagenet  # pylint: disable=g-import-not-at-top
  from inception_jax.data import benchmark as data_benchmark  # pylint: disable=g-import-not-at-top
  from inception_jax.data import normalization  # pylint: disable=g-import-not-at-top
  config = imagenet.get_config()
  assert config.model.norm == 'lrn'
  photos = np.stack([
      np.asarray(data_benchmark.synthetic_photo(np.random.default_rng(i))
                 .resize((96, 96))) for i in range(4)]).astype(np.float32)
  lrn = create_model(num_classes=10, norm='lrn', width=0.25)
  none = create_model(num_classes=10, norm='none', width=0.25)
  variables = jax.jit(lrn.init)(jax.random.PRNGKey(0),
                                 jnp.zeros((1, 96, 96, 3)))

  def change(mode):
    x = normalization.normalize(photos, mode)
    a, _ = jax.jit(lrn.apply)(variables, x)
    b, _ = jax.jit(none.apply)(variables, x)
    return float(jnp.linalg.norm(a - b) / jnp.linalg.norm(b))
  assert change(config.data.normalization) > 0.05
  assert change('imagenet') < 1e-3


def test_each_variant_starts_from_its_own_initialisation():
  """Caffe's xavier and 0.2 biases for the paper's network (the auxiliary
  FC-1024 included); torchvision's normal(0.01) weights for its own."""
  paper = create_model(num_classes=10, width=0.25)
  tv = create_model(num_classes=10, width=0.25, variant='torchvision')
  x = jnp.zeros((1, 64, 64, 3))
  p = jax.jit(paper.init)(jax.random.PRNGKey(0), x)['params']
  t = jax.jit(tv.init)(jax.random.PRNGKey(0), x)['params']
  assert np.all(p['aux1']['fc1']['bias'] == 0.2)
  assert np.all(p['conv1']['conv']['bias'] == 0.2)
  assert np.all(p['classifier']['bias'] == 0.0)
  k = np.asarray(p['inception_4a']['b3x3']['conv']['kernel'])
  limit = np.sqrt(3.0 / np.prod(k.shape[:3]))  # xavier, uniform, fan_in
  assert np.abs(k).max() <= limit and np.abs(k).max() > 0.9 * limit
  tk = np.asarray(t['inception_4a']['b3x3']['conv']['kernel'])
  assert abs(tk.std() - 0.01) < 0.001
  assert abs(np.asarray(t['classifier']['kernel']).std() - 0.01) < 0.002
  assert np.all(t['aux1']['fc1']['bias'] == 0.0)
