"""Pixel work for one example: decode, crop, resize, distort, normalise.

Everything random is drawn from a numpy Generator that grain derives from the
seed and the record's position in the sampled order, so a resumed iterator
reproduces the same pixels. TensorFlow is used eagerly, one example at a
time, for what it does best: fused JPEG decode-and-crop (only the crop's
pixels are decoded) and resizing with the four interpolations the paper
draws from.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from PIL import Image
import tensorflow as tf

from inception_jax.data import crops

# TensorFlow only preprocesses on the host; with a GPU build installed it
# would otherwise reserve accelerator memory that JAX needs.
try:
  tf.config.set_visible_devices([], 'GPU')
except RuntimeError:  # Devices already initialised by someone else.
  pass

INTERPOLATIONS = ('bilinear', 'area', 'nearest', 'bicubic')
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


def distort_color(rng: np.random.Generator, image: tf.Tensor, *,
                  brightness: float, contrast: float, saturation: float,
                  hue: float, lighting: float) -> tf.Tensor:
  """Photometric distortions after Howard (2013), in a random order.

  ``image`` is float on [0, 1]; the result is clipped back to [0, 1]. A zero
  strength turns a distortion off. Lighting noise is AlexNet's PCA noise.
  """
  ops = []
  if brightness > 0:
    delta = rng.uniform(-brightness, brightness)
    ops.append(lambda x: tf.image.adjust_brightness(x, delta))
  if contrast > 0:
    factor_c = rng.uniform(1 - contrast, 1 + contrast)
    ops.append(lambda x: tf.image.adjust_contrast(x, factor_c))
  if saturation > 0:
    factor_s = rng.uniform(1 - saturation, 1 + saturation)
    ops.append(lambda x: tf.image.adjust_saturation(x, factor_s))
  if hue > 0:
    delta_h = rng.uniform(-hue, hue)
    ops.append(lambda x: tf.image.adjust_hue(x, delta_h))
  for i in rng.permutation(len(ops)):
    image = tf.clip_by_value(ops[i](image), 0.0, 1.0)
  if lighting > 0:
    alpha = rng.normal(0.0, lighting, 3).astype(np.float32)
    image = image + (_PCA_EIGVEC @ (alpha * _PCA_EIGVAL))
  return tf.clip_by_value(image, 0.0, 1.0)


def pad_and_crop(rng: np.random.Generator, image, pad: int):
  """Zero-pads by ``pad`` pixels and takes a random crop of the same size."""
  h, w = int(image.shape[0]), int(image.shape[1])
  padded = tf.pad(image, [[pad, pad], [pad, pad], [0, 0]])
  return crop(padded, crops.sample_pad_crop(rng, h, w, pad))


def mirrored(views: Sequence[tf.Tensor]) -> tf.Tensor:
  """Stacks the views followed by their horizontal mirrors."""
  stacked = tf.stack(list(views))
  return tf.concat([stacked, stacked[:, :, ::-1]], axis=0)


def ten_crops(image: tf.Tensor, size: int, fraction: float) -> tf.Tensor:
  """[10, size, size, 3]: 4 corners + center, then the same mirrored."""
  shape, boxes = crops.ten_crop_boxes(int(image.shape[0]),
                                      int(image.shape[1]), size, fraction)
  resized = resize(image, shape)
  return mirrored([resize(crop(resized, b), (size, size)) for b in boxes])


def paper_144_crops(image: tf.Tensor, size: int) -> tf.Tensor:
  """[144, size, size, 3] in the order of `crops.multi_crop_144_boxes`,
  then the same 72 mirrored."""
  views, resized, current = [], None, None
  for c in crops.multi_crop_144_boxes(int(image.shape[0]),
                                      int(image.shape[1]), size):
    if c.scale != current:
      resized, current = resize(image, c.resized), c.scale
    views.append(resize(crop(resized, c.box), (size, size)))
  return mirrored(views)
