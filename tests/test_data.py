"""Input pipelines on real data: Fashion-MNIST, image folders, tiny ImageNet.

Everything prepared goes into directories this test session creates. The
Fashion-MNIST tests need Debian's dataset-fashion-mnist and are skipped
without it.
"""

import collections
import hashlib
import io
import logging
import os
import pickle

import numpy as np
from PIL import Image
import pytest
import tensorflow_datasets as tfds

from inception_jax.data import config as data_config
from inception_jax.data import datasets
from inception_jax.data import fashion_mnist
from inception_jax.data import normalization
from inception_jax.data import pipeline
from inception_jax.data import position
from tests.helpers import tar_bytes

FMNIST_DIR = '/usr/share/datasets/fashion-mnist'
needs_fmnist = pytest.mark.skipif(
    not fashion_mnist.idx_files_present(FMNIST_DIR),
    reason='Debian dataset-fashion-mnist is not installed')


# What configs/fashion_mnist.py sets (the default config is the paper's
# photo recipe).
FMNIST_PREPROCESSING = dict(crop='random_resized', distort_color=False,
                            random_interpolation=False,
                            eval_crop_fraction=1.0)


def _config(**overrides):
  cfg = data_config.default_config()
  cfg.image_size = 16
  for key, value in overrides.items():
    setattr(cfg, key, value)
  return cfg


def _fmnist_config(data_dir, **overrides):
  return _config(name='fashion_mnist', data_dir=data_dir,
                 **{**FMNIST_PREPROCESSING, **overrides})


def _digest(image):
  return hashlib.sha1(np.ascontiguousarray(image).tobytes()).hexdigest()


def _jpeg(rng, height, width, fmt='JPEG'):
  pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
  buffer = io.BytesIO()
  Image.fromarray(pixels).save(buffer, format=fmt)
  return buffer.getvalue()


@pytest.fixture(scope='session')
def fmnist_cfg(tiny_run):
  """Fashion-MNIST where the README's training command prepares it (TFDS's
  default folder): the session's tiny run has prepared it once, for every
  test process."""
  del tiny_run
  if not fashion_mnist.idx_files_present(FMNIST_DIR):
    pytest.skip('Debian dataset-fashion-mnist is not installed')
  cfg = _fmnist_config(None)
  datasets.get_dataset_info(cfg)
  return cfg


def _write_folder(root, counts, rng, extra=None):
  """Writes root/<split>/<label>/<i>.jpg for counts[split][label] images."""
  for split, labels in counts.items():
    for label, n in labels.items():
      os.makedirs(os.path.join(root, split, label), exist_ok=True)
      for i in range(n):
        fmt = 'PNG' if i % 3 == 2 else 'JPEG'  # Some PNGs among the JPEGs.
        path = os.path.join(root, split, label,
                            f'{i}.{"png" if fmt == "PNG" else "jpg"}')
        with open(path, 'wb') as f:
          f.write(_jpeg(rng, 30 + i, 40, fmt))
  for path, content in (extra or {}).items():
    with open(os.path.join(root, path), 'wb') as f:
      f.write(content)


@pytest.fixture(scope='session')
def folder_cfg(tmp_path_factory):
  """A 3-class folder: 13 training images (odd), 7 validation images."""
  root = str(tmp_path_factory.mktemp('folder'))
  _write_folder(root, {'train': {'cat': 5, 'dog': 4, 'owl': 4},
                       'val': {'cat': 3, 'dog': 2, 'owl': 2}},
                np.random.default_rng(0))
  return _config(name='image_folder', root=root, image_size=16,
                 data_dir=str(tmp_path_factory.mktemp('tfds_folder')))


# --- Fashion-MNIST ------------------------------------------------------------


@needs_fmnist
def test_fashion_mnist_splits_and_a_known_label(fmnist_cfg):
  info = datasets.get_dataset_info(fmnist_cfg)
  assert info.num_train == 60000
  assert datasets.resolve_splits(fmnist_cfg) == ('train', 'test')
  assert len(datasets.data_source(fmnist_cfg, 'test')) == 10000
  assert info.num_classes == 10
  assert info.class_names[0] == 'T-shirt/top'
  assert info.class_names[9] == 'Ankle boot'
  # The first test image of the original files, found in the prepared
  # (shuffled) split, keeps its label.
  images = fashion_mnist.read_idx(
      os.path.join(FMNIST_DIR, 't10k-images-idx3-ubyte.gz'))
  labels = fashion_mnist.read_idx(
      os.path.join(FMNIST_DIR, 't10k-labels-idx1-ubyte.gz'))
  assert images.shape == (10000, 28, 28) and labels[0] == 9
  builder = fashion_mnist.FashionMnistDebian(
      data_dir=fmnist_cfg.data_dir, file_format='array_record')
  source = builder.as_data_source('test')
  found = [r['label'] for r in source
           if np.array_equal(r['image'][..., 0], images[0])]
  assert found == [labels[0]]


@needs_fmnist
def test_train_batches_shape_and_range(fmnist_cfg):
  it = pipeline.create_train_iterator(fmnist_cfg, global_batch_size=8, seed=0,
                                      process_index=0, process_count=2)
  batch = next(it)
  assert batch['image'].shape == (4, 16, 16, 3)
  # Pixels leave the host as 8 bits; the step normalises them.
  assert batch['image'].dtype == np.uint8
  assert batch['label'].shape == (4,) and batch['label'].dtype == np.int32
  # Grey replicated to 3 channels, ImageNet-normalised.
  np.testing.assert_array_equal(batch['image'][..., 0],
                                batch['image'][..., 2])
  image = normalization.normalize(batch['image'], fmnist_cfg.normalization)
  np.testing.assert_allclose(image[..., 0] * 0.229 + 0.485,
                             image[..., 1] * 0.224 + 0.456, atol=1e-5)
  assert -2.2 < image.min() and image.max() < 2.7


@needs_fmnist
def test_resumed_iteration_equals_uninterrupted(fmnist_cfg):
  kwargs = dict(global_batch_size=4, seed=7, process_index=1,
                process_count=2)
  it = pipeline.create_train_iterator(fmnist_cfg, **kwargs)
  for _ in range(3):
    next(it)
  state = it.get_state()
  expected = [next(it) for _ in range(3)]
  resumed = pipeline.create_train_iterator(fmnist_cfg, **kwargs)
  resumed.set_state(state)
  for want in expected:
    got = next(resumed)
    np.testing.assert_array_equal(got['image'], want['image'])
    np.testing.assert_array_equal(got['label'], want['label'])
  # The state is an input position, as text or as bytes (grain's own
  # iterators' kind); another iterator's state is refused in one line.
  assert position.input_position(state.encode())['examples'] == 3 * 4
  with pytest.raises(ValueError, match='not an input position'):
    resumed.set_state('{"version": 2, "last_seen_indices": {"0": 95}}')
  # A different seed gives a different order.
  other = pipeline.create_train_iterator(fmnist_cfg, **{**kwargs, 'seed': 8})
  assert not np.array_equal(next(other)['image'],
                            next(pipeline.create_train_iterator(
                                fmnist_cfg, **kwargs))['image'])


@needs_fmnist
def test_two_processes_share_one_global_order(fmnist_cfg):
  # Without random augmentation each record maps to one image, so the
  # image bytes identify the record; antialiased, the training resize is
  # evaluation's.
  cfg = _fmnist_config(fmnist_cfg.data_dir, crop='resize', flip=False,
                       antialias=True)
  split, n = 'test[:101]', 101
  seen = []
  for process in (0, 1):
    it = pipeline.create_train_iterator(cfg, global_batch_size=2, seed=3,
                                        split=split, process_index=process,
                                        process_count=2)
    seen.append([_digest(next(it)['image'][0]) for _ in range(n)])
  # Step s's global batch is process 0's example then process 1's.
  stream = [d for pair in zip(*seen) for d in pair]
  # Each epoch has every record of the split once, across both processes;
  # the next epoch is another order of the same records.
  everything = [_digest(b['image'][i])
                for b in pipeline.create_eval_iterator(
                    _fmnist_config(fmnist_cfg.data_dir),
                    global_batch_size=101, split=split,
                    process_index=0, process_count=1)
                for i in range(len(b['label']))]
  assert collections.Counter(stream[:n]) == collections.Counter(everything)
  assert collections.Counter(stream[n:]) == collections.Counter(everything)
  assert stream[n:] != stream[:n]
  # One process reads the same global order.
  one = pipeline.create_train_iterator(cfg, global_batch_size=2, seed=3,
                                       split=split, process_index=0,
                                       process_count=1)
  assert [_digest(image) for _ in range(5)
          for image in next(one)['image']] == stream[:10]


@needs_fmnist
def test_eval_counts_every_example_once_on_8_processes(fmnist_cfg):
  split, n = 'test[:999]', 999
  single = collections.Counter()
  for batch in pipeline.create_eval_iterator(fmnist_cfg, global_batch_size=64,
                                             split=split, process_index=0,
                                             process_count=1):
    for image, keep in zip(batch['image'], batch['mask']):
      if keep:
        single[_digest(image)] += 1
  assert sum(single.values()) == n
  sharded, lengths = collections.Counter(), []
  for process in range(8):
    it = pipeline.create_eval_iterator(fmnist_cfg, global_batch_size=16,
                                       split=split, process_index=process,
                                       process_count=8)
    batches = list(it)
    lengths.append(len(batches))
    assert len(batches) == len(it) == 63  # ceil(ceil(999 / 8) / 2).
    for batch in batches:
      assert batch['image'].shape == (2, 16, 16, 3)
      assert batch['mask'].dtype == np.bool_
      for image, keep in zip(batch['image'], batch['mask']):
        if keep:
          sharded[_digest(image)] += 1
  assert sum(sharded.values()) == n
  assert sharded == single


@needs_fmnist
def test_eval_multi_crop_shapes(fmnist_cfg):
  for crops in (10, 144):
    batch = next(pipeline.create_eval_iterator(
        fmnist_cfg, global_batch_size=2, crops=crops, process_index=0,
        process_count=1))
    assert batch['image'].shape == (2, crops, 16, 16, 3)
    # The second half of the crops mirrors the first half.
    half = crops // 2
    np.testing.assert_allclose(batch['image'][:, half:],
                               batch['image'][:, :half, :, ::-1])


# --- Image folders ------------------------------------------------------------


def test_image_folder_train_and_eval(folder_cfg):
  info = datasets.get_dataset_info(folder_cfg)
  assert info.class_names == ['cat', 'dog', 'owl']
  assert datasets.resolve_splits(folder_cfg) == ('train', 'val')
  assert info.num_train == 13
  assert len(datasets.data_source(folder_cfg, 'val')) == 7
  it = pipeline.create_train_iterator(folder_cfg, global_batch_size=4, seed=0,
                                      process_index=0, process_count=1)
  next(it)
  state = it.get_state()
  want = next(it)
  resumed = pipeline.create_train_iterator(folder_cfg, global_batch_size=4,
                                           seed=0, process_index=0,
                                           process_count=1)
  resumed.set_state(state)
  np.testing.assert_array_equal(next(resumed)['image'], want['image'])
  assert want['image'].shape == (4, 16, 16, 3)
  labels, count = [], 0
  for process in range(2):
    for batch in pipeline.create_eval_iterator(
        folder_cfg, global_batch_size=4, crops=10, process_index=process,
        process_count=2):
      assert batch['image'].shape == (2, 10, 16, 16, 3)
      labels += list(batch['label'][batch['mask']])
      count += 1
  assert sorted(labels) == [0, 0, 0, 1, 1, 2, 2] and count == 4


def test_data_sources_pickle_for_worker_processes(folder_cfg, fmnist_cfg):
  # grain's workers unpickle the data source, builder included.
  for cfg in (folder_cfg, fmnist_cfg):
    source = datasets.data_source(cfg, 'train')
    copy = pickle.loads(pickle.dumps(source))
    assert len(copy) == len(source)
    assert copy[3]['label'] == source[3]['label']


def test_image_folder_skips_and_counts_corrupt_files(tmp_path, caplog):
  root = str(tmp_path / 'folder')
  rng = np.random.default_rng(1)
  good_jpeg = _jpeg(rng, 20, 20)
  _write_folder(root, {'train': {'a': 2, 'b': 2}, 'test': {'a': 1, 'b': 1}},
                rng, extra={
                    'train/a/random_bytes.jpg': b'not an image at all',
                    'train/b/truncated.jpg': good_jpeg[:len(good_jpeg) // 3],
                    'train/b/notes.txt': b'hello',
                })
  cfg = _config(name='image_folder', root=root,
                data_dir=str(tmp_path / 'tfds'))
  with caplog.at_level(logging.INFO):
    info = datasets.get_dataset_info(cfg)
  assert info.num_train == 4
  assert len(datasets.data_source(cfg, datasets.resolve_splits(cfg)[1])) == 2
  assert 'random_bytes.jpg' in caplog.text and 'notes.txt' in caplog.text
  assert 'truncated.jpg' in caplog.text
  assert '3 of 9 files skipped' in caplog.text
  # Every record that made it in decodes in the pipeline.
  batches = list(pipeline.create_eval_iterator(cfg, global_batch_size=4,
                                               split='train', process_index=0,
                                               process_count=1))
  assert sum(b['mask'].sum() for b in batches) == 4
  cfg.on_corrupt = 'error'
  cfg.data_dir = str(tmp_path / 'tfds_error')
  with pytest.raises(ValueError, match='3 of 9 files skipped'):
    datasets.get_dataset_info(cfg)


def test_image_folder_layout_errors(tmp_path):
  cfg = _config(name='image_folder', data_dir=str(tmp_path / 'tfds'))
  cfg.root = str(tmp_path / 'missing')
  with pytest.raises(ValueError, match='no such directory.*<split>/<label>'):
    datasets.get_dataset_info(cfg)
  empty = tmp_path / 'empty'
  empty.mkdir()
  cfg.root = str(empty)
  with pytest.raises(ValueError, match='no split folders'):
    datasets.get_dataset_info(cfg)
  (empty / 'train').mkdir()
  (empty / 'train' / 'x.jpg').write_bytes(b'')
  with pytest.raises(ValueError, match='train: no label folders'):
    datasets.get_dataset_info(cfg)
  (empty / 'train' / 'cat').mkdir()
  with pytest.raises(ValueError, match='no image files'):
    datasets.get_dataset_info(cfg)
  for error in (ValueError,):
    try:
      datasets.get_dataset_info(cfg)
    except error as e:
      assert '\n' not in str(e)


# --- ImageNet 2012 ------------------------------------------------------------


def test_imagenet2012_from_tiny_archives(tmp_path):
  rng = np.random.default_rng(2)
  manual = tmp_path / 'manual'
  manual.mkdir()
  wnids = ['n01440764', 'n01443537']
  (manual / 'ILSVRC2012_img_train.tar').write_bytes(tar_bytes({
      f'{wnid}.tar': tar_bytes({
          f'{wnid}_{i}.JPEG': _jpeg(rng, 40, 50 + 10 * i) for i in range(2)})
      for wnid in wnids}))
  (manual / 'ILSVRC2012_img_val.tar').write_bytes(tar_bytes({
      f'ILSVRC2012_val_{i:08d}.JPEG': _jpeg(rng, 45, 35) for i in (1, 2, 3)}))
  cfg = _config(name='imagenet2012', data_dir=str(tmp_path / 'tfds'),
                manual_dir=str(manual))
  info = datasets.get_dataset_info(cfg)
  assert info.num_classes == 1000 and len(info.class_names) == 1000
  assert datasets.resolve_splits(cfg) == ('train', 'validation')
  assert info.num_train == 4
  assert len(datasets.data_source(cfg, 'validation')) == 3
  # Validation labels come from TFDS's list, in file name order.
  with open(tfds.core.tfds_path(
      'datasets/imagenet2012/validation_labels.txt')) as f:
    val_wnids = f.read().split()[:3]
  want = sorted(info.class_names.index(w) for w in val_wnids)
  batches = list(pipeline.create_eval_iterator(
      cfg, global_batch_size=2, process_index=0, process_count=1))
  assert len(batches) == 2
  got = sorted(int(l) for b in batches for l, m in zip(b['label'], b['mask'])
               if m)
  assert got == want
  train = next(pipeline.create_train_iterator(cfg, global_batch_size=4, seed=0,
                                              process_index=0, process_count=1))
  assert sorted(train['label']) == sorted(
      [info.class_names.index(w) for w in wnids] * 2)
  assert train['image'].shape == (4, 16, 16, 3)


def test_imagenet2012_missing_archives_message(tmp_path):
  cfg = _config(name='imagenet2012', data_dir=str(tmp_path / 'tfds'),
                manual_dir=str(tmp_path / 'manual'))
  with pytest.raises(ValueError) as error:
    datasets.get_dataset_info(cfg)
  message = str(error.value)
  assert '\n' not in message
  assert 'ILSVRC2012_img_train.tar' in message
  assert 'ILSVRC2012_img_val.tar' in message
  assert str(tmp_path / 'manual') in message


# --- Configuration ------------------------------------------------------------


def test_default_config_locks_and_overrides():
  cfg = data_config.default_config()
  cfg.lock()
  cfg.data_dir = '/tmp/x'
  cfg.root = '/tmp/y'
  cfg.min_area = 0.5
  with pytest.raises(AttributeError):
    cfg.no_such_key = 1
  assert cfg.crop == 'inception' and cfg.min_area == 0.5
  assert cfg.max_aspect == pytest.approx(4 / 3)
  with pytest.raises(ValueError, match='Unknown data.name'):
    datasets.get_dataset_info(_config(name='cifar'))


def test_read_options_are_checked(fmnist_cfg):
  cfg = _fmnist_config(fmnist_cfg.data_dir, read_threads=0)
  with pytest.raises(ValueError, match=r'data.read_threads \(0\).*>= 1'):
    pipeline.create_train_iterator(cfg, global_batch_size=4, seed=0,
                                   process_index=0, process_count=1)


@needs_fmnist
def test_pipeline_benchmark_times_the_bundled_fashion_mnist_pipeline(
    fmnist_cfg):
  from inception_jax.data import benchmark  # pylint: disable=g-import-not-at-top
  cfg = benchmark.benchmark_config('fashion_mnist', 16, 0)
  cfg.data_dir = fmnist_cfg.data_dir
  assert cfg.to_dict() == fmnist_cfg.to_dict()
  result = benchmark.run(cfg, batch_size=4, num_batches=2)
  assert result['images'] == 8 and result['images_per_s'] > 0
