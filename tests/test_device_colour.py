"""The on-device colour distortions against tf.image.

Each operation is held to its ``tf.image`` counterpart, and `distort` to
the TensorFlow reference in `tests/tf_preprocess.py` (TF-slim's order with
a clip after every step, then AlexNet's lighting) on the same draws, every
example of a batch with its own. Differences are in grey levels on
[0, 255]: both sides compute in float32 with the operations rounded in
another order. Measured: at most 2.5e-4 for each operation and for
`distort`; ATOL leaves a margin, far below the grey level a uint8 batch
resolves. Images
are 16x16 and every jitted call takes one of two shapes, so the file
compiles `distort` twice.
"""

import itertools

import jax
import numpy as np
import pytest
import tensorflow as tf

from inception_jax.data import device_colour
from inception_jax.data import sampling
from tests import tf_preprocess

ATOL = 1e-3
SIDE = 16
# The paper's strengths (TF-slim's, on the [0, 255] scale).
STRENGTHS = dict(brightness=32 / 255, contrast=0.5, saturation=0.5, hue=0.2,
                 lighting=0.1)

distort = jax.jit(device_colour.distort)


def _images(count, seed=0, dtype=np.float32):
  """Random pixels, with the cases HSV treats apart: grey, black, white and
  channels tied at the max or the min."""
  rng = np.random.default_rng(seed)
  images = rng.uniform(0, 255, (count, SIDE, SIDE, 3))
  images[:, 0, :4] = [[90, 90, 90], [0, 0, 0], [255, 255, 255], [0, 0, 7]]
  images[:, 1, :4] = [[200, 200, 30], [40, 200, 200], [200, 40, 200],
                      [10, 10, 240]]
  if dtype == np.uint8:
    return np.round(images).astype(np.uint8)
  return images.astype(dtype)


AMOUNTS = {'brightness': [-0.12, 0.0, 0.05, 0.12],
           'contrast': [0.5, 1.0, 1.3, 1.5],
           'saturation': [0.5, 1.0, 1.4, 3.0],
           'hue': [-0.5, -0.2, 0.05, 0.45]}
TF_OPS = {'brightness': lambda x, d: tf.image.adjust_brightness(x, d * 255.0),
          'contrast': tf.image.adjust_contrast,
          'saturation': tf.image.adjust_saturation,
          'hue': tf.image.adjust_hue}


@pytest.mark.parametrize('name', device_colour.STEPS)
def test_each_operation_matches_tensorflow(name):
  """One amount per example, and one amount for the whole batch."""
  op = getattr(device_colour, f'adjust_{name}')
  images = _images(4)
  amounts = np.array(AMOUNTS[name], np.float32)
  got = np.asarray(op(images, amounts))
  for image, amount, out in zip(images, amounts, got):
    want = TF_OPS[name](image, amount).numpy()
    np.testing.assert_allclose(out, want, rtol=0, atol=ATOL,
                               err_msg=f'{name} {amount}')
  np.testing.assert_allclose(
      np.asarray(op(images, amounts[-1])),
      np.stack([TF_OPS[name](i, amounts[-1]).numpy() for i in images]),
      rtol=0, atol=ATOL)


def _draws(seed):
  """The paper's draws, some with steps or lighting switched off, so one
  batch mixes orders, lengths and lighting on and off."""
  rng = np.random.default_rng(seed)
  strengths = dict(STRENGTHS)
  for key in strengths:
    if rng.uniform() < 0.2:
      strengths[key] = 0.0
  return sampling.sample_colour(rng, **strengths)


def test_distort_matches_tensorflow_on_random_draws():
  images = _images(48, seed=1)
  draws = [_draws(seed) for seed in range(48)]
  got = np.asarray(distort(images, device_colour.encode_batch(draws)))
  assert got.dtype == np.float32 and got.shape == images.shape
  assert len({d.steps and tuple(n for n, _ in d.steps) for d in draws}) > 15
  for image, draw, out in zip(images, draws, got):
    np.testing.assert_allclose(
        out, tf_preprocess.distort_color(image, draw).numpy(), rtol=0,
        atol=ATOL, err_msg=draw)


def test_distort_takes_every_order_of_every_subset_of_steps():
  """All 65 ordered subsets of the four steps, in one batch (padded to 48
  and 24 so it reuses the compiled shapes); saturation and hue next to
  each other are one step on the device, apart in TensorFlow."""
  amounts = {'brightness': 0.1, 'contrast': 1.4, 'saturation': 1.45,
             'hue': -0.3}
  orders = [order for k in range(5)
            for order in itertools.permutations(device_colour.STEPS, k)]
  assert len(orders) == 65
  draws = [sampling.ColourDraws(tuple((n, amounts[n]) for n in order), None)
           for order in orders]
  draws += [None] * (96 - len(draws))
  images = _images(96, seed=2)
  got = np.concatenate([
      np.asarray(distort(images[i:i + 48],
                         device_colour.encode_batch(draws[i:i + 48])))
      for i in (0, 48)])
  for image, draw, out in zip(images, draws, got):
    want = (image if draw is None
            else tf_preprocess.distort_color(image, draw).numpy())
    np.testing.assert_allclose(out, want, rtol=0, atol=ATOL, err_msg=draw)


def test_identity_leaves_images_unchanged():
  """Exactly, for uint8 and for floats on [0, 255], also beside examples
  that are distorted."""
  params = device_colour.identity(48)
  for images in (_images(48, seed=3, dtype=np.uint8), _images(48, seed=4)):
    got = np.asarray(distort(images, params))
    np.testing.assert_array_equal(got, images.astype(np.float32))
  images = _images(48, seed=5)
  mixed = [None if i % 3 else _draws(i) for i in range(48)]
  got = np.asarray(distort(images, device_colour.encode_batch(mixed)))
  np.testing.assert_array_equal(got[1::3], images[1::3])
  np.testing.assert_array_equal(got[2::3], images[2::3])
  assert np.abs(got[::3] - images[::3]).max() > 10


def test_uint8_and_out_of_range_inputs():
  """uint8 is cast inside; floats beyond [0, 255] are clipped first, as
  TF-slim's distortions clip them."""
  draws = [_draws(seed) for seed in range(48)]
  params = device_colour.encode_batch(draws)
  pixels = _images(48, seed=6, dtype=np.uint8)
  np.testing.assert_array_equal(np.asarray(distort(pixels, params)),
                                np.asarray(distort(pixels.astype(np.float32),
                                                   params)))
  wide = np.random.default_rng(7).uniform(
      -20, 280, (48, SIDE, SIDE, 3)).astype(np.float32)
  got = np.asarray(distort(wide, params))
  for image, draw, out in zip(wide, draws, got):
    np.testing.assert_allclose(
        out, tf_preprocess.distort_color(image, draw).numpy(), rtol=0,
        atol=ATOL)


def test_jit_vmap_and_one_image_agree_with_eager():
  """To float32 rounding: XLA's fused code rounds differently from one op
  at a time (measured up to 1.5e-4, a few ulps grown by HSV's division by
  a pixel's channel spread)."""
  images = _images(24, seed=8)
  params = device_colour.encode_batch([_draws(s) for s in range(24)])
  jitted = np.asarray(distort(images, params))
  eager = np.asarray(device_colour.distort(images, params))
  np.testing.assert_allclose(jitted, eager, rtol=0, atol=1e-3)
  mapped = np.asarray(jax.vmap(device_colour.distort)(images, params))
  np.testing.assert_allclose(mapped, eager, rtol=0, atol=1e-3)
  one = np.asarray(device_colour.distort(images[5], params[5]))
  np.testing.assert_allclose(one, eager[5], rtol=0, atol=1e-3)


def test_encode_layout():
  alpha = np.array([0.1, -0.2, 0.3], np.float32)
  draws = sampling.ColourDraws((('hue', -0.1), ('contrast', 1.2)), alpha)
  params = device_colour.encode(draws)
  assert params.dtype == np.float32
  assert params.shape == (device_colour.PARAMS_SIZE,)
  np.testing.assert_array_equal(params[device_colour.ORDER], [3, 1, 0, 0])
  np.testing.assert_allclose(params[device_colour.AMOUNT], [-0.1, 1.2, 0, 0])
  np.testing.assert_array_equal(params[device_colour.PRESENT], [1, 1, 0, 0])
  np.testing.assert_array_equal(params[device_colour.ALPHA], alpha)
  assert params[device_colour.LIGHTING] == 1
  none = device_colour.encode(None)
  np.testing.assert_array_equal(none, device_colour.identity(1)[0])
  assert device_colour.encode_batch([draws, None]).shape == (
      2, device_colour.PARAMS_SIZE)


@pytest.mark.parametrize('steps,message', [
    ((('gamma', 1.1),), 'gamma'),
    ((('hue', 0.1), ('hue', 0.2)), 'once'),
])
def test_encode_rejects_steps_it_cannot_place(steps, message):
  with pytest.raises(ValueError, match=message):
    device_colour.encode(sampling.ColourDraws(steps, None))
