"""Crop geometry: the paper's training crops and its test-time crops."""

import math

import numpy as np
import pytest

from inception_jax.data import crops


@pytest.mark.parametrize('height,width', [(375, 500), (500, 333), (28, 28)])
def test_inception_crop_statistics(height, width):
  rng = np.random.default_rng(0)
  areas, aspects = [], []
  for _ in range(5000):
    top, left, h, w = crops.sample_inception_crop(rng, height, width)
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
  top, left, h, w = crops.sample_inception_crop(rng, 10, 1000)
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
  """The PIL fast path for arrays equals TF's antialiased bilinear resize."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from inception_jax.data import preprocess  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(size + channels)
  image = rng.integers(0, 256, (28, 28, channels), dtype=np.uint8)
  cropped = preprocess.crop(image, box)
  fast = preprocess.resize(cropped, (size, size))
  assert isinstance(fast, np.ndarray) and fast.dtype == np.float32
  reference = preprocess.resize(tf.constant(cropped), (size, size)).numpy()
  assert fast.shape == reference.shape == (size, size, channels)
  np.testing.assert_allclose(fast, reference, atol=1e-3)


def test_light_data_modules_import_without_tensorflow():
  """`predict` and `restore` import these; the package itself imports
  nothing, so they must not pull in TensorFlow, TFDS or grain."""
  import subprocess  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top
  code = ('import sys\n'
          'import inception_jax.data.crops, inception_jax.data.normalization\n'
          'import inception_jax.data.config\n'
          'heavy = [m for m in ("tensorflow", "tensorflow_datasets", "grain")\n'
          '         if m in sys.modules]\n'
          'assert not heavy, heavy\n')
  subprocess.run([sys.executable, '-c', code], check=True,
                 cwd=__file__.rsplit('/tests/', 1)[0])
