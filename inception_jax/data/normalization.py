"""Pixel values to the model's input range, on the host or the device.

Batches leave the host as uint8 pixels (a quarter of float32's bytes to
move and transfer) and `on_device` maps them inside the jitted steps, as
big_vision and most TPU input pipelines do; `predict` maps its one image
on the host with `normalize`, the same arithmetic in NumPy. No TensorFlow.
"""

import jax.numpy as jnp
import numpy as np

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)
# Caffe's bvlc_googlenet `mean_value: 104, 117, 123` is in BGR order; the
# pipeline's images are RGB.
CAFFE_MEAN_RGB = np.array([123.0, 117.0, 104.0], np.float32)

MODES = ('caffe', 'imagenet', 'minus_one_one', 'none')


def _per_channel(op, image: np.ndarray, values: np.ndarray) -> np.ndarray:
  """``op(image, values)`` in place on float32 ``image``, broadcast over
  the last axis, elementwise the same as NumPy's broadcasting, but with the
  constants tiled along a whole row: NumPy's inner loop over a last axis of
  3 costs several times the arithmetic."""
  if image.ndim < 2 or image.shape[-1] != values.size or image.size == 0:
    return op(image, values)
  row = image.shape[-2] * image.shape[-1]
  op(image.reshape(-1, row), np.tile(values, row // values.size),
     out=image.reshape(-1, row))
  return image


def normalize(image: np.ndarray, mode: str) -> np.ndarray:
  """Maps pixels on [0, 255] to the model's input range, as float32.

  'caffe' is bvlc_googlenet's input: pixels on the 0-255 scale minus the
  ImageNet mean, not divided by a standard deviation. LRN is not
  scale-invariant, and its constants (alpha 1e-4 over 5 channels) assume
  that scale: on inputs of about unit size the paper's LRNs leave their
  input unchanged to within 1e-4. 'imagenet' divides by the std as well
  (torchvision's weights expect it), 'minus_one_one' is [-1, 1], 'none'
  [0, 1]. ``image`` (uint8 or float) is not modified.
  """
  if mode not in MODES:
    raise ValueError(f'Unknown normalization {mode!r}; expected one of '
                     f'{", ".join(MODES)}.')
  # One fresh contiguous float32 array; every later step works in place.
  if mode == 'caffe':
    return _per_channel(np.subtract, np.array(image, np.float32),
                        CAFFE_MEAN_RGB)
  image = np.divide(np.asarray(image), np.float32(255.0), dtype=np.float32)
  if mode == 'imagenet':
    return _per_channel(np.divide,
                        _per_channel(np.subtract, image, IMAGENET_MEAN),
                        IMAGENET_STD)
  if mode == 'minus_one_one':
    image *= np.float32(2.0)
    image -= np.float32(1.0)
  return image


def on_device(images: jnp.ndarray, mode: str) -> jnp.ndarray:
  """`normalize` inside a jitted step: pixels on [0, 255] (uint8, or float
  after the device's colour distortions) to float32 in the model's range,
  the same operations in the same order as on the host."""
  if mode not in MODES:
    raise ValueError(f'Unknown normalization {mode!r}; expected one of '
                     f'{", ".join(MODES)}.')
  images = images.astype(jnp.float32)
  if mode == 'caffe':
    return images - CAFFE_MEAN_RGB
  images = images / np.float32(255.0)
  if mode == 'imagenet':
    return (images - IMAGENET_MEAN) / IMAGENET_STD
  if mode == 'minus_one_one':
    return images * np.float32(2.0) - np.float32(1.0)
  return images
