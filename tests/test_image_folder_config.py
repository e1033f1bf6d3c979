"""configs/image_folder.py: the recipe its images' size picks, when prepared."""

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
  loaded = image_folder.get_config(f'root={root},epochs=2,aux=False')
  # Nothing is picked while the config loads: that needs the images.
  assert loaded.data.crop is None and loaded.model.width is None
  config = datasets.resolve_config(loaded)
  assert 'by_image_size' not in config
  assert config.data.crop == 'random_resized'
  assert config.data.image_size == 32 and config.data.eval_crop_fraction == 1
  assert config.model.width == 0.25 and config.optimizer.polyak_decay == 0.998
  assert config.num_epochs == 2 and config.model.aux is False
  config.data.data_dir = str(tmp_path / 'tfds')
  train.validate_config(config)
  info = datasets.get_dataset_info(config.data)
  assert info.num_classes == 3 and list(info.class_names) == [
      'cat', 'dog', 'owl']


def test_photos_get_the_papers_recipe(tmp_path):
  root = _folder(tmp_path / 'photos', (300, 250), 'JPEG', 'jpg')
  config = datasets.resolve_config(
      image_folder.get_config(f'root={root},size=96'))
  assert config.data.crop == 'inception' and config.data.distort_color
  assert config.data.image_size == 96
  assert config.data.eval_crop_fraction == 0.875
  assert config.model.width == 1.0 and config.batch_size == 64
  train.validate_config(config)


def test_the_picked_recipe_is_the_named_one(tmp_path):
  for name, size, fmt, ext in (('small', (28, 28), 'PNG', 'png'),
                               ('photo', (300, 250), 'JPEG', 'jpg')):
    root = _folder(tmp_path / name, size, fmt, ext)
    picked = datasets.resolve_config(
        image_folder.get_config(f'root={root},norm=lrn'))
    named = image_folder.get_config(f'root={root},norm=lrn,recipe={name}')
    assert picked.to_dict() == named.to_dict(), name
    assert 'by_image_size' not in named


def test_overrides_win_over_the_picked_recipe(tmp_path):
  root = _folder(tmp_path / 'small', (28, 28), 'PNG', 'png')
  config = image_folder.get_config(f'root={root}')
  config.lock()  # as --config loads it
  config.batch_size = 8  # as --config.batch_size=8 would
  config.optimizer.polyak_decay = 0.5
  config = datasets.resolve_config(config)
  assert config.batch_size == 8 and config.optimizer.polyak_decay == 0.5
  assert config.eval_batch_size == 500 and config.model.width == 0.25


def test_a_missing_folder_still_builds_a_config(tmp_path):
  # The one-line layout error comes from the data set, when the run starts;
  # with no image to measure, the photo recipe.
  config = image_folder.get_config(f'root={tmp_path / "nothing"}')
  assert config.data.root.endswith('nothing')
  assert datasets.resolve_config(config).data.crop == 'inception'
