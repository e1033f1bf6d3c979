"""Every random draw of the training preprocessing, and nothing else.

grain hands each record a numpy Generator derived from the seed and the
record's position in the sampled order. `draw_train` takes everything random
for one example from it (the crop, the interpolation, the flip, the colour
distortions) in one fixed order, before any pixel is touched, and returns
the outcome as plain values. The pixel code (`preprocess`) is then
deterministic, so a resumed iterator, which gets the same generators,
produces exactly the same pixels, and the crop statistics can be tested
without pixels. NumPy only, no TensorFlow.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Optional, Tuple

import numpy as np

from inception_jax.data import crops

# Resize interpolations the paper draws from, uniformly.
INTERPOLATIONS = ('bilinear', 'area', 'nearest', 'bicubic')


def sample_inception_crop(rng: np.random.Generator, height: int, width: int,
                          *, min_area: float = 0.08, max_area: float = 1.0,
                          min_aspect: float = 3 / 4, max_aspect: float = 4 / 3,
                          attempts: int = 10) -> crops.Box:
  """The paper's random crop: area and aspect ratio drawn, center fallback.

  The area fraction is uniform in [min_area, max_area] and the aspect ratio
  (width / height) log-uniform in [min_aspect, max_aspect], as torchvision's
  RandomResizedCrop draws it (``tf.image.sample_distorted_bounding_box``
  draws the aspect ratio uniformly; the paper does not say). Draws that do not fit the image are retried; after
  ``attempts`` failures the largest centered box with an allowed aspect ratio
  is used.
  """
  area = height * width
  log_lo, log_hi = math.log(min_aspect), math.log(max_aspect)
  for _ in range(attempts):
    target_area = area * rng.uniform(min_area, max_area)
    aspect = math.exp(rng.uniform(log_lo, log_hi))
    w = int(round(math.sqrt(target_area * aspect)))
    h = int(round(math.sqrt(target_area / aspect)))
    if 0 < w <= width and 0 < h <= height:
      top = int(rng.integers(0, height - h + 1))
      left = int(rng.integers(0, width - w + 1))
      return (top, left, h, w)
  # Fallback: the whole image, trimmed to the allowed aspect range.
  aspect = width / height
  if aspect < min_aspect:
    w, h = width, int(round(width / min_aspect))
  elif aspect > max_aspect:
    w, h = int(round(height * max_aspect)), height
  else:
    w, h = width, height
  h, w = min(h, height), min(w, width)
  return ((height - h) // 2, (width - w) // 2, h, w)


@dataclasses.dataclass(frozen=True)
class PadCrop:
  """Zero-pad by ``pad`` pixels, then keep the unpadded size from
  ``(top, left)`` of the padded image (0 <= top, left <= 2 * pad)."""
  pad: int
  top: int
  left: int


def sample_pad_crop(rng: np.random.Generator, side: int,
                    pad_fraction: float) -> PadCrop:
  """Where the crop of a padded image starts; the pad is a fraction of
  ``side``."""
  pad = int(round(pad_fraction * side))
  top = int(rng.integers(0, 2 * pad + 1))
  left = int(rng.integers(0, 2 * pad + 1))
  return PadCrop(pad, top, left)


@dataclasses.dataclass(frozen=True)
class ColourDraws:
  """Howard's photometric distortions for one image.

  ``steps`` are ``(name, amount)`` in the order they apply: 'brightness'
  (a delta, as a fraction of the pixel range), 'contrast' and 'saturation'
  (factors), 'hue' (a shift, as a fraction of the colour circle).
  ``lighting`` holds AlexNet's PCA noise coefficients, or None.
  """
  steps: Tuple[Tuple[str, float], ...]
  lighting: Optional[np.ndarray]


def sample_colour(rng: np.random.Generator, *, brightness: float,
                  contrast: float, saturation: float, hue: float,
                  lighting: float) -> ColourDraws:
  """The distortions with a non-zero strength, in a random order."""
  steps = []
  if brightness > 0:
    steps.append(('brightness', rng.uniform(-brightness, brightness)))
  if contrast > 0:
    steps.append(('contrast', rng.uniform(1 - contrast, 1 + contrast)))
  if saturation > 0:
    steps.append(('saturation', rng.uniform(1 - saturation, 1 + saturation)))
  if hue > 0:
    steps.append(('hue', rng.uniform(-hue, hue)))
  order = rng.permutation(len(steps))
  alpha = (rng.normal(0.0, lighting, 3).astype(np.float32)
           if lighting > 0 else None)
  return ColourDraws(tuple(steps[i] for i in order), alpha)


@dataclasses.dataclass(frozen=True)
class TrainDraws:
  """The outcome of every random choice for one training example.

  Attributes:
    box: the part of the stored image to decode and keep (the whole image
      when the crop setting takes none).
    pad_before_resize: a pad-and-crop of the stored pixels, or None.
    interpolation: the resize method, one of `INTERPOLATIONS`.
    pad_after_resize: a pad-and-crop of the resized image, or None.
    flip: mirror horizontally.
    colour: the photometric distortions, or None.
  """
  box: crops.Box
  pad_before_resize: Optional[PadCrop]
  interpolation: str
  pad_after_resize: Optional[PadCrop]
  flip: bool
  colour: Optional[ColourDraws]


def sample_caffe_crop(rng: np.random.Generator, height: int, width: int,
                      fraction: float) -> crops.Box:
  """Caffe's training crop: the image squashed to a square (256x256), a
  random square of `fraction` of its side (224) taken, here expressed as a
  box of `fraction` of each side of the original at a uniform position."""
  h = max(1, int(round(height * fraction)))
  w = max(1, int(round(width * fraction)))
  return (int(rng.integers(height - h + 1)), int(rng.integers(width - w + 1)),
          h, w)


def draw_train(rng: np.random.Generator, settings, height: int, width: int,
               *, pad_after_resize: bool) -> TrainDraws:
  """Everything random about one training example of ``height x width``.

  ``settings`` is a `transforms.TrainSettings`. ``pad_after_resize`` says
  where a pad-and-crop happens: encoded records can only decode boxes
  inside the image, so they are padded at the model's size; decoded arrays
  are padded as stored. The order of the draws is part of the pipeline's
  output: changing it changes every training batch of a seed.
  """
  s = settings
  box = (0, 0, height, width)
  pad_before = pad_after = None
  if s.crop in ('inception', 'random_resized'):
    box = sample_inception_crop(
        rng, height, width, min_area=s.min_area, max_area=s.max_area,
        min_aspect=s.min_aspect, max_aspect=s.max_aspect,
        attempts=s.crop_attempts)
  elif s.crop == 'pad_and_crop' and not pad_after_resize:
    pad_before = sample_pad_crop(rng, height, s.pad_fraction)
  elif s.crop == 'caffe':
    box = sample_caffe_crop(rng, height, width, s.caffe_crop_fraction)
  interpolation = (INTERPOLATIONS[rng.integers(len(INTERPOLATIONS))]
                   if s.random_interpolation else s.interpolation)
  if s.crop == 'pad_and_crop' and pad_after_resize:
    pad_after = sample_pad_crop(rng, s.image_size, s.pad_fraction)
  flip = bool(s.flip and rng.integers(2))
  colour = None
  if s.distort_color:
    colour = sample_colour(rng, brightness=s.brightness, contrast=s.contrast,
                           saturation=s.saturation, hue=s.hue,
                           lighting=s.lighting)
  return TrainDraws(box, pad_before, interpolation, pad_after, flip, colour)
