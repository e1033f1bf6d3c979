"""grain transforms that turn one stored record into one model input.

The data set's record format (`datasets.record_format`: encoded bytes or
decoded arrays) supplies the record's shape and decodes a box of it; what
happens to the pixels is chosen by the config alone. The settings are copied
out of the ConfigDict into frozen dataclasses so the transforms pickle
cleanly into grain's worker processes.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Dict, List, Optional, Sequence, Union

import grain.python as grain
import numpy as np

from inception_jax.data import config as config_lib
from inception_jax.data import crops
from inception_jax.data import datasets
from inception_jax.data import device_colour
from inception_jax.data import preprocess
from inception_jax.data import sampling

RecordFormat = Union[preprocess.EncodedImages, preprocess.DecodedArrays]


@dataclasses.dataclass(frozen=True)
class TrainSettings:
  """The training switches, resolved from the config."""
  image_size: int
  crop: str
  min_area: float
  max_area: float
  min_aspect: float
  max_aspect: float
  crop_attempts: int
  pad_fraction: float
  caffe_crop_fraction: float
  flip: bool
  distort_color: bool
  brightness: float
  contrast: float
  saturation: float
  hue: float
  lighting: float
  random_interpolation: bool
  interpolation: str
  antialias: bool

  @classmethod
  def from_config(cls, data_cfg) -> 'TrainSettings':
    crop = data_cfg.crop
    if crop not in config_lib.CROPS:
      raise ValueError(f'Unknown crop {crop!r}; expected one of '
                       f'{", ".join(config_lib.CROPS)}.')
    if data_cfg.interpolation not in sampling.INTERPOLATIONS:
      raise ValueError(f'Unknown data.interpolation '
                       f'{data_cfg.interpolation!r}; expected one of '
                       f'{", ".join(sampling.INTERPOLATIONS)}.')
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
        caffe_crop_fraction=data_cfg.eval_crop_fraction, flip=data_cfg.flip,
        distort_color=data_cfg.distort_color,
        brightness=data_cfg.brightness, contrast=data_cfg.contrast,
        saturation=data_cfg.saturation, hue=data_cfg.hue,
        lighting=data_cfg.lighting,
        random_interpolation=data_cfg.random_interpolation,
        interpolation=data_cfg.interpolation, antialias=data_cfg.antialias)


@dataclasses.dataclass(frozen=True)
class TrainPreprocess(grain.RandomMapTransform):
  """Random crop, resize and flip: uint8 pixels out, with the colour
  distortions' draws (``'colour'``) that the step applies on the device
  before it normalises."""
  settings: TrainSettings
  records: RecordFormat

  @classmethod
  def from_config(cls, data_cfg) -> 'TrainPreprocess':
    return cls(TrainSettings.from_config(data_cfg),
               datasets.record_format(data_cfg))

  def random_map(self, element: Dict[str, Any],
                 rng: np.random.Generator) -> Dict[str, np.ndarray]:
    return self._pixels(element, self._draw(element, rng))

  def _draw(self, element: Dict[str, Any],
            rng: np.random.Generator) -> sampling.TrainDraws:
    return sampling.draw_train(
        rng, self.settings, *self.records.shape(element['image']),
        pad_after_resize=self.records.pad_after_resize)

  def _decodes_box_alone(self, record, draws: sampling.TrainDraws) -> bool:
    """Whether the pixels start from the JPEG's ``draws.box`` decoded at
    full scale (what `preprocess.decode_crops` gives a batch of)."""
    if not (self.records.encoded and preprocess.is_jpeg(record)
            and draws.pad_before_resize is None):
      return False
    size = self.settings.image_size
    return preprocess.dct_ratio(draws.box, (size, size), draws.interpolation,
                                antialias=self.settings.antialias) == 1

  def _pixels(self, element: Dict[str, Any], draws: sampling.TrainDraws,
              box_pixels: Optional[np.ndarray] = None
              ) -> Dict[str, np.ndarray]:
    """The example of ``draws``; ``box_pixels``, when given, the decoded
    ``draws.box`` (`_decodes_box_alone`)."""
    size = self.settings.image_size
    record = element['image']
    # RGB stays 8-bit through the geometry; one conversion to float32 after.
    if box_pixels is not None:
      image = preprocess.resample(box_pixels, (size, size),
                                  draws.interpolation,
                                  antialias=self.settings.antialias)
    elif draws.pad_before_resize is None:
      image = self.records.decode_resized(record, draws.box, (size, size),
                                          draws.interpolation,
                                          antialias=self.settings.antialias)
    else:
      image = self.records.decode(record, draws.box)
      image = preprocess.pad_and_crop(image, draws.pad_before_resize)
      image = preprocess.resample(image, (size, size), draws.interpolation,
                                  antialias=self.settings.antialias)
    image = preprocess.pad_and_crop(image, draws.pad_after_resize)
    image = preprocess.to_rgb(image)
    if draws.flip:
      image = preprocess.flip_left_right(image)
    example = {'image': preprocess.to_uint8(image),
               'label': np.int32(element['label'])}
    if self.settings.distort_color:
      # Drawn here, applied in the step (`device_colour.distort`).
      example['colour'] = device_colour.encode(draws.colour)
    return example

  def batch(self, elements: Sequence[Dict[str, Any]],
            rngs: Sequence[np.random.Generator]
            ) -> List[Dict[str, np.ndarray]]:
    """``[random_map(e, r) for e, r in zip(elements, rngs)]``, the same
    pixels, with the batch's JPEG boxes decoded in one TensorFlow call
    (`preprocess.decode_crops`) instead of one eager call each."""
    draws = [self._draw(e, r) for e, r in zip(elements, rngs)]
    alone = [i for i, (e, d) in enumerate(zip(elements, draws))
             if self._decodes_box_alone(e['image'], d)]
    decoded = dict(zip(alone, preprocess.decode_crops(
        [elements[i]['image'] for i in alone],
        [draws[i].box for i in alone])))
    return [self._pixels(e, d, decoded.get(i))
            for i, (e, d) in enumerate(zip(elements, draws))]


@dataclasses.dataclass(frozen=True)
class EvalPreprocess(grain.MapTransform):
  """Center crop (or the 10 / 144 crops) and resize; uint8 pixels out.

  The resize is antialiased bilinear whatever ``data.antialias`` says (that
  key is for training crops): evaluation resizes once per image, as
  torchvision's PIL-based evaluation does.
  """
  image_size: int
  crops: int
  crop_fraction: float
  records: RecordFormat

  @classmethod
  def from_config(cls, data_cfg, crops_per_image: int) -> 'EvalPreprocess':
    if crops_per_image not in config_lib.EVAL_CROPS:
      raise ValueError(f'crops must be one of {config_lib.EVAL_CROPS}, got '
                       f'{crops_per_image}.')
    return cls(data_cfg.image_size, crops_per_image,
               data_cfg.eval_crop_fraction, datasets.record_format(data_cfg))

  def map(self, element: Dict[str, Any]) -> Dict[str, np.ndarray]:
    size = self.image_size
    record = element['image']
    if self.crops == 1:
      box = crops.center_crop_box(*self.records.shape(record),
                                  self.crop_fraction)
      image = self.records.decode_resized(record, box, (size, size),
                                          'bilinear', antialias=True)
    elif self.crops == 10:
      image = preprocess.ten_crops(self.records.decode(record), size,
                                   self.crop_fraction)
    else:
      image = preprocess.paper_144_crops(self.records.decode(record), size)
    return {'image': preprocess.to_uint8(preprocess.to_rgb(image)),
            'label': np.int32(element['label'])}
