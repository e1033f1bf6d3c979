"""configs/image_folder.py: defaults chosen by the images' size."""

import numpy as np
from PIL import Image

from configs import image_folder
from inception_jax import train
from inception_jax.data import datasets


def _folder(root, size, fmt, ext):
  rng = np.random.default_rng(0)
  for split in ('train', 'val'):
    for label in ('cat', 'dog', 'owl'):
      folder = root / split / label
      folder.mkdir(parents=True)
      for i in range(2):
        Image.fromarray(rng.integers(0, 256, size + (3,), np.uint8)).save(
            folder / f'{i}.{ext}', format=fmt)
  return root


def test_small_pngs_get_the_light_recipe(tmp_path):
  root = _folder(tmp_path / 'small', (28, 28), 'PNG', 'png')
  config = image_folder.get_config(f'root={root},epochs=2,aux=False')
  assert config.data.crop == 'random_resized'
  assert config.data.image_size == 32 and config.data.eval_crop_fraction == 1
  assert config.num_epochs == 2 and config.model.aux is False
  config.data.data_dir = str(tmp_path / 'tfds')
  train.validate_config(config)
  info = datasets.get_dataset_info(config.data)
  assert info.num_classes == 3 and list(info.class_names) == [
      'cat', 'dog', 'owl']


def test_photos_get_the_papers_recipe(tmp_path):
  root = _folder(tmp_path / 'photos', (300, 250), 'JPEG', 'jpg')
  config = image_folder.get_config(f'root={root},size=96')
  assert config.data.crop == 'inception' and config.data.distort_color
  assert config.data.image_size == 96
  assert config.data.eval_crop_fraction == 0.875
  train.validate_config(config)


def test_a_missing_folder_still_builds_a_config(tmp_path):
  # The one-line layout error comes from the data set, when the run starts.
  config = image_folder.get_config(f'root={tmp_path / "nothing"}')
  assert config.data.root.endswith('nothing')
