"""Crop geometry (the paper's training crops and its test-time crops) and
the random draws of training."""

import math

import numpy as np
import pytest

from inception_jax.data import crops
from inception_jax.data import sampling


@pytest.mark.parametrize('height,width', [(375, 500), (500, 333), (28, 28)])
def test_inception_crop_statistics(height, width):
  rng = np.random.default_rng(0)
  areas, aspects = [], []
  for _ in range(5000):
    top, left, h, w = sampling.sample_inception_crop(rng, height, width)
    assert 0 <= top and top + h <= height and 0 <= left and left + w <= width
    areas.append(h * w / (height * width))
    aspects.append(w / h)
  areas, aspects = np.array(areas), np.array(aspects)
  # Rounding to whole pixels moves a crop by at most half a pixel per side.
  slack = 1.0 / min(height, width)
  assert areas.min() >= 0.08 - 4 * slack and areas.max() <= 1.0
  assert aspects.min() >= 3 / 4 - 4 * slack
  assert aspects.max() <= 4 / 3 + 4 * slack
  # The draws spread over the whole allowed range (a 2:3 portrait image
  # holds no 3:4 box larger than 89% of it), not one corner of it.
  assert areas.min() < 0.15 and areas.max() > 0.85
  assert np.quantile(aspects, 0.02) < 0.8 and np.quantile(aspects, 0.98) > 1.25


def test_inception_crop_falls_back_to_center():
  # A 1x100 strip admits no crop with aspect ratio in [3/4, 4/3] and area
  # of at least 8%, so the fallback (largest centered allowed box) is used.
  rng = np.random.default_rng(0)
  top, left, h, w = sampling.sample_inception_crop(rng, 10, 1000)
  assert (h, w) == (10, 13) and left == (1000 - 13) // 2 and top == 0


def test_center_crop_box():
  assert crops.center_crop_box(375, 500, 0.875) == (23, 86, 328, 328)
  assert crops.center_crop_box(28, 28) == (0, 0, 28, 28)


def test_ten_crop_boxes():
  shape, boxes = crops.ten_crop_boxes(375, 500, 224)
  assert shape == (256, 341)
  assert boxes == [(0, 0, 224, 224), (0, 117, 224, 224), (32, 0, 224, 224),
                   (32, 117, 224, 224), (16, 58, 224, 224)]


def test_144_crops_landscape():
  height, width = 375, 500
  boxes = crops.multi_crop_144_boxes(height, width, 224)
  assert len(boxes) == 72  # Each also mirrored: 144.
  assert sorted({b.scale for b in boxes}) == [256, 288, 320, 352]
  for scale in (256, 288, 320, 352):
    at_scale = [b for b in boxes if b.scale == scale]
    assert len(at_scale) == 18
    rh, rw = at_scale[0].resized
    assert rh == scale and rw == round(width * scale / height)
    squares = []
    for b in at_scale:
      if b.square not in squares:
        squares.append(b.square)
    # Left, center and right squares of side `scale`.
    assert squares == [(0, 0, scale, scale),
                       (0, (rw - scale) // 2, scale, scale),
                       (0, rw - scale, scale, scale)]
    for square in squares:
      top, left, side, _ = square
      in_square = [b.box for b in at_scale if b.square == square]
      far = side - 224
      assert in_square == [
          (top, left, 224, 224), (top, left + far, 224, 224),
          (top + far, left, 224, 224), (top + far, left + far, 224, 224),
          (top + far // 2, left + far // 2, 224, 224), square]


def test_144_crops_portrait():
  boxes = crops.multi_crop_144_boxes(500, 375, 224)
  assert len(boxes) == 72
  first = boxes[0]
  assert first.scale == 256 and first.resized == (341, 256)
  squares = []
  for b in boxes[:18]:
    if b.square not in squares:
      squares.append(b.square)
  # Top, center and bottom squares.
  assert squares == [(0, 0, 256, 256), (42, 0, 256, 256), (85, 0, 256, 256)]
  assert boxes[6 + 4].box == (42 + 16, 16, 224, 224)  # Center of center.


def test_144_crops_scale_with_input_size():
  assert crops.paper_scales(224) == [256, 288, 320, 352]
  assert crops.paper_scales(112) == [128, 144, 160, 176]
  boxes = crops.multi_crop_144_boxes(28, 28, 32)
  assert len(boxes) == 72
  for b in boxes:
    top, left, h, w = b.box
    assert top + h <= b.resized[0] and left + w <= b.resized[1]
    assert h == w and (h == 32 or b.box == b.square)
  assert math.isclose(len({b.scale for b in boxes}), 4)


@pytest.mark.parametrize('channels', [1, 3])
@pytest.mark.parametrize('box,size', [((2, 3, 22, 20), 48), ((0, 0, 28, 28), 32),
                                      ((5, 1, 17, 26), 17), ((0, 0, 28, 28), 28),
                                      ((4, 4, 20, 20), 224)])
def test_numpy_resize_matches_tensorflow(box, size, channels):
  """The PIL path for arrays equals TF's antialiased bilinear resize."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from inception_jax.data import preprocess  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(size + channels)
  image = rng.integers(0, 256, (28, 28, channels), dtype=np.uint8)
  cropped = preprocess.crop(image, box)
  fast = preprocess.resize(cropped, (size, size))
  assert isinstance(fast, np.ndarray) and fast.dtype == np.float32
  reference = tf.cast(tf.image.resize(cropped, (size, size), antialias=True),
                      tf.float32).numpy()
  assert fast.shape == reference.shape == (size, size, channels)
  # uint8 takes PIL's 8-bit resampler: rounded to grey levels (see
  # tests/test_data_pixels.py).
  np.testing.assert_allclose(fast, reference, atol=1.5)


def test_light_data_modules_import_without_tensorflow():
  """`predict` and `restore` import these; the package itself imports
  nothing, so they must not pull in TensorFlow, TFDS or grain (the pixel
  code imports TensorFlow only when it first decodes)."""
  import subprocess  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top
  code = ('import sys\n'
          'import inception_jax.data.crops, inception_jax.data.normalization\n'
          'import inception_jax.data.config, inception_jax.data.preprocess\n'
          'heavy = [m for m in ("tensorflow", "tensorflow_datasets", "grain")\n'
          '         if m in sys.modules]\n'
          'assert not heavy, heavy\n')
  subprocess.run([sys.executable, '-c', code], check=True,
                 cwd=__file__.rsplit('/tests/', 1)[0])


def test_pad_and_crop_draws_where_the_records_say():
  """Decoded arrays are padded as stored (28 px: pad 4), encoded records
  at the model's size (48 px: pad 6), and both draw their offsets."""
  from inception_jax.data import config as config_lib  # pylint: disable=g-import-not-at-top
  from inception_jax.data import transforms  # pylint: disable=g-import-not-at-top
  cfg = config_lib.default_config()
  cfg.update(crop='pad_and_crop', image_size=48, distort_color=False)
  settings = transforms.TrainSettings.from_config(cfg)
  stored = sampling.draw_train(np.random.default_rng(0), settings, 28, 28,
                               pad_after_resize=False)
  assert stored.box == (0, 0, 28, 28) and stored.pad_after_resize is None
  assert stored.pad_before_resize.pad == 4
  resized = sampling.draw_train(np.random.default_rng(0), settings, 28, 28,
                                pad_after_resize=True)
  assert resized.pad_before_resize is None
  assert resized.pad_after_resize.pad == 6
  for pad_crop in (stored.pad_before_resize, resized.pad_after_resize):
    assert 0 <= pad_crop.top <= 2 * pad_crop.pad
    assert 0 <= pad_crop.left <= 2 * pad_crop.pad


def test_colour_distortions_on_the_0_255_scale():
  """Distorting pixels on [0, 255] equals the [0, 1] formulation (TF-slim's,
  which the strengths come from) scaled back, to float32 round-off."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from inception_jax.data import device_colour  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(3)
  image = rng.uniform(-5, 260, (12, 10, 3)).astype(np.float32)
  for seed in range(4):
    draws = sampling.sample_colour(
        np.random.default_rng(seed), brightness=32 / 255, contrast=0.5,
        saturation=0.5, hue=0.2, lighting=0.1)
    ref = tf.clip_by_value(image, 0.0, 255.0) / 255.0
    ops = {'brightness': tf.image.adjust_brightness,
           'contrast': tf.image.adjust_contrast,
           'saturation': tf.image.adjust_saturation,
           'hue': tf.image.adjust_hue}
    for name, amount in draws.steps:
      ref = tf.clip_by_value(ops[name](ref, amount), 0.0, 1.0)
    ref += device_colour.PCA_EIGVEC @ (draws.lighting
                                       * device_colour.PCA_EIGVAL)
    ref = 255.0 * tf.clip_by_value(ref, 0.0, 1.0).numpy()
    got = np.asarray(device_colour.distort(image, device_colour.encode(draws)))
    assert len(draws.steps) == 4
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-3)


def test_caffe_crop_is_a_random_224_of_the_256_squash():
  rng = np.random.default_rng(0)
  boxes = [sampling.sample_caffe_crop(rng, 375, 500, 224 / 256)
           for _ in range(2000)]
  assert {(h, w) for _, _, h, w in boxes} == {(328, 438)}
  tops = np.array([t for t, _, _, _ in boxes])
  lefts = np.array([l for _, l, _, _ in boxes])
  assert tops.min() == 0 and tops.max() == 375 - 328
  assert lefts.min() == 0 and lefts.max() == 500 - 438
  # Uniform positions: mean in the middle of the range.
  assert abs(tops.mean() - (375 - 328) / 2) < 1.5
  assert abs(lefts.mean() - (500 - 438) / 2) < 2.0
