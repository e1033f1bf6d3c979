"""The pixel work against the TensorFlow implementation it replaced.

`tests/tf_preprocess.py` keeps the eager ``tf.image`` code; each step and
each whole transform (training, evaluation with 1, 10 and 144 crops) is
held to it on the same draws, with the tolerances said below. Pixel
differences are in grey levels on [0, 255].
"""

import io
import subprocess
import sys
import time

import numpy as np
from PIL import Image
import pytest
import tensorflow as tf

from inception_jax.data import benchmark
from inception_jax.data import config as config_lib
from inception_jax.data import device_colour
from inception_jax.data import normalization
from inception_jax.data import preprocess
from inception_jax.data import sampling
from inception_jax.data import transforms
from tests import tf_preprocess
from tests.helpers import run_python

# PIL's 8-bit resampler rounds to whole grey levels (0.5) and its
# fixed-point weights add a little: measured at most 1.1.
RGB8_RESIZE_ATOL = 1.5


def _photo(seed, height=375, width=500):
  return np.asarray(benchmark.synthetic_photo(np.random.default_rng(seed),
                                              height, width))


def _encode(pixels, fmt='JPEG'):
  buffer = io.BytesIO()
  Image.fromarray(pixels).save(buffer, format=fmt, quality=90)
  return buffer.getvalue()


# Shrinking both sides, growing both, one of each, and the image's own size.
BOXES = [(10, 20, 300, 400), (50, 60, 120, 150), (5, 7, 200, 260),
         (3, 4, 230, 180), (0, 0, 224, 224), (1, 2, 37, 29)]


@pytest.mark.parametrize('method', sampling.INTERPOLATIONS)
def test_rgb8_resize_matches_tensorflow(method):
  image = _photo(0)
  for box in BOXES:
    cropped = np.ascontiguousarray(preprocess.crop(image, box))
    got = preprocess.resize(cropped, (224, 224), method)
    assert got.dtype == np.float32 and got.shape == (224, 224, 3)
    # 8-bit output: TF's bicubic overshoot beyond [0, 255] is clipped.
    want = np.clip(tf_preprocess.resize(cropped, (224, 224), method), 0, 255)
    atol = {'nearest': 0, 'area': 1e-2}.get(method, RGB8_RESIZE_ATOL)
    np.testing.assert_allclose(got, want, rtol=0, atol=atol,
                               err_msg=f'{method} {box}')
    assert np.abs(got - want).mean() < 0.35


@pytest.mark.parametrize('method', sampling.INTERPOLATIONS)
@pytest.mark.parametrize('channels', [1, 3])
def test_float_resize_matches_tensorflow(method, channels):
  """Float arrays (crops of resized images, anything not 8-bit) are
  resampled in float32, unclipped, as TF does."""
  rng = np.random.default_rng(channels)
  for dtype in (np.float32, np.float64):
    image = rng.integers(0, 256, (28, 28, channels)).astype(dtype)
    for box, size in [((2, 3, 22, 20), 48), ((0, 0, 28, 28), 17),
                      ((5, 1, 17, 26), 20)]:
      cropped = preprocess.crop(image, box)
      got = preprocess.resize(cropped, (size, size), method)
      want = tf_preprocess.resize(cropped, (size, size), method).numpy()
      assert got.shape == want.shape == (size, size, channels)
      np.testing.assert_allclose(got, want, rtol=0, atol=2e-3,
                                 err_msg=f'{method} {box} {dtype}')


@pytest.mark.parametrize('method', sampling.INTERPOLATIONS)
def test_grey_uint8_resize_is_the_rgb_resize_of_the_same_pixels(method):
  """Fashion-MNIST's arrays and the decoded cache's grey images take the
  8-bit path too, channel for channel what the same image decoded to RGB
  gets, so cached and encoded records give the same batches."""
  grey = _photo(2, 60, 45)[..., :1]
  for box, size in [((2, 3, 50, 40), 32), ((0, 0, 60, 45), 90),
                    ((5, 1, 17, 26), 20), ((1, 1, 40, 20), 30)]:
    got = preprocess.resize(preprocess.crop(grey, box), (size, size), method)
    rgb = preprocess.resize(preprocess.crop(np.repeat(grey, 3, -1), box),
                            (size, size), method)
    assert got.shape == (size, size, 1)
    np.testing.assert_array_equal(np.repeat(got, 3, -1), rgb)
    want = np.clip(tf_preprocess.resize(preprocess.crop(grey, box),
                                        (size, size), method), 0, 255)
    np.testing.assert_allclose(got, want, rtol=0, atol={
        'nearest': 0, 'area': 1e-2}.get(method, RGB8_RESIZE_ATOL))


def test_unknown_interpolation_is_named():
  with pytest.raises(ValueError, match='lanczos'):
    preprocess.resize(np.zeros((4, 4, 3), np.uint8), (2, 2), 'lanczos')


def test_pad_and_crop_matches_tensorflow():
  image = np.arange(6 * 5 * 3, dtype=np.float32).reshape(6, 5, 3)
  for pad_crop in (sampling.PadCrop(2, 0, 4), sampling.PadCrop(1, 1, 1),
                   None):
    np.testing.assert_array_equal(
        preprocess.pad_and_crop(image, pad_crop),
        tf_preprocess.pad_and_crop(tf.constant(image), pad_crop))


def test_jpeg_shape_and_decoding_match_tensorflow():
  """The header parse gives TF's shape; the decoded pixels are TF's."""
  for seed, (h, w) in enumerate([(375, 500), (31, 17), (500, 333)]):
    for fmt in ('JPEG', 'PNG'):
      encoded = _encode(_photo(seed, h, w), fmt)
      assert preprocess.encoded_shape(encoded) == (h, w)
      assert tf_preprocess.encoded_shape(encoded) == (h, w)
      box = (3, 5, h // 2, w // 3)
      np.testing.assert_array_equal(
          preprocess.decode_crop(encoded, box),
          tf_preprocess.decode_crop(encoded, box).numpy())
  grey = _encode(_photo(9, 40, 30)[..., 0])
  assert preprocess.decode(grey).shape == (40, 30, 3)


def _settings(**overrides):
  cfg = config_lib.default_config()
  cfg.update(image_size=224, normalization='caffe', **overrides)
  return transforms.TrainSettings.from_config(cfg)


@pytest.mark.parametrize('overrides', [
    {},  # The paper's: random interpolation, flips, Howard's distortions.
    {'distort_color': False, 'random_interpolation': False},
    {'crop': 'pad_and_crop', 'distort_color': False},
    {'crop': 'caffe'},
    {'antialias': True},
    {'antialias': True, 'distort_color': False,
     'random_interpolation': False},
])
def test_train_transform_matches_tensorflow(overrides):
  """Same generator in, same draws, the same pixels out as the eager TF
  transform (with the config's ``antialias``), within the resize's
  rounding (which the distortions can stretch by their contrast and
  saturation factors)."""
  settings = _settings(**overrides)
  transform = transforms.TrainPreprocess(settings, preprocess.EncodedImages())
  records = [_encode(_photo(s, *hw)) for s, hw in
             enumerate([(375, 500), (333, 500), (500, 375), (180, 240)])]
  methods = set()
  for i in range(24):
    record = records[i % len(records)]
    got = transform.random_map({'image': record, 'label': 1},
                               np.random.default_rng(i))
    draws = sampling.draw_train(np.random.default_rng(i), settings,
                                *preprocess.encoded_shape(record),
                                pad_after_resize=True)
    methods.add(draws.interpolation)
    want = tf_preprocess.train_example(record, draws, 224, 'caffe',
                                       antialias=settings.antialias)
    # The host's part, then the step's: the drawn colour distortions and
    # the normalisation, on the device.
    assert got['image'].dtype == np.uint8
    assert ('colour' in got) == settings.distort_color
    pixels = (device_colour.distort(got['image'], got['colour'])
              if 'colour' in got else got['image'])
    pixels = np.asarray(normalization.on_device(pixels, 'caffe'))
    if draws.colour is None and draws.interpolation != 'bicubic':
      # No clipping in either: a pixel-wise bound (area resizes in float,
      # then rounds to the 8 bits a batch carries).
      atol = {'nearest': 1e-4, 'area': 0.51}.get(draws.interpolation,
                                                RGB8_RESIZE_ATOL)
    else:
      atol = 4.0
    # Uniform rounding of +-0.5 averages 0.25, stretched up to about 1.5x
    # by a contrast or saturation factor.
    mean_bound = 0.35 if draws.colour is None else 0.75
    diff = np.abs(pixels - want)
    assert got['image'].shape == (224, 224, 3)
    assert got['label'] == 1
    assert diff.max() <= atol, (i, draws, diff.max())
    assert diff.mean() < mean_bound, (i, draws, diff.mean())
  if settings.random_interpolation:
    assert methods == set(sampling.INTERPOLATIONS)


@pytest.mark.parametrize('crops_per_image', [1, 10, 144])
def test_eval_transform_matches_tensorflow(crops_per_image):
  cfg = config_lib.default_config()
  cfg.update(name='imagenet2012', image_size=224, normalization='caffe')
  transform = transforms.EvalPreprocess.from_config(cfg, crops_per_image)
  assert isinstance(transform.records, preprocess.EncodedImages)
  for seed, hw in enumerate([(375, 500), (500, 333)]):
    record = _encode(_photo(seed, *hw))
    got = transform.map({'image': record, 'label': 2})['image']
    assert got.dtype == np.uint8
    got = normalization.normalize(got, 'caffe')
    want = tf_preprocess.eval_example(record, 224, crops_per_image,
                                      cfg.eval_crop_fraction, 'caffe')
    expected = (224, 224, 3) if crops_per_image == 1 else (
        crops_per_image, 224, 224, 3)
    assert got.shape == want.shape == expected
    # The 144 crops resize twice, each rounding to 8 bits.
    np.testing.assert_allclose(got, want, rtol=0, atol=2.5)
    assert np.abs(got - want).mean() < 0.4


def test_jpeg_header_shape_matches_tensorflow_for_every_kind():
  """Baseline, progressive, optimised, grey, with EXIF and a comment, and
  a truncated file (the header is enough); other bytes are not JPEG."""
  pixels = _photo(4, 61, 47)
  kinds = [dict(), dict(progressive=True), dict(optimize=True, quality=50),
           dict(exif=b'Exif\x00\x00' + b'\x00' * 40, comment=b'hello')]
  encoded = []
  for kind in kinds:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format='JPEG', **kind)
    encoded.append(buffer.getvalue())
  encoded.append(_encode(pixels[..., 0]))
  for e in encoded:
    assert preprocess.jpeg_shape(e) == (61, 47)
    assert tf_preprocess.encoded_shape(e) == (61, 47)
  # TF refuses a truncated file outright; its decoder reports it later.
  assert preprocess.jpeg_shape(encoded[0][:len(encoded[0]) // 2]) == (61, 47)
  assert preprocess.jpeg_shape(b'\xff\xd8\xff\xe0\x00') is None
  assert preprocess.jpeg_shape(_encode(pixels, 'PNG')) is None


def test_flip_left_right_mirrors_any_channels_and_dtype():
  for shape, dtype in [((5, 4, 3), np.uint8), ((5, 4, 1), np.float32),
                       ((3, 2, 6), np.float32)]:
    image = np.arange(np.prod(shape)).reshape(shape).astype(dtype)
    flipped = preprocess.flip_left_right(image)
    np.testing.assert_array_equal(flipped, image[:, ::-1])
    assert flipped.flags.c_contiguous and flipped.dtype == dtype


@pytest.mark.parametrize('mode', ['caffe', 'imagenet', 'none',
                                  'minus_one_one'])
def test_normalize_is_plain_broadcasting_bit_for_bit(mode):
  """The host's arithmetic gives NumPy broadcasting's exact
  floats, from uint8 or float input, views included, input untouched."""
  n = normalization
  floats = np.random.default_rng(0).uniform(0, 255, (9, 7, 3)).astype(
      np.float32)
  formulas = {'caffe': lambda x: x - n.CAFFE_MEAN_RGB,
              'imagenet': lambda x: (x / 255.0 - n.IMAGENET_MEAN)
                                    / n.IMAGENET_STD,
              'none': lambda x: x / 255.0,
              'minus_one_one': lambda x: x / 255.0 * 2.0 - 1.0}
  for image in (floats, floats.astype(np.uint8), floats[:, ::-1],
                np.stack([floats, floats])):
    before = image.copy()
    want = formulas[mode](np.asarray(image, np.float32))
    got = n.normalize(image, mode)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(image, before)


def test_predict_takes_the_evaluation_path(tmp_path):
  """`predict` decodes with PIL and then runs the evaluation's own resize:
  a PNG (decoded alike by both) gives the batched single crop exactly, a
  JPEG within the two decoders' difference."""
  from inception_jax import predict  # pylint: disable=g-import-not-at-top
  prep = predict.Preprocessing(224, 0.875, 'caffe')
  transform = transforms.EvalPreprocess(224, 1, 0.875,
                                        preprocess.EncodedImages())
  pixels = _photo(5, 300, 410)
  # JPEG: PIL's and TF's decoders differ by about a grey level, most along
  # the cropped decode's edge.
  for fmt, atol, mean in (('PNG', 0.0, 0.0), ('JPEG', 8.0, 1.5)):
    encoded = _encode(pixels, fmt)
    path = tmp_path / f'photo.{fmt.lower()}'
    path.write_bytes(encoded)
    got = predict.preprocess(predict.read_image(str(path)), prep)
    want = normalization.normalize(
        transform.map({'image': encoded, 'label': 0})['image'], 'caffe')
    np.testing.assert_allclose(got, want, rtol=0, atol=atol, err_msg=fmt)
    assert np.abs(got - want).mean() <= mean


def test_tfdata_comparison_asks_for_jpeg():
  """``--peer=tfdata`` compares JPEG pipelines only. (The comparison itself
  runs as the README prints it, in tests/test_docs.py, and
  `helpers.assert_tfdata_comparison` checks what it prints.)"""
  wrong = run_python(['-m', 'inception_jax.data.benchmark',
                       '--dataset=fashion_mnist', '--peer=tfdata'])
  assert wrong.returncode == 1
  assert 'error: --peer=tfdata compares JPEG pipelines; add --dataset=jpeg.' \
      in wrong.stderr


def test_process_tree_cpu_counts_a_worker_while_it_runs_and_after():
  """What the input benchmark bills: a child's CPU, read from /proc while it
  runs and from the OS's account once reaped, and none of it twice."""
  # It burns 0.6 s by its own clock; /proc counts in clock ticks, so the
  # wait below stops at 0.5 rather than at the last tick.
  burn = ('import sys, time\n'
          'end = time.process_time() + 0.6\n'
          'while time.process_time() < end: pass\n'
          'sys.stdin.read()\n')
  own0, others0 = benchmark.process_tree_cpu()
  child = subprocess.Popen([sys.executable, '-c', burn],
                           stdin=subprocess.PIPE)
  deadline = time.monotonic() + 60
  while (benchmark.process_tree_cpu()[1] - others0 < 0.5
         and time.monotonic() < deadline):
    time.sleep(0.2)
  live = benchmark.process_tree_cpu()[1] - others0
  assert child.poll() is None  # Counted while alive, not once reaped.
  child.stdin.close()
  child.wait()
  own1, others1 = benchmark.process_tree_cpu()
  assert 0.5 <= live <= others1 - others0 < 1.5
  assert own1 - own0 < 0.4  # The polls' own cost, not the child's.


def test_train_transform_is_a_pure_function_of_the_generator():
  """What exact resume rests on: the same record and generator state give
  the same bytes, whatever ran in between."""
  settings = _settings()
  transform = transforms.TrainPreprocess(settings, preprocess.EncodedImages())
  record = _encode(_photo(8))
  first = [transform.random_map({'image': record, 'label': 0},
                                np.random.default_rng(s))['image']
           for s in range(6)]
  again = [transform.random_map({'image': record, 'label': 0},
                                np.random.default_rng(s))['image']
           for s in reversed(range(6))][::-1]
  for a, b in zip(first, again):
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize('overrides', [
    {},
    {'distort_color': False, 'random_interpolation': False,
     'interpolation': 'bicubic'},
    {'antialias': True},  # Large crops decode at 1/2 scale, one at a time.
    {'crop': 'pad_and_crop'},
])
def test_train_batch_is_the_examples_bit_for_bit(overrides):
  """The pipeline's batch path (one TensorFlow call decodes the batch's
  JPEG boxes) gives each example's `random_map` bytes, PNG records (decoded
  one at a time) mixed in."""
  settings = _settings(**overrides)
  transform = transforms.TrainPreprocess(settings, preprocess.EncodedImages())
  records = [_encode(_photo(s, *hw), fmt) for s, (hw, fmt) in enumerate([
      ((375, 500), 'JPEG'), ((500, 375), 'JPEG'), ((180, 240), 'PNG'),
      ((1000, 1400), 'JPEG'), ((61, 47), 'JPEG')])]
  elements = [{'image': records[i % len(records)], 'label': i}
              for i in range(12)]
  got = transform.batch(elements,
                        [np.random.default_rng(i) for i in range(12)])
  for i, element in enumerate(elements):
    want = transform.random_map(element, np.random.default_rng(i))
    assert got[i].keys() == want.keys()
    for key in want:
      assert got[i][key].dtype == want[key].dtype
      np.testing.assert_array_equal(got[i][key], want[key])
  assert transform.batch([], []) == []


def test_dct_ratio_keeps_the_crop_twice_the_output():
  assert preprocess.dct_ratio((0, 0, 895, 2000), (224, 224), 'bilinear') == 1
  assert preprocess.dct_ratio((0, 0, 896, 896), (224, 224), 'bilinear') == 2
  assert preprocess.dct_ratio((5, 5, 1792, 1800), (224, 224), 'bicubic') == 4
  assert preprocess.dct_ratio((0, 0, 4000, 3600), (224, 224), 'bilinear') == 8
  assert preprocess.dct_ratio((0, 0, 900, 300), (100, 100), 'bilinear') == 1
  for method in ('area', 'nearest'):  # They do not low-pass: full decode.
    assert preprocess.dct_ratio((0, 0, 4000, 4000), (224, 224), method) == 1


@pytest.mark.parametrize('method', ['bilinear', 'bicubic'])
def test_dct_scaled_decode_stays_close_to_the_full_decode(method):
  """A large crop decoded at a DCT-domain scale, then resized, against TF's
  full decode and resize: a few grey levels at most, under one on average,
  and just as sharp (the same spread of pixel values)."""
  encoded = _encode(_photo(11, 1200, 1600))
  for box in [(100, 200, 1000, 1300), (7, 13, 950, 905), (0, 0, 1200, 1600),
              (3, 1, 1197, 1599)]:
    assert preprocess.dct_ratio(box, (224, 224), method) == 2
    got = preprocess.decode_crop_resized(encoded, box, (224, 224), method)
    assert got.dtype == np.uint8 and got.shape == (224, 224, 3)
    want = np.clip(tf_preprocess.resize(
        tf_preprocess.decode_crop(encoded, box), (224, 224), method), 0, 255)
    diff = np.abs(got.astype(np.float32) - want)
    assert diff.max() <= 4.5, (box, diff.max())
    assert diff.mean() < 0.8, (box, diff.mean())
    assert abs(got.std() / want.std() - 1) < 0.01
  # Small crops and the other filters decode in full, as `decode_crop`.
  box = (301, 411, 460, 470)
  np.testing.assert_array_equal(
      preprocess.decode_crop_resized(encoded, box, (224, 224), method),
      preprocess.resample(preprocess.decode_crop(encoded, box), (224, 224),
                          method))
