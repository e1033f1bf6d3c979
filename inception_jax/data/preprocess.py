"""Pixel work for one example: decode, crop, pad, resize, distort.

Nothing here is random: the training transform draws every choice first
(`sampling.draw_train`) and passes the outcome in. Pixels keep one scale
from decoding to normalisation: uint8 from the decoder, float32 on [0, 255]
from the resize on (the photometric distortions included), until
`normalization.normalize` maps them to the model's range.

TensorFlow is used eagerly, one example at a time, for what it does best:
fused JPEG decode-and-crop (only the crop's pixels are decoded) and resizing
with the four interpolations the paper draws from.
"""

from __future__ import annotations

import dataclasses
from typing import Optional, Sequence, Tuple

import numpy as np
from PIL import Image
import tensorflow as tf

from inception_jax.data import crops
from inception_jax.data import sampling

# TensorFlow only preprocesses on the host; with a GPU build installed it
# would otherwise reserve accelerator memory that JAX needs.
try:
  tf.config.set_visible_devices([], 'GPU')
except RuntimeError:  # Devices already initialised by someone else.
  pass

# The top of the pixel scale between decoding and normalisation.
PIXEL_MAX = 255.0
# AlexNet's PCA of ImageNet RGB pixels (on [0, 1]), used for lighting noise.
_PCA_EIGVAL = np.array([0.2175, 0.0188, 0.0045], np.float32)
_PCA_EIGVEC = np.array([[-0.5675, 0.7192, 0.4009],
                        [-0.5808, -0.0045, -0.8140],
                        [-0.5836, -0.6948, 0.4203]], np.float32)

_JPEG_MAGIC = b'\xff\xd8\xff'


def is_jpeg(encoded: bytes) -> bool:
  return encoded[:3] == _JPEG_MAGIC


def encoded_shape(encoded: bytes) -> tuple[int, int]:
  """Height and width of an encoded image, decoding only the header if JPEG."""
  if is_jpeg(encoded):
    shape = tf.io.extract_jpeg_shape(encoded).numpy()
  else:
    shape = tf.shape(decode(encoded)).numpy()
  return int(shape[0]), int(shape[1])


def decode(encoded: bytes) -> tf.Tensor:
  """Decodes a JPEG/PNG/... into uint8 [H, W, 3]."""
  return tf.io.decode_image(encoded, channels=3, expand_animations=False)


def decode_crop(encoded: bytes, box: crops.Box) -> tf.Tensor:
  """Decodes only ``box`` of a JPEG; other formats decode, then slice."""
  top, left, h, w = box
  if is_jpeg(encoded):
    return tf.image.decode_and_crop_jpeg(encoded, [top, left, h, w],
                                         channels=3)
  return decode(encoded)[top:top + h, left:left + w]


@dataclasses.dataclass(frozen=True)
class EncodedImages:
  """Records that hold encoded image bytes (JPEG, sometimes PNG).

  TFDS leaves them encoded; the shape comes from the header alone and a
  JPEG decodes only the box that is kept. A box must lie inside the image,
  so a pad-and-crop happens after resizing, at the model's size.
  """
  encoded = True
  pad_after_resize = True

  def shape(self, record: bytes) -> Tuple[int, int]:
    return encoded_shape(record)

  def decode(self, record: bytes, box: Optional[crops.Box] = None):
    """uint8 [H, W, 3] of ``box`` (the whole image when None)."""
    return decode(record) if box is None else decode_crop(record, box)


@dataclasses.dataclass(frozen=True)
class DecodedArrays:
  """Records that TFDS decodes to uint8 arrays (Fashion-MNIST's 28x28x1).

  They are small, so a pad-and-crop happens on the stored pixels.
  """
  encoded = False
  pad_after_resize = False

  def shape(self, record) -> Tuple[int, int]:
    shape = np.shape(record)
    return int(shape[0]), int(shape[1])

  def decode(self, record, box: Optional[crops.Box] = None) -> np.ndarray:
    """uint8 [H, W, C] of ``box`` (the whole image when None)."""
    image = np.asarray(record)
    return image if box is None else crop(image, box)


def resize(image, shape: Sequence[int], method: str = 'bilinear'):
  """Resizes to ``shape`` as float32 on [0, 255].

  A numpy image (Fashion-MNIST's stored arrays) resized bilinearly goes
  through PIL, one float32 channel at a time: the same antialiased triangle
  filter as ``tf.image.resize(..., antialias=True)`` (equal to 1e-3 on
  [0, 255], tested) at about a twentieth of an eager TensorFlow call's cost,
  which on small images is the whole pipeline's cost.
  """
  if isinstance(image, np.ndarray) and method == 'bilinear':
    return _resize_pil(image, shape)
  image = tf.convert_to_tensor(image)
  if tuple(image.shape[-3:-1]) == tuple(shape):
    return tf.cast(image, tf.float32)
  # 'nearest' keeps the input dtype; everything downstream wants floats.
  return tf.cast(tf.image.resize(image, shape, method=method,
                                 antialias=method in ('bilinear', 'bicubic')),
                 tf.float32)


def _resize_pil(image: np.ndarray, shape: Sequence[int]) -> np.ndarray:
  height, width = int(shape[0]), int(shape[1])
  image = image.astype(np.float32, copy=False)
  if image.shape[:2] == (height, width):
    return image
  channels = [
      np.asarray(Image.fromarray(np.ascontiguousarray(image[..., c]), 'F')
                 .resize((width, height), Image.BILINEAR))
      for c in range(image.shape[-1])]
  return np.stack(channels, axis=-1)


def crop(image, box: crops.Box):
  top, left, h, w = box
  return image[top:top + h, left:left + w]


def _adjust_brightness(image, delta: float):
  return tf.image.adjust_brightness(image, delta * PIXEL_MAX)


# Each takes pixels on [0, PIXEL_MAX]. Contrast, saturation and hue changes
# scale with the pixels, so they need no conversion; the brightness delta is
# a fraction of the range.
_COLOUR_STEPS = {
    'brightness': _adjust_brightness,
    'contrast': tf.image.adjust_contrast,
    'saturation': tf.image.adjust_saturation,
    'hue': tf.image.adjust_hue,
}


def distort_color(image, draws: sampling.ColourDraws) -> tf.Tensor:
  """Photometric distortions after Howard (2013), as drawn.

  ``image`` is float RGB on [0, 255]; so is the result, clipped after every
  step. The lighting noise is AlexNet's PCA noise.
  """
  image = tf.clip_by_value(image, 0.0, PIXEL_MAX)
  for name, amount in draws.steps:
    image = tf.clip_by_value(_COLOUR_STEPS[name](image, amount), 0.0,
                             PIXEL_MAX)
  if draws.lighting is not None:
    image = image + PIXEL_MAX * (_PCA_EIGVEC @ (draws.lighting * _PCA_EIGVAL))
  return tf.clip_by_value(image, 0.0, PIXEL_MAX)


def pad_and_crop(image, pad_crop: Optional[sampling.PadCrop]):
  """Zero-pads and crops back to the image's size, as drawn (None: as is)."""
  if pad_crop is None:
    return image
  h, w = int(image.shape[0]), int(image.shape[1])
  p = pad_crop.pad
  padded = tf.pad(image, [[p, p], [p, p], [0, 0]])
  return crop(padded, (pad_crop.top, pad_crop.left, h, w))


def to_rgb(image) -> np.ndarray:
  """Grey [H, W, 1] replicated to [H, W, 3]; RGB as it is."""
  image = np.asarray(image)
  return np.repeat(image, 3, axis=-1) if image.shape[-1] == 1 else image


def mirrored(views: Sequence[tf.Tensor]) -> tf.Tensor:
  """Stacks the views followed by their horizontal mirrors."""
  stacked = tf.stack(list(views))
  return tf.concat([stacked, stacked[:, :, ::-1]], axis=0)


def ten_crops(image, size: int, fraction: float) -> tf.Tensor:
  """[10, size, size, 3]: 4 corners + center, then the same mirrored."""
  image = tf.convert_to_tensor(image)
  shape, boxes = crops.ten_crop_boxes(int(image.shape[0]),
                                      int(image.shape[1]), size, fraction)
  resized = resize(image, shape)
  return mirrored([resize(crop(resized, b), (size, size)) for b in boxes])


def paper_144_crops(image, size: int) -> tf.Tensor:
  """[144, size, size, 3] in the order of `crops.multi_crop_144_boxes`,
  then the same 72 mirrored."""
  image = tf.convert_to_tensor(image)
  views, resized, current = [], None, None
  for c in crops.multi_crop_144_boxes(int(image.shape[0]),
                                      int(image.shape[1]), size):
    if c.scale != current:
      resized, current = resize(image, c.resized), c.scale
    views.append(resize(crop(resized, c.box), (size, size)))
  return mirrored(views)
