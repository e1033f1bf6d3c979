"""The layers compute what Caffe's and torchvision's do (LRN, ceil-mode max
pool, adaptive average pool); their hand-written gradients equal JAX's
autodiff gradients of the plain formulations, and the model's gradient
switches select between them."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from inception_jax import flops
from inception_jax.models import googlenet, layers

# --- Forward semantics against torch ---------------------------------------------

def test_lrn_matches_torch():
  x = np.random.RandomState(0).randn(2, 5, 6, 11).astype(np.float32) * 30
  ours = layers.local_response_norm(jnp.asarray(x))
  lrn = torch.nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=1.0)
  theirs = lrn(torch.from_numpy(x).permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
  np.testing.assert_allclose(ours, theirs.numpy(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('size,window', [(112, 3), (57, 3), (13, 3), (14, 2),
                                         (7, 2), (2, 3)])
def test_ceil_mode_max_pool_matches_torch(size, window):
  x = np.random.RandomState(size).randn(1, size, size + 1, 3).astype(np.float32)
  ours = layers.max_pool_ceil(jnp.asarray(x), window, 2)
  pool = torch.nn.MaxPool2d(window, 2, ceil_mode=True)
  theirs = pool(torch.from_numpy(x).permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
  np.testing.assert_array_equal(ours, theirs.numpy())


@pytest.mark.parametrize('size', [14, 7, 5, 3])
def test_adaptive_avg_pool_matches_torch(size):
  x = np.random.RandomState(size).randn(2, size, size, 4).astype(np.float32)
  ours = layers.adaptive_avg_pool(jnp.asarray(x), 4)
  theirs = torch.nn.functional.adaptive_avg_pool2d(
      torch.from_numpy(x).permute(0, 3, 1, 2), 4).permute(0, 2, 3, 1)
  np.testing.assert_allclose(ours, theirs.numpy(), rtol=1e-6, atol=1e-6)


# --- Max pool -------------------------------------------------------------------

# (shape NHWC, window, stride, spatial pads): GoogLeNet's 3x3/2 ceil-mode pools
# (odd and even sizes), its stride-1 'same' pool, torchvision's 2x2/2 ceil
# pool, and asymmetric padding.
POOL_CASES = [
    ((2, 9, 9, 3), 3, 2, ((0, 0), (0, 0))),
    ((2, 8, 8, 3), 3, 2, ((0, 1), (0, 1))),
    ((2, 7, 7, 4), 3, 1, ((1, 1), (1, 1))),
    ((1, 7, 7, 2), 2, 2, ((0, 1), (0, 1))),
    ((2, 6, 5, 3), 3, 2, ((0, 1), (0, 0))),
]


def _inputs(shape, kind, seed=0):
  rng = np.random.RandomState(seed)
  x = rng.randn(*shape).astype(np.float32)
  if kind == 'ties':  # many equal maxima within a window
    x = np.round(x)
  elif kind == 'relu':  # windows of zeros, as after a ReLU
    x = np.maximum(np.round(2 * x) / 2, 0)
  elif kind == 'constant':
    x = np.zeros(shape, np.float32)
  return jnp.asarray(x)


@pytest.mark.parametrize('kind', ['random', 'ties', 'relu', 'constant'])
@pytest.mark.parametrize('shape,window,stride,pads', POOL_CASES)
def test_max_pool_matches_autodiff(shape, window, stride, pads, kind):
  x = _inputs(shape, kind)
  ours, ours_vjp = jax.vjp(lambda v: layers.max_pool(v, window, stride, pads),
                           x)
  ref, ref_vjp = jax.vjp(
      lambda v: layers.max_pool_reference(v, window, stride, pads), x)
  np.testing.assert_array_equal(ours, ref)
  g = jnp.asarray(np.random.RandomState(1).randn(*ref.shape)
                  .astype(np.float32))
  # Equal up to the order of additions where windows overlap; a tie routed
  # to a different pixel would differ by O(1).
  np.testing.assert_allclose(ours_vjp(g)[0], ref_vjp(g)[0], rtol=0,
                             atol=1e-6)


def test_max_pool_ties_go_to_first_maximum():
  # One 3x3 window of equal values: XLA's select_and_scatter (and ours) gives
  # the whole gradient to the first element in row-major order.
  x = jnp.ones((1, 3, 3, 1))
  grad = jax.grad(lambda v: layers.max_pool(v, 3, 1, ((0, 0), (0, 0))).sum())(x)
  expected = np.zeros((1, 3, 3, 1), np.float32)
  expected[0, 0, 0, 0] = 1.0
  np.testing.assert_array_equal(grad, expected)


def test_max_pool_bfloat16_and_jit():
  x = _inputs((2, 8, 8, 3), 'relu').astype(jnp.bfloat16)
  f = jax.jit(lambda v: jax.grad(
      lambda u: layers.max_pool(u, 3, 2, ((0, 1), (0, 1))).astype(
          jnp.float32).sum())(v))
  g = jax.jit(lambda v: jax.grad(
      lambda u: layers.max_pool_reference(u, 3, 2, ((0, 1), (0, 1))).astype(
          jnp.float32).sum())(v))
  np.testing.assert_array_equal(f(x), g(x))


def test_max_pool_grad_argument_selects_the_formulation():
  x = _inputs((2, 9, 9, 3), 'relu')
  pools = (lambda v, **kw: layers.max_pool_ceil(v, 3, 2, **kw),
           lambda v, **kw: layers.max_pool_same(v, 3, **kw))
  for pool in pools:
    stencil = str(jax.make_jaxpr(pool)(x))
    xla = str(jax.make_jaxpr(functools.partial(pool, grad='xla'))(x))
    assert 'custom_vjp_call' in stencil and 'reduce_window' not in stencil
    assert 'custom_vjp_call' not in xla and 'reduce_window' in xla
    np.testing.assert_array_equal(pool(x), pool(x, grad='xla'))
  with pytest.raises(ValueError, match="max_pool_grad='scatter' is not one of"):
    layers.max_pool_ceil(x, 3, 2, grad='scatter')


# --- Convolutions ---------------------------------------------------------------

def _conv_pair(stride, padding, dimension_numbers, **kwargs):
  """(layers.conv_general_dilated, lax.conv_general_dilated) with one geometry."""
  return (
      functools.partial(layers.conv_general_dilated,
                        window_strides=(stride, stride), padding=padding,
                        dimension_numbers=dimension_numbers, **kwargs),
      functools.partial(jax.lax.conv_general_dilated,
                        window_strides=(stride, stride), padding=padding,
                        dimension_numbers=dimension_numbers))


@pytest.mark.parametrize('kernel,stride,padding', [
    (1, 1, 'SAME'), (1, 1, 'VALID'), (1, 1, ((0, 0), (0, 0))), (1, 2, 'SAME'),
    (3, 1, 'SAME')])
def test_conv_dispatch_matches_convolution(kernel, stride, padding):
  """1x1 stride-1 convs become matmuls (values and gradients unchanged)."""
  rng = np.random.default_rng(kernel * 10 + stride)
  x = jnp.asarray(rng.standard_normal((2, 7, 7, 5)), jnp.float32)
  w = jnp.asarray(rng.standard_normal((kernel, kernel, 5, 4)), jnp.float32)
  dn = jax.lax.conv_dimension_numbers(x.shape, w.shape, ('NHWC', 'HWIO', 'NHWC'))

  ours, reference = _conv_pair(stride, padding, dn)

  np.testing.assert_allclose(ours(x, w), reference(x, w), rtol=1e-5, atol=1e-5)
  g_ours = jax.grad(lambda x, w: jnp.sum(ours(x, w) ** 2), (0, 1))(x, w)
  g_ref = jax.grad(lambda x, w: jnp.sum(reference(x, w) ** 2), (0, 1))(x, w)
  for a, b in zip(g_ours, g_ref):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)
  primitives = {e.primitive.name for e in jax.make_jaxpr(ours)(x, w).eqns}
  as_matmul = kernel == 1 and stride == 1
  assert ('dot_general' in primitives) == as_matmul
  assert ('conv_general_dilated' in primitives) == (not as_matmul)


@pytest.mark.parametrize('kernel,stride,padding,shape', [
    (3, 1, 'SAME', (2, 9, 11, 3)),
    (7, 2, ((3, 3), (3, 3)), (3, 10, 10, 3)),   # the stem's geometry
    (7, 2, 'SAME', (2, 12, 12, 4)),
    (5, 2, 'VALID', (2, 9, 9, 4)),
    (3, 1, ((2, 0), (1, -1)), (2, 8, 8, 2)),     # uneven and negative pads
    (2, 3, 'SAME', (1, 6, 7, 2)),
])
@pytest.mark.parametrize('dtype', [jnp.float32, jnp.bfloat16])
def test_im2col_gradient_matches_convolution(kernel, stride, padding, shape,
                                             dtype):
  """Large-map convolutions keep XLA's forward and get im2col gradients."""
  rng = np.random.default_rng(kernel * 10 + stride)
  x = jnp.asarray(rng.standard_normal(shape), dtype)
  w = jnp.asarray(rng.standard_normal((kernel, kernel, shape[-1], 5)), dtype)
  dn = jax.lax.conv_dimension_numbers(x.shape, w.shape, ('NHWC', 'HWIO', 'NHWC'))

  # Every map here is small: a threshold of one pixel sends them all to im2col.
  ours, reference = _conv_pair(stride, padding, dn, im2col_min_pixels=1)

  assert 'custom_vjp_call' in str(jax.make_jaxpr(ours)(x, w))
  y = ours(x, w)
  np.testing.assert_array_equal(y, reference(x, w))
  ct = jnp.asarray(rng.standard_normal(y.shape), dtype)
  g_ours = jax.jit(lambda x, w, ct: jax.vjp(ours, x, w)[1](ct))(x, w, ct)
  g_ref = jax.vjp(reference, x, w)[1](ct)
  tol = 1e-5 if dtype == jnp.float32 else 2e-2
  for a, b in zip(g_ours, g_ref):
    assert a.dtype == b.dtype and a.shape == b.shape
    a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
    np.testing.assert_allclose(a, b, rtol=tol, atol=tol * np.abs(b).max())


def test_im2col_gradient_only_on_large_maps():
  """At the default threshold the 224x224 stem and conv2 qualify, 28x28 not;
  grad='xla' turns it off everywhere."""
  dn = ('NHWC', 'HWIO', 'NHWC')

  def uses_im2col(size, kernel, stride, **kwargs):
    x = jax.ShapeDtypeStruct((1, size, size, 3), jnp.float32)
    w = jax.ShapeDtypeStruct((kernel, kernel, 3, 4), jnp.float32)
    conv = lambda x, w: layers.conv_general_dilated(  # pylint: disable=g-long-lambda
        x, w, (stride, stride), 'SAME',
        dimension_numbers=jax.lax.conv_dimension_numbers(x.shape, w.shape, dn),
        **kwargs)
    return 'custom_vjp_call' in str(jax.make_jaxpr(conv)(x, w))

  assert uses_im2col(224, 7, 2) and uses_im2col(56, 3, 1)
  assert not uses_im2col(28, 3, 1) and not uses_im2col(56, 1, 1)
  assert not uses_im2col(224, 7, 2, grad='xla')
  with pytest.raises(ValueError, match="conv_grad='eigen' is not one of"):
    uses_im2col(224, 7, 2, grad='eigen')
  # The analytic count sees the forward convolution inside the custom VJP.
  image = jax.ShapeDtypeStruct((1, 224, 224, 3), jnp.float32)
  counts = []
  for conv_grad in ('im2col', 'xla'):
    model = googlenet.create_model(num_classes=10, width=0.25, aux=False,
                                   conv_grad=conv_grad)
    variables = jax.eval_shape(
        lambda m=model: googlenet.init_variables(m, jax.random.PRNGKey(0), 224))
    counts.append(flops.count_macs(
        lambda v, x, m=model: m.apply(v, x, train=False), variables, image))
  assert counts[0] == counts[1] > 0


def test_im2col_gradient_with_the_batch_sharded_over_devices():
  """The per-image scan of the backward is exact when the batch is sharded."""
  from jax.sharding import Mesh, NamedSharding, PartitionSpec as P  # pylint: disable=g-import-not-at-top
  devices = np.array(jax.devices()[:8])
  mesh = Mesh(devices, ('data',))
  rng = np.random.default_rng(3)
  # 7x7/2 on 96x96: a 48x48 output map, over the im2col threshold.
  x = jnp.asarray(rng.standard_normal((len(devices), 96, 96, 3)), jnp.float32)
  w = jnp.asarray(rng.standard_normal((7, 7, 3, 4)), jnp.float32)
  dn = jax.lax.conv_dimension_numbers(x.shape, w.shape, ('NHWC', 'HWIO', 'NHWC'))

  def loss(conv, x, w):
    y = conv(x, w, (2, 2), ((3, 3), (3, 3)), dimension_numbers=dn)
    return jnp.sum(jnp.sin(y))

  assert 'custom_vjp_call' in str(jax.make_jaxpr(
      functools.partial(loss, layers.conv_general_dilated))(x, w))
  grad = jax.jit(jax.grad(functools.partial(loss, layers.conv_general_dilated),
                          (0, 1)),
                 in_shardings=(NamedSharding(mesh, P('data')),
                               NamedSharding(mesh, P())))
  g_sharded = grad(x, w)
  g_ref = jax.grad(functools.partial(loss, jax.lax.conv_general_dilated),
                   (0, 1))(x, w)
  for a, b in zip(g_sharded, g_ref):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4 * np.abs(b).max())


# --- The model's switches --------------------------------------------------------

# 96x96: the stem's output map (48x48) is over the im2col threshold, so both
# switches change something in this model.
_SIZE = 96


def _loss_and_grad(model, variables, images, labels):
  def loss(params):
    (logits, aux), _ = model.apply(
        {**variables, 'params': params}, images, train=True,
        rngs={'dropout': jax.random.PRNGKey(5)}, mutable=['batch_stats'])
    ce = lambda l: -jnp.mean(jnp.take_along_axis(  # pylint: disable=g-long-lambda
        jax.nn.log_softmax(l), labels[:, None], axis=-1))
    return ce(logits) + 0.3 * sum(ce(a) for a in aux)
  return jax.value_and_grad(loss)(variables['params'])


def test_model_gradient_switches_give_the_same_gradient():
  # torchvision's network has every kind of pool and convolution the paper's
  # has, and BatchNorm besides.
  kw = dict(num_classes=5, width=0.0625, variant='torchvision')
  fast = googlenet.create_model(**kw)
  plain = googlenet.create_model(**kw, max_pool_grad='xla', conv_grad='xla')
  rng = np.random.RandomState(0)
  images = jnp.asarray(rng.randn(2, _SIZE, _SIZE, 3), jnp.float32)
  labels = jnp.asarray([1, 3])
  variables = googlenet.init_variables(fast, jax.random.PRNGKey(0), _SIZE)

  # The switches reach every pool and convolution: no custom VJP is left.
  forward = lambda m: str(jax.make_jaxpr(  # pylint: disable=g-long-lambda
      lambda v, x: m.apply(v, x, train=True, mutable=['batch_stats'],
                           rngs={'dropout': jax.random.PRNGKey(5)}))(
                               variables, images))
  assert 'custom_vjp_call' in forward(fast)
  assert 'custom_vjp_call' not in forward(plain)

  (loss_f, grad_f), (loss_p, grad_p) = [
      jax.jit(functools.partial(_loss_and_grad, m))(variables, images, labels)
      for m in (fast, plain)]
  np.testing.assert_allclose(loss_f, loss_p, rtol=1e-6)
  for path, a in jax.tree_util.tree_leaves_with_path(grad_f):
    b = dict(jax.tree_util.tree_leaves_with_path(grad_p))[path]
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4 * np.abs(b).max(),
                               err_msg=jax.tree_util.keystr(path))


@pytest.mark.parametrize('kw,match', [
    (dict(max_pool_grad='scatter'),
     "model.max_pool_grad='scatter' is not one of"),
    (dict(conv_grad='eigen'), "model.conv_grad='eigen' is not one of"),
])
def test_bad_gradient_switch_is_a_one_line_error(kw, match):
  with pytest.raises(ValueError, match=match) as e:
    googlenet.create_model(num_classes=10, **kw)
  assert '\n' not in str(e.value)


def test_gradient_switches_are_recorded_model_args():
  model = googlenet.create_model(num_classes=10, conv_grad='xla')
  kwargs = googlenet.model_kwargs(model)
  assert (kwargs['max_pool_grad'], kwargs['conv_grad']) == ('stencil', 'xla')
  assert googlenet.model_kwargs(googlenet.create_model(**kwargs)) == kwargs
