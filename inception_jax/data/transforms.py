"""grain transforms that turn one stored record into one model input.

Two kinds of records come out of the data sources: encoded image bytes
(``imagenet2012``, ``image_folder``: JPEG, sometimes PNG) and decoded uint8
arrays (``fashion_mnist``: 28x28x1). The settings are copied out of the
ConfigDict into frozen dataclasses so the transforms pickle cleanly into
grain's worker processes.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Dict

import grain.python as grain
import numpy as np
import tensorflow as tf

from inception_jax.data import config as config_lib
from inception_jax.data import crops
from inception_jax.data.normalization import normalize
from inception_jax.data import preprocess

ENCODED = 'encoded'
ARRAY = 'array'


@dataclasses.dataclass(frozen=True)
class TrainSettings:
  """The training switches for one data set, resolved from the config."""
  image_size: int
  crop: str
  min_area: float
  max_area: float
  min_aspect: float
  max_aspect: float
  crop_attempts: int
  pad_fraction: float
  flip: bool
  distort_color: bool
  brightness: float
  contrast: float
  saturation: float
  hue: float
  lighting: float
  random_interpolation: bool
  normalization: str

  @classmethod
  def from_config(cls, data_cfg, record_kind: str) -> 'TrainSettings':
    grey = record_kind == ARRAY
    crop = data_cfg.fashion_mnist_crop if grey else data_cfg.crop
    if crop not in config_lib.CROPS:
      raise ValueError(f'Unknown crop {crop!r}; expected one of '
                       f'{", ".join(config_lib.CROPS)}.')
    if not 0 < data_cfg.min_area <= data_cfg.max_area <= 1:
      raise ValueError('data.min_area and data.max_area must satisfy '
                       '0 < min_area <= max_area <= 1.')
    min_area = (data_cfg.random_resized_min_area if crop == 'random_resized'
                else data_cfg.min_area)
    return cls(
        image_size=data_cfg.image_size, crop=crop, min_area=min_area,
        max_area=data_cfg.max_area, min_aspect=data_cfg.min_aspect,
        max_aspect=data_cfg.max_aspect, crop_attempts=data_cfg.crop_attempts,
        pad_fraction=data_cfg.pad_fraction,
        flip=data_cfg.fashion_mnist_flip if grey else data_cfg.flip,
        # Colour distortions and random interpolation are the paper's
        # ImageNet recipe; the grey 28x28 images get neither.
        distort_color=data_cfg.distort_color and not grey,
        brightness=data_cfg.brightness, contrast=data_cfg.contrast,
        saturation=data_cfg.saturation, hue=data_cfg.hue,
        lighting=data_cfg.lighting,
        random_interpolation=data_cfg.random_interpolation and not grey,
        normalization=data_cfg.normalization)

  def sample_box(self, rng: np.random.Generator, height: int,
                 width: int) -> crops.Box:
    if self.crop in ('inception', 'random_resized'):
      return crops.sample_inception_crop(
          rng, height, width, min_area=self.min_area, max_area=self.max_area,
          min_aspect=self.min_aspect, max_aspect=self.max_aspect,
          attempts=self.crop_attempts)
    return (0, 0, height, width)


@dataclasses.dataclass(frozen=True)
class TrainPreprocess(grain.RandomMapTransform):
  """Random crop, resize, flip, colour distortion and normalisation."""
  settings: TrainSettings
  record_kind: str

  def random_map(self, element: Dict[str, Any],
                 rng: np.random.Generator) -> Dict[str, np.ndarray]:
    s = self.settings
    size = (s.image_size, s.image_size)
    image = element['image']
    if self.record_kind == ENCODED:
      height, width = preprocess.encoded_shape(image)
      image = preprocess.decode_crop(image, s.sample_box(rng, height, width))
    else:
      image = np.asarray(image)
      if s.crop == 'pad_and_crop':
        pad = int(round(s.pad_fraction * image.shape[0]))
        image = preprocess.pad_and_crop(rng, image, pad)
      else:
        image = preprocess.crop(
            image, s.sample_box(rng, image.shape[0], image.shape[1]))
    method = (preprocess.INTERPOLATIONS[rng.integers(4)]
              if s.random_interpolation else 'bilinear')
    image = preprocess.resize(image, size, method)
    if self.record_kind == ENCODED and s.crop == 'pad_and_crop':
      pad = int(round(s.pad_fraction * s.image_size))
      image = preprocess.pad_and_crop(rng, image, pad)
    if s.flip and rng.integers(2):
      image = image[:, ::-1]
    if s.distort_color:
      image = 255.0 * preprocess.distort_color(
          rng, tf.clip_by_value(image, 0.0, 255.0) / 255.0,
          brightness=s.brightness, contrast=s.contrast,
          saturation=s.saturation, hue=s.hue, lighting=s.lighting)
    image = np.asarray(image)
    if image.shape[-1] == 1:
      image = np.repeat(image, 3, axis=-1)
    return {'image': normalize(image, s.normalization),
            'label': np.int32(element['label'])}


@dataclasses.dataclass(frozen=True)
class EvalPreprocess(grain.MapTransform):
  """Center crop (or the 10 / 144 crops), resize and normalisation."""
  image_size: int
  crops: int
  crop_fraction: float
  normalization: str
  record_kind: str

  @classmethod
  def from_config(cls, data_cfg, record_kind: str,
                  crops_per_image: int) -> 'EvalPreprocess':
    if crops_per_image not in config_lib.EVAL_CROPS:
      raise ValueError(f'crops must be one of {config_lib.EVAL_CROPS}, got '
                       f'{crops_per_image}.')
    fraction = (data_cfg.fashion_mnist_eval_crop_fraction
                if record_kind == ARRAY else data_cfg.eval_crop_fraction)
    return cls(data_cfg.image_size, crops_per_image, fraction,
               data_cfg.normalization, record_kind)

  def map(self, element: Dict[str, Any]) -> Dict[str, np.ndarray]:
    size = self.image_size
    image = element['image']
    if self.crops == 1:
      if self.record_kind == ENCODED:
        box = crops.center_crop_box(*preprocess.encoded_shape(image),
                                    self.crop_fraction)
        image = preprocess.decode_crop(image, box)
      else:
        image = np.asarray(image)
        image = preprocess.crop(image, crops.center_crop_box(
            image.shape[0], image.shape[1], self.crop_fraction))
      image = preprocess.resize(image, (size, size))
    else:
      if self.record_kind == ENCODED:
        image = preprocess.decode(image)
      else:
        image = tf.convert_to_tensor(np.asarray(image))
      if self.crops == 10:
        image = preprocess.ten_crops(image, size, self.crop_fraction)
      else:
        image = preprocess.paper_144_crops(image, size)
    image = np.asarray(image)
    if image.shape[-1] == 1:
      image = np.repeat(image, 3, axis=-1)
    return {'image': normalize(image, self.normalization),
            'label': np.int32(element['label'])}
