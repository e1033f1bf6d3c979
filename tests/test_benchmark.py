"""The benchmark runs end to end (tiny sizes only) and the custom max-pool
gradient equals JAX's autodiff gradient of the plain formulation."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from inception_jax import benchmark
from inception_jax.models import layers

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


KEYS = ('train_ratio', 'infer_ratio', 'matmul_peak_tflops', 'memory_source',
        'flops_convention', 'ours_torchvision', 'torch')
ENTRY_KEYS = ('train_images_per_s', 'infer_images_per_s', 'compile_s',
              'peak_memory_bytes', 'train_mfu', 'infer_mfu',
              'train_step_flops')


def test_benchmark_end_to_end_tiny(capsys):
  pytest.importorskip('torchvision')
  benchmark.main([
      '--image_size=32', '--batch_size=2', '--width=0.125',
      '--num_classes=10', '--peer=torchvision', '--repeats=1', '--steps=1',
      '--warmup=1', '--matmul_size=128'])
  out = capsys.readouterr().out.strip().splitlines()
  result = json.loads(out[-1])
  for key in KEYS:
    assert key in result, key
  for entry in (result['ours_torchvision'], result['torch']):
    for key in ENTRY_KEYS:
      assert key in entry, key
    assert entry['train_images_per_s'] > 0
    assert entry['infer_images_per_s'] > 0
  ours = result['ours_torchvision']
  assert ours['train_forward_macs'] > ours['infer_forward_macs'] > 0
  assert result['train_ratio'] > 0 and result['infer_ratio'] > 0
  assert any('ours/torchvision' in line for line in out[:-1])


def test_benchmark_reference_switches(capsys, monkeypatch):
  """--max_pool=xla / --conv_grad=xla measure the plain formulations."""
  monkeypatch.setattr(layers, 'max_pool', layers.max_pool)
  monkeypatch.setattr(layers, '_IM2COL_MIN_PIXELS', layers._IM2COL_MIN_PIXELS)  # pylint: disable=protected-access
  benchmark.main([
      '--image_size=32', '--batch_size=1', '--width=0.0625',
      '--num_classes=10', '--repeats=1', '--steps=1', '--warmup=1',
      '--matmul_size=128', '--skip_infer=True', '--max_pool=xla',
      '--conv_grad=xla'])
  result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
  assert (result['max_pool'], result['conv_grad']) == ('xla', 'xla')
  assert layers.max_pool is layers.max_pool_reference
  assert layers._IM2COL_MIN_PIXELS == float('inf')  # pylint: disable=protected-access
