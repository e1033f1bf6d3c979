"""Training resizes against ``tf.image.resize(..., antialias=False)``.

``data.antialias=False`` (the default) resizes training crops as TF-slim's
inception_preprocessing and flax's examples/imagenet do; each filter is held
to TensorFlow's on random pixels, growing, shrinking and one axis of each,
odd sizes included. Differences are in grey levels on [0, 255].
"""

import io

import numpy as np
from PIL import Image
import pytest

from inception_jax.data import benchmark
from inception_jax.data import config as config_lib
from inception_jax.data import preprocess
from inception_jax.data import sampling
from inception_jax.data import transforms
from tests import tf_preprocess

# uint8 output against TF's float output (clipped to [0, 255] as 8-bit
# pixels are). Bilinear is OpenCV's fixed-point INTER_LINEAR: measured at
# most 0.80. Bicubic uses TF's own weights in float32 and rounds once:
# measured 0.50002. Area is exact averaging with or without antialiasing
# (TF ignores the flag); TF places its boxes in float32, 6e-3 apart on
# these sizes. Nearest is TF's, exactly.
UINT8_ATOL = {'bilinear': 1.0, 'bicubic': 0.5 + 1e-3, 'area': 1e-2,
              'nearest': 0.0}
# Float input stays float32, unclipped, as TF's output: bilinear and
# bicubic with TF's float32 source positions and weights, measured 1e-4.
FLOAT_ATOL = {'bilinear': 1e-3, 'bicubic': 1e-3, 'area': 1e-2,
              'nearest': 0.0}

# (input height, width) -> (output height, width).
SHRINK = [((375, 500), (224, 224)), ((61, 47), (17, 23)),
          ((448, 448), (224, 224))]  # 448: OpenCV's 2x shortcut.
GROW = [((37, 29), (224, 224)), ((5, 7), (16, 9)), ((1, 1), (3, 3))]
MIXED = [((101, 97), (55, 180)), ((97, 101), (180, 55)),
         ((224, 301), (224, 224)), ((3, 250), (9, 31))]
SIZES = SHRINK + GROW + MIXED


def _random_pixels(seed, shape, channels):
  return np.random.default_rng(seed).integers(0, 256, shape + (channels,),
                                              dtype=np.uint8)


@pytest.mark.parametrize('method', sampling.INTERPOLATIONS)
@pytest.mark.parametrize('channels', [1, 3])
def test_uint8_resize_matches_tensorflow_without_antialiasing(method,
                                                              channels):
  for seed, (shape_in, shape_out) in enumerate(SIZES):
    image = _random_pixels(seed, shape_in, channels)
    got = preprocess.resample(image, shape_out, method, antialias=False)
    want = np.clip(tf_preprocess.resize(image, shape_out, method,
                                        antialias=False).numpy(), 0, 255)
    assert got.shape == shape_out + (channels,)
    # 8-bit stays 8-bit except for area (float averages).
    assert got.dtype == (np.float32 if method == 'area' else np.uint8)
    diff = np.abs(got.astype(np.float32) - want)
    assert diff.max() <= UINT8_ATOL[method], (shape_in, shape_out,
                                              diff.max())
    # Rounding alone averages a quarter of a grey level.
    assert diff.mean() < 0.3, (shape_in, shape_out, diff.mean())


# OpenCV's INTER_AREA takes at most 4 channels: area is not asked for 6.
@pytest.mark.parametrize('method,channels', [
    (m, c) for m in sampling.INTERPOLATIONS for c in (1, 2, 3, 6)
    if not (m == 'area' and c > 4)])
def test_float_resize_matches_tensorflow_without_antialiasing(method,
                                                              channels):
  """float32 and float64 (and uint8 with other channel counts than grey
  and RGB) are resampled in float32, unrounded and unclipped."""
  for seed, (shape_in, shape_out) in enumerate(SIZES):
    pixels = _random_pixels(seed, shape_in, channels)
    want = tf_preprocess.resize(pixels.astype(np.float32), shape_out,
                                method, antialias=False).numpy()
    images = [pixels.astype(np.float32), pixels.astype(np.float64)]
    if channels not in (1, 3):
      images.append(pixels)
    for image in images:
      got = preprocess.resample(image, shape_out, method, antialias=False)
      assert got.dtype == np.float32 and got.shape == want.shape
      np.testing.assert_allclose(got, want, rtol=0, atol=FLOAT_ATOL[method],
                                 err_msg=f'{shape_in} {shape_out}')
  # Bicubic's negative lobes overshoot; float output keeps it, as TF's.
  if method == 'bicubic':
    assert want.min() < 0 or want.max() > 255


@pytest.mark.parametrize('method', sampling.INTERPOLATIONS)
def test_grey_is_each_channel_of_the_rgb_resize_without_antialiasing(method):
  """What lets the decoded cache store grey images with one channel."""
  for seed, (shape_in, shape_out) in enumerate(SIZES):
    grey = _random_pixels(seed, shape_in, 1)
    got = preprocess.resample(grey, shape_out, method, antialias=False)
    rgb = preprocess.resample(np.repeat(grey, 3, -1), shape_out, method,
                              antialias=False)
    np.testing.assert_array_equal(np.repeat(got, 3, -1), rgb)


@pytest.mark.parametrize('method', sampling.INTERPOLATIONS)
def test_the_flag_changes_only_bilinear_and_bicubic_when_shrinking(method):
  """Antialiasing low-passes when shrinking (bilinear and bicubic only);
  area and nearest are the same filter either way, as in TF."""
  image = _random_pixels(0, (375, 500), 3)
  plain = preprocess.resample(image, (224, 224), method, antialias=False)
  filtered = preprocess.resample(image, (224, 224), method, antialias=True)
  if method in ('area', 'nearest'):
    np.testing.assert_array_equal(plain, filtered)
  else:
    # Random pixels: a low-pass pulls them towards the mean.
    assert plain.astype(np.float32).std() > 1.2 * filtered.std()
  # Default: the antialiased filter (evaluation's).
  np.testing.assert_array_equal(
      preprocess.resample(image, (224, 224), method), filtered)


def _encode(pixels):
  buffer = io.BytesIO()
  Image.fromarray(pixels).save(buffer, format='JPEG', quality=90)
  return buffer.getvalue()


def _photo(seed, height, width):
  return np.asarray(benchmark.synthetic_photo(np.random.default_rng(seed),
                                              height, width))


@pytest.mark.parametrize('method', ['bilinear', 'bicubic'])
def test_no_dct_scaled_decode_without_antialiasing(method):
  """A crop large enough for a 1/2-scale decode is decoded in full when the
  filter does not low-pass: the result is the full crop's resize."""
  encoded = _encode(_photo(11, 1200, 1600))
  box = (100, 200, 1000, 1300)
  assert preprocess.dct_ratio(box, (224, 224), method) == 2
  assert preprocess.dct_ratio(box, (224, 224), method, antialias=False) == 1
  cropped = preprocess.decode_crop(encoded, box)
  np.testing.assert_array_equal(
      preprocess.decode_crop_resized(encoded, box, (224, 224), method,
                                     antialias=False),
      preprocess.resample(cropped, (224, 224), method, antialias=False))
  np.testing.assert_array_equal(
      preprocess.EncodedImages().decode_resized(encoded, box, (224, 224),
                                                method, antialias=False),
      preprocess.resample(cropped, (224, 224), method, antialias=False))


def _tf_train_pixels(record_format, record, draws, size):
  """The training transform's pixels with TF's resize (antialias=False) of
  the decoded crop, clipped to [0, 255] as 8-bit pixels are."""
  image = preprocess.pad_and_crop(record_format.decode(record, draws.box),
                                  draws.pad_before_resize)
  image = np.clip(tf_preprocess.resize(image, (size, size),
                                       draws.interpolation,
                                       antialias=False).numpy(), 0, 255)
  image = preprocess.to_rgb(preprocess.pad_and_crop(image,
                                                    draws.pad_after_resize))
  return image[:, ::-1] if draws.flip else image


@pytest.mark.parametrize('records,overrides', [
    ('jpeg', {}),  # The paper's crops, decoded from JPEG.
    ('grey', {'crop': 'random_resized'}),  # Decoded arrays.
    ('grey', {'crop': 'pad_and_crop'}),  # Padded, then shrunk.
])
def test_train_transform_resizes_as_tensorflow_without_antialiasing(
    records, overrides):
  """The default config's training transform, end to end, against TF's
  ``antialias=False`` resize of the decoded crop: within the filters'
  bounds above, for every interpolation the paper draws (area's float
  average rounded to the 8 bits a batch carries)."""
  cfg = config_lib.default_config()
  cfg.update(image_size=40, distort_color=False, **overrides)
  assert not cfg.antialias
  settings = transforms.TrainSettings.from_config(cfg)
  if records == 'jpeg':
    record_format = preprocess.EncodedImages()
    stored = [_encode(_photo(s, *hw)) for s, hw in
              enumerate([(375, 500), (333, 501), (121, 97)])]
  else:
    record_format = preprocess.DecodedArrays()
    stored = [_random_pixels(s, hw, 1) for s, hw in
              enumerate([(64, 64), (57, 71)])]
  transform = transforms.TrainPreprocess(settings, record_format)
  methods = set()
  for i in range(40):
    record = stored[i % len(stored)]
    got = transform.random_map({'image': record, 'label': 3},
                               np.random.default_rng(i))
    draws = sampling.draw_train(
        np.random.default_rng(i), settings, *record_format.shape(record),
        pad_after_resize=record_format.pad_after_resize)
    methods.add(draws.interpolation)
    want = _tf_train_pixels(record_format, record, draws, 40)
    assert got['image'].shape == (40, 40, 3) and got['label'] == 3
    assert got['image'].dtype == np.uint8
    diff = np.abs(got['image'] - want).max()
    atol = 0.51 if draws.interpolation == 'area' else UINT8_ATOL[
        draws.interpolation]
    assert diff <= atol, (i, draws, diff)
  assert methods == set(sampling.INTERPOLATIONS)
