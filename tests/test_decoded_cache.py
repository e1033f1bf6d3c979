"""An image folder's decoded cache: same batches, used only when it fits."""

import os
import pickle

import numpy as np
from PIL import Image
import pytest

from inception_jax.data import config as data_config
from inception_jax.data import datasets
from inception_jax.data import decoded_cache
from inception_jax.data import pipeline
from inception_jax.data import preprocess

# The cached and the encoded path decode with the same decoder and resize
# with the same 8-bit resampler (grey stored as one channel, RGB after the
# resize), so they agree to float rounding; the bound leaves room for that.
ATOL = 5e-5


def _write_folder(root, rng):
  """train: 24 images, val: 6; grey and colour PNGs, a few JPEGs, two
  sizes (so crops and pads are exercised on both shapes)."""
  for split, count in (('train', 24), ('val', 6)):
    for i in range(count):
      label = ('shirt', 'shoe', 'bag')[i % 3]
      folder = os.path.join(root, split, label)
      os.makedirs(folder, exist_ok=True)
      side = 28 if i % 4 else 12
      if i % 2:  # Grey, as Fashion-MNIST's.
        image = Image.fromarray(rng.integers(0, 256, (side, side), np.uint8))
      else:
        image = Image.fromarray(
            rng.integers(0, 256, (side, side + 3, 3), np.uint8))
      if i % 6 == 4:
        # Full-resolution chroma: the encoded path's fused decode-and-crop
        # then equals the whole decode sliced (see decoded_cache).
        image.save(os.path.join(folder, f'{i}.jpg'), format='JPEG',
                   subsampling=0)
      else:
        image.save(os.path.join(folder, f'{i}.png'), format='PNG')


@pytest.fixture(scope='module')
def root(tmp_path_factory):
  path = str(tmp_path_factory.mktemp('small_folder'))
  _write_folder(path, np.random.default_rng(0))
  return path


def _config(root, data_dir, mode, **overrides):
  cfg = data_config.default_config()
  cfg.update(name='image_folder', root=root, data_dir=str(data_dir),
             image_size=16, cache_decoded=mode, **overrides)
  return cfg


def _train_batches(cfg, count, state=None):
  it = pipeline.create_train_iterator(cfg, global_batch_size=6, seed=3,
                                      process_index=0, process_count=1)
  if state is not None:
    it.set_state(state)
  return [next(it) for _ in range(count)], it.get_state()


def _cache_files(data_dir):
  return sorted(name for _, _, names in os.walk(data_dir) for name in names
                if name.startswith('decoded_v1_'))


@pytest.mark.parametrize('recipe', [
    # The light crop of configs/image_folder.py's small images.
    dict(crop='random_resized', distort_color=False,
         random_interpolation=False),
    # The paper's photo recipe, and a pad-and-crop.
    dict(crop='inception'),
    dict(crop='pad_and_crop', random_interpolation=False),
])
def test_cached_batches_equal_the_decoded_bytes(root, tmp_path, recipe):
  encoded = _config(root, tmp_path / 'enc', 'never', **recipe)
  cached = _config(root, tmp_path / 'dec', 'auto', **recipe)
  assert datasets.record_format(encoded) == preprocess.EncodedImages()
  assert isinstance(datasets.record_format(cached),
                    decoded_cache.CachedImages)
  # 5 batches of 6: past the end of the 24-image epoch.
  want, _ = _train_batches(encoded, 5)
  got, _ = _train_batches(cached, 5)
  for w, g in zip(want, got):
    np.testing.assert_array_equal(g['label'], w['label'])
    np.testing.assert_allclose(g['image'], w['image'], rtol=0, atol=ATOL)
  assert _cache_files(tmp_path / 'dec') == [
      'decoded_v1_train.index.npy', 'decoded_v1_train.pixels']
  assert _cache_files(tmp_path / 'enc') == []


def test_cached_iterator_resumes_exactly_and_evaluates_alike(root, tmp_path):
  cached = _config(root, tmp_path / 'dec', 'always')
  (first, second), _ = _train_batches(cached, 2)
  _, state = _train_batches(cached, 1)
  (resumed,), _ = _train_batches(cached, 1, state)
  np.testing.assert_array_equal(resumed['image'], second['image'])
  encoded = _config(root, tmp_path / 'enc', 'never')
  for crops in (1, 10):
    for want, got in zip(
        pipeline.create_eval_iterator(encoded, global_batch_size=4,
                                      crops=crops, process_index=0,
                                      process_count=1),
        pipeline.create_eval_iterator(cached, global_batch_size=4,
                                      crops=crops, process_index=0,
                                      process_count=1)):
      np.testing.assert_array_equal(got['mask'], want['mask'])
      np.testing.assert_array_equal(got['label'], want['label'])
      np.testing.assert_allclose(got['image'], want['image'], rtol=0,
                                 atol=ATOL)
  del first


def test_cached_records_are_the_decoded_records(root, tmp_path):
  cfg = _config(root, tmp_path / 'dec', 'always')
  builder = datasets.prepare_builder(cfg)
  split = 'train[3:11]+val[:2]'
  source = datasets.data_source(cfg, split)
  raw = builder.as_data_source(split, decoders={
      'image': decoded_cache.tfds.decode.SkipDecoding()})
  assert len(source) == len(raw) == 10
  grey = 0
  for i in range(len(raw)):
    want = np.asarray(preprocess.decode(raw[i]['image']))
    got = source[i]['image']
    assert got.dtype == np.uint8 and got.shape[:2] == want.shape[:2]
    grey += got.shape[-1] == 1
    np.testing.assert_array_equal(preprocess.to_rgb(got), want)
    assert source[i]['label'] == raw[i]['label']
  assert grey  # Grey images keep one channel.
  # grain's worker processes get paths, and map the files themselves.
  copy = pickle.loads(pickle.dumps(source))
  assert len(pickle.dumps(source)) < 4096
  np.testing.assert_array_equal(copy[5]['image'], source[5]['image'])


def test_over_budget_folders_decode_per_step(root, tmp_path, monkeypatch):
  # 30 images of at most 28x31 RGB: about 50 KB decoded.
  monkeypatch.setattr(decoded_cache, 'AUTO_MAX_BYTES', 20_000)
  cfg = _config(root, tmp_path / 'small_budget', 'auto')
  assert datasets.record_format(cfg) == preprocess.EncodedImages()
  _train_batches(cfg, 1)
  assert _cache_files(tmp_path / 'small_budget') == []
  monkeypatch.setattr(decoded_cache, 'AUTO_MAX_BYTES', 200_000)
  cfg = _config(root, tmp_path / 'large_budget', 'auto')
  assert isinstance(datasets.record_format(cfg), decoded_cache.CachedImages)


def test_a_bad_mode_is_one_line(root, tmp_path):
  cfg = _config(root, tmp_path / 'x', 'yes')
  with pytest.raises(ValueError, match=r'^data.cache_decoded must be one of '
                     r'auto, always, never, got .yes.\.$'):
    datasets.data_source(cfg, 'train')


def test_bad_folders_keep_their_errors(tmp_path):
  empty = tmp_path / 'empty'
  empty.mkdir()
  cfg = _config(str(empty), tmp_path / 'tfds', 'always')
  with pytest.raises(ValueError, match='no split folders'):
    datasets.get_dataset_info(cfg)
  with pytest.raises(ValueError, match='no split folders'):
    pipeline.create_train_iterator(cfg, global_batch_size=2, seed=0,
                                   process_index=0, process_count=1)


def test_pipeline_benchmark_times_a_folder_both_ways(root, tmp_path):
  from inception_jax.data import benchmark  # pylint: disable=g-import-not-at-top
  for mode, cached in (('auto', True), ('never', False)):
    cfg = benchmark.benchmark_config('image_folder', 16, 0, root, mode)
    cfg.data_dir = str(tmp_path / mode)
    # configs/image_folder.py's preprocessing for small images.
    assert (cfg.crop, cfg.distort_color) == ('random_resized', False)
    assert datasets.uses_decoded_cache(cfg) is cached
    result = benchmark.run(cfg, batch_size=4, num_batches=2)
    assert result['images'] == 8 and result['images_per_s'] > 0
  with pytest.raises(ValueError, match='needs --root'):
    benchmark.benchmark_config('image_folder', 16, 0)


def test_an_interrupted_build_is_rebuilt(root, tmp_path):
  cfg = _config(root, tmp_path / 'dec', 'always')
  builder = datasets.prepare_builder(cfg)
  pixels_path, index_path = decoded_cache.cache_files(builder, 'val')
  # Killed after the pixels were renamed, before the index was: no index,
  # so the cache is not complete and is built again.
  with open(pixels_path, 'wb') as f:
    f.write(b'\0' * 7)
  with open(pixels_path + '.tmp1', 'wb') as f:
    f.write(b'partial')
  source = datasets.data_source(cfg, 'val')
  assert os.path.exists(index_path)
  assert os.path.getsize(pixels_path) > 7
  raw = builder.as_data_source('val', decoders={
      'image': decoded_cache.tfds.decode.SkipDecoding()})
  np.testing.assert_array_equal(
      preprocess.to_rgb(source[0]['image']),
      np.asarray(preprocess.decode(raw[0]['image'])))


def test_worker_processes_read_the_cache(root, tmp_path):
  # grain's workers unpickle the source and map the cache files themselves.
  want, _ = _train_batches(_config(root, tmp_path / 'enc', 'never',
                                   worker_count=1), 2)
  got, _ = _train_batches(_config(root, tmp_path / 'dec', 'always',
                                  worker_count=1), 2)
  for w, g in zip(want, got):
    np.testing.assert_array_equal(g['label'], w['label'])
    np.testing.assert_allclose(g['image'], w['image'], rtol=0, atol=ATOL)
