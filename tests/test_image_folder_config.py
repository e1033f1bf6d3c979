"""configs/image_folder.py: the recipe its images' size picks, when prepared,
and the schedule its number of images sets, when the run starts."""

import numpy as np
from PIL import Image
import pytest

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


def test_a_short_schedule_is_raised_to_the_minimum_and_bounded():
  # 1,500 images at batch 128: 11 steps an epoch, 10 epochs 110 steps.
  short = train.schedule(1500, 128, num_epochs=10, min_steps=1000,
                         max_steps=8000)
  assert (short.steps, short.steps_per_epoch) == (1000, 11)
  assert short.epochs == pytest.approx(90.909, abs=1e-3)
  assert short.line == (
      'schedule: 1,000 steps = 90.91 epochs of 11 steps (1,500 images, '
      'batch 128): min_steps=1000, since num_epochs=10 gives 110; '
      '--config.min_steps=0 trains num_epochs alone')
  # Enough images: the epochs alone, and the line says nothing more.
  full = train.schedule(60000, 128, num_epochs=10, min_steps=1000,
                        max_steps=8000)
  assert (full.steps, full.epochs) == (4680, 10)
  assert full.line == ('schedule: 4,680 steps = 10 epochs of 468 steps '
                       '(60,000 images, batch 128)')
  # Too many: the bound, which also wins over the minimum.
  many = train.schedule(200000, 128, num_epochs=10, min_steps=1000,
                        max_steps=8000)
  assert many.steps == 8000 and 'max_steps=8000' in many.line
  assert train.schedule(1500, 128, num_epochs=10, min_steps=1000,
                        max_steps=500).steps == 500
  # Fewer images than a batch: an epoch is one step.
  tiny = train.schedule(50, 128, num_epochs=10, min_steps=1000)
  assert (tiny.steps, tiny.epochs) == (1000, 1000)
  # No bounds, or total_steps: as before.
  assert train.schedule(1500, 128, num_epochs=10).steps == 110
  fixed = train.schedule(1500, 128, num_epochs=10, total_steps=6,
                         min_steps=1000)
  assert fixed.line == 'schedule: 6 steps (total_steps)'


def test_the_config_holds_the_rule_and_the_data_picks_it(tmp_path):
  small = datasets.resolve_config(image_folder.get_config(
      f'root={_folder(tmp_path / "small", (28, 28), "PNG", "png")}'))
  assert (small.min_steps, small.max_steps) == (
      image_folder.SMALL_MIN_STEPS, image_folder.SMALL_MAX_STEPS)
  photo = datasets.resolve_config(image_folder.get_config(
      f'root={_folder(tmp_path / "photo", (300, 250), "JPEG", "jpg")}'))
  assert (photo.min_steps, photo.max_steps) == (image_folder.PHOTO_MIN_STEPS,
                                                0)
  for recipe in ('small', 'photo'):
    assert image_folder.get_config(
        f'root=/x,recipe={recipe},min_steps=0').min_steps == 0
  negative = image_folder.get_config('root=/x,recipe=small,min_steps=-1')
  with pytest.raises(ValueError, match='min_steps must be >= 0'):
    train.validate_config(negative)


def test_init_from_fine_tunes_torchvision_weights_with_the_photo_recipe():
  config = image_folder.get_config('root=/x,init_from=runs/tv_googlenet')
  assert 'by_image_size' not in config  # photos' recipe, whatever the size
  assert config.init_from == 'runs/tv_googlenet'
  assert config.model.variant == 'torchvision'
  assert config.model.norm == 'batchnorm' and config.model.width == 1
  assert config.data.normalization == 'imagenet'
  assert config.data.image_size == 224 and config.batch_size == 64
  assert config.min_steps == image_folder.PHOTO_MIN_STEPS
  assert config.optimizer.lr * 64 / config.optimizer.reference_batch_size == (
      pytest.approx(0.002))
  assert image_folder.get_config(
      'root=/x,init_from=runs/b,variant=paper,norm=lrn').model.variant == (
          'paper')
  assert image_folder.get_config('root=/x').model.variant == 'paper'
  with pytest.raises(ValueError, match='drop recipe=small'):
    image_folder.get_config('root=/x,init_from=runs/b,recipe=small')


def test_the_start_up_line_says_how_many_steps_and_why(tmp_path, capsys):
  root = _folder(tmp_path / 'small', (28, 28), 'PNG', 'png')
  config = image_folder.get_config(f'root={root},runlocal,min_steps=5')
  config.total_steps = 0  # :runlocal's 6 steps would win over the rule
  config.num_epochs = 1.0
  config.data.data_dir = str(tmp_path / 'tfds')
  config.checkpoint_every_steps = 0
  summary = train.train_and_evaluate(config, str(tmp_path / 'run'))
  assert summary['step'] == 5
  assert ('schedule: 5 steps = 5 epochs of 1 steps (6 images, batch 16): '
          'min_steps=5, since num_epochs=1 gives 1;') in capsys.readouterr().out
