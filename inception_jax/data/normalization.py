"""Pixel values to the model's input range (NumPy only, no TensorFlow).

Shared by the input pipeline and by `predict`, which must feed a single
image exactly as evaluation does.
"""

import numpy as np

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)


def normalize(image: np.ndarray, mode: str) -> np.ndarray:
  """Maps pixels on [0, 255] to the model's input range, as float32."""
  image = np.asarray(image, np.float32) / 255.0
  if mode == 'imagenet':
    return (image - IMAGENET_MEAN) / IMAGENET_STD
  if mode == 'minus_one_one':
    return image * 2.0 - 1.0
  if mode == 'none':
    return image
  raise ValueError(f'Unknown normalization {mode!r}; expected imagenet, '
                   'minus_one_one or none.')
