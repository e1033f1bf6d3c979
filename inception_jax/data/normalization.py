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


def _check(mode: str) -> None:
  if mode not in MODES:
    raise ValueError(f'Unknown normalization {mode!r}; expected one of '
                     f'{", ".join(MODES)}.')


def _formula(pixels, mode: str):
  """The one arithmetic of every mode, for float32 NumPy or JAX arrays."""
  if mode == 'caffe':
    return pixels - CAFFE_MEAN_RGB
  pixels = pixels / np.float32(255.0)
  if mode == 'imagenet':
    return (pixels - IMAGENET_MEAN) / IMAGENET_STD
  if mode == 'minus_one_one':
    return pixels * np.float32(2.0) - np.float32(1.0)
  return pixels


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
  _check(mode)
  return _formula(np.asarray(image, np.float32), mode)


def on_device(images: jnp.ndarray, mode: str) -> jnp.ndarray:
  """`normalize` inside a jitted step: pixels on [0, 255] (uint8, or float
  after the device's colour distortions) to float32 in the model's range,
  the same operations in the same order as on the host."""
  _check(mode)
  return _formula(images.astype(jnp.float32), mode)
