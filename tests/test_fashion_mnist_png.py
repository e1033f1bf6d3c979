"""experiments/fashion_mnist_png.py: Fashion-MNIST as a PNG image folder."""

import os

import numpy as np
from PIL import Image
import pytest

from experiments import fashion_mnist_png
from inception_jax.data import config as data_config
from inception_jax.data import datasets
from inception_jax.data import fashion_mnist

IDX_DIR = '/usr/share/datasets/fashion-mnist'
pytestmark = pytest.mark.skipif(
    not fashion_mnist.idx_files_present(IDX_DIR),
    reason='Debian dataset-fashion-mnist is not installed')


def test_writes_the_idx_pixels_as_a_folder_the_data_set_reads(tmp_path):
  out = str(tmp_path / 'png')
  assert fashion_mnist_png.write_png_folder(out, IDX_DIR, limit=12) == {
      'train': 12, 'test': 12}
  images = fashion_mnist.read_idx(
      os.path.join(IDX_DIR, 't10k-images-idx3-ubyte.gz'))
  labels = fashion_mnist.read_idx(
      os.path.join(IDX_DIR, 't10k-labels-idx1-ubyte.gz'))
  names = [fashion_mnist_png.folder_name(n) for n in fashion_mnist.CLASS_NAMES]
  assert sorted(os.listdir(os.path.join(out, 'test'))) == sorted(names)
  assert 'T-shirt-top' in names
  for i in (0, 7, 11):
    path = os.path.join(out, 'test', names[labels[i]], f'{i:05d}.png')
    with Image.open(path) as image:
      assert image.mode == 'L'
      np.testing.assert_array_equal(np.asarray(image), images[i])
  cfg = data_config.default_config()
  cfg.update(name='image_folder', root=out, data_dir=str(tmp_path / 'tfds'))
  info = datasets.get_dataset_info(cfg)
  assert info.num_train == 12 and info.num_classes == 10
  assert datasets.resolve_splits(cfg) == ('train', 'test')


def test_missing_idx_files_are_one_line(tmp_path):
  with pytest.raises(ValueError, match=r"^no Fashion-MNIST IDX files in .*"
                     r"dataset-fashion-mnist or set --idx_dir\.$"):
    fashion_mnist_png.write_png_folder(str(tmp_path / 'out'),
                                       str(tmp_path))
