r"""Classify image files with a checkpoint: the top-5 classes and their odds.

  python -m inception_jax.predict --checkpoint=runs/fashion_mnist shirt.png

`--checkpoint` is anything `inception_jax.load` reads: a workdir, a step
directory, or a parameters-only checkpoint.

The pixels go through the same single-crop evaluation preprocessing as the
batched evaluation (`inception_jax.data.transforms.EvalPreprocess` with one
crop): the centered square covering the configured fraction of the shorter
side, resized to the model's input size with antialiased bilinear
interpolation by the same function (`inception_jax.data.preprocess.resize`),
grey images replicated to RGB, the same normalisation. Files are decoded
with PIL, so that predicting needs neither TensorFlow nor the input
pipeline; the tests check it against the pipeline's output. PNG pixels
decode identically; JPEG decoders may differ by a grey level or so, and a
few where the evaluation decodes a large JPEG at a reduced scale
(`inception_jax.data.preprocess.dct_ratio`), which predicting does not.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from typing import List, Sequence, Tuple

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image

from inception_jax.checkpoints import loader
from inception_jax.data import preprocess as pixels
from inception_jax.data.crops import center_crop_box
from inception_jax.data.normalization import normalize

# What the torchvision converter's checkpoints expect (torchvision's own
# evaluation: shorter side 256, center 224, ImageNet normalisation).
DEFAULT_NORMALIZATION = 'imagenet'
DEFAULT_CROP_FRACTION = 0.875

_GREY_MODES = ('1', 'L', 'LA', 'La')
_SIXTEEN_BIT_MODES = ('I', 'I;16', 'I;16B', 'I;16L', 'I;16N')


class ImageError(ValueError):
  """A file that is missing or does not decode as an image."""


@dataclasses.dataclass(frozen=True)
class Preprocessing:
  """The single-crop evaluation preprocessing of a model.

  Attributes:
    image_size: side of the square model input.
    crop_fraction: the centered square covers this fraction of the shorter
      side before it is resized to `image_size`.
    normalization: a `data.normalization` mode ('caffe', 'imagenet',
      'minus_one_one' or 'none').
  """
  image_size: int
  crop_fraction: float
  normalization: str


def preprocessing_of(restored: loader.Restored) -> Preprocessing:
  """The evaluation preprocessing of the run that trained `restored`.

  Mirrors `EvalPreprocess.from_config`. A parameters-only checkpoint carries what `export` recorded, and
  the torchvision converter's checkpoints use torchvision's own.
  """
  config = loader.config_of(restored)
  if config is not None:
    data = config.data
    return Preprocessing(int(restored.image_size),
                         float(data.eval_crop_fraction),
                         str(data.normalization))
  saved = (restored.meta.get('extra') or {}).get('preprocessing') or {}
  # Nothing recorded: the input an LRN model needs (its constants act only at
  # Caffe's 0-255 scale), ImageNet's mean/std otherwise.
  default = ('caffe' if restored.model.normalization == 'lrn' else
             DEFAULT_NORMALIZATION)
  return Preprocessing(
      int(saved.get('image_size', restored.image_size)),
      float(saved.get('crop_fraction', DEFAULT_CROP_FRACTION)),
      str(saved.get('normalization', default)))


def read_image(path: str) -> np.ndarray:
  """Decodes an image file to uint8 [H, W, 1] (grey) or [H, W, 3].

  Grey stays one channel, like Fashion-MNIST's records, and is replicated
  after resizing as the pipeline does; alpha is dropped, like TensorFlow's
  ``decode_image(channels=3)``.

  Raises:
    ImageError: the file is missing or is not a decodable image.
  """
  if not os.path.exists(path):
    raise ImageError(f'{path}: no such file.')
  if os.path.isdir(path):
    raise ImageError(f'{path}: is a directory, not an image.')
  try:
    with Image.open(path) as image:
      image.load()
      mode = image.mode
      if mode in _SIXTEEN_BIT_MODES:
        # TensorFlow maps 16-bit samples to 8 bits by dropping the low byte.
        array = (np.asarray(image).astype(np.uint32) >> 8).astype(np.uint8)
        return array[..., None]
      if mode in _GREY_MODES:
        return np.asarray(image.convert('L'))[..., None]
      return np.asarray(image.convert('RGB'))
  except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
    raise ImageError(f'{path}: not an image that can be decoded '
                     f'({" ".join(str(e).split()) or type(e).__name__}).'
                     ) from None


def preprocess(image: np.ndarray, prep: Preprocessing) -> np.ndarray:
  """uint8 [H, W, C] -> float32 [S, S, 3], the eval pipeline's single crop."""
  image = np.asarray(image)
  if image.ndim == 2:
    image = image[..., None]
  top, left, h, w = center_crop_box(image.shape[0], image.shape[1],
                                    prep.crop_fraction)
  size = prep.image_size
  image = pixels.resize(image[top:top + h, left:left + w], (size, size))
  return normalize(pixels.to_rgb(image), prep.normalization)


class Predictor:
  """Class probabilities of a restored model for preprocessed images.

  The forward pass is jitted once per batch shape; a stream of single
  images compiles once.
  """

  def __init__(self, restored: loader.Restored):
    self.restored = restored
    self.preprocessing = preprocessing_of(restored)
    model = restored.model

    def probabilities(variables, images):
      logits, _ = model.apply(variables, images, train=False)
      return jax.nn.softmax(logits.astype(jnp.float32), axis=-1)

    self._probabilities = jax.jit(probabilities)

  def class_name(self, index: int) -> str:
    names = self.restored.class_names
    return names[index] if names else f'class {index}'

  def probabilities(self, images: np.ndarray) -> np.ndarray:
    """float32 [N, S, S, 3] preprocessed images -> [N, num_classes]."""
    return np.asarray(self._probabilities(self.restored.variables,
                                          jnp.asarray(images)))

  def preprocess(self, image: np.ndarray) -> np.ndarray:
    return preprocess(image, self.preprocessing)

  def top_k(self, images: Sequence[np.ndarray],
            k: int = 5) -> List[List[Tuple[str, float]]]:
    """For each decoded uint8 image, its k likeliest (class, probability)."""
    batch = np.stack([self.preprocess(im) for im in images])
    probs = self.probabilities(batch)
    k = min(k, probs.shape[-1])
    out = []
    for row in probs:
      order = np.argsort(-row, kind='stable')[:k]
      out.append([(self.class_name(int(i)), float(row[i])) for i in order])
    return out


def format_top_k(path: str, top: Sequence[Tuple[str, float]]) -> str:
  lines = [f'{path}:']
  lines += [f'  {p:8.2%}  {name}' for name, p in top]
  return '\n'.join(lines)


def run(checkpoint: str, paths: Sequence[str], *, top_k: int = 5,
        polyak: bool = True, out=None, err=None) -> int:
  """The command line's work; returns the exit status.

  Every file is decoded before the checkpoint is restored, so a wrong path
  costs no restore, and each bad file is named on one line.
  """
  out = out or sys.stdout
  err = err or sys.stderr
  if not paths:
    print('error: give at least one image file.', file=err)
    return 1
  images, failed = [], False
  for path in paths:
    try:
      images.append(read_image(path))
    except ImageError as e:
      print(f'error: {e}', file=err)
      failed = True
  if failed:
    return 1
  try:
    predictor = Predictor(loader.load(checkpoint, polyak=polyak))
  except ValueError as e:
    print(f'error: {e}', file=err)
    return 1
  for path, top in zip(paths, predictor.top_k(images, top_k)):
    print(format_top_k(path, top), file=out)
  return 0


def main(argv: Sequence[str]) -> int:
  from absl import flags  # pylint: disable=g-import-not-at-top
  f = flags.FLAGS
  return run(f.checkpoint, list(argv[1:]), top_k=f.top_k, polyak=not f.raw)


def define_flags() -> None:
  from absl import flags  # pylint: disable=g-import-not-at-top
  from inception_jax import cli  # pylint: disable=g-import-not-at-top
  cli.DEFINE_path('checkpoint', None,
                  'A workdir, step directory or parameters-only checkpoint '
                  '(local or gs://).')
  flags.DEFINE_integer('top_k', 5, 'How many classes to print per image.')
  flags.DEFINE_bool('raw', False,
                    'Use the raw weights instead of their Polyak average.')
  flags.mark_flag_as_required('checkpoint')


if __name__ == '__main__':
  from inception_jax import cli  # pylint: disable=g-import-not-at-top
  cli.run(main, define_flags, positional=True)
