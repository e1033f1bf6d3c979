"""Every ``data.*`` configuration key, with its default and meaning.

Configs are loaded with ``lock_config=True`` and overridden from the command
line, so every key exists here with a fixed type, and optional strings are
typed placeholders. The augmentation defaults are the paper's; a data set
that needs others sets them in its config (``small_image_config`` of
``inception_jax/config.py`` turns the 8% crops, colour distortions and random
interpolation, all meant for photos, into milder crops of a small image). The preprocessing reads
only these keys, never the data set's name.
"""

from __future__ import annotations

import os
from typing import Optional, Tuple

import ml_collections
from ml_collections import config_dict

from inception_jax.data import normalization

DATASET_NAMES = ('fashion_mnist', 'imagenet2012', 'image_folder')
CROPS = ('inception', 'random_resized', 'pad_and_crop', 'resize', 'caffe')
NORMALIZATIONS = normalization.MODES
EVAL_CROPS = (1, 10, 144)
# Files an image folder's data set reads (the rest are not images to it).
IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png')


def default_config() -> ml_collections.ConfigDict:
  """Returns the data config with every key the pipelines read."""
  c = ml_collections.ConfigDict()
  for add_keys in (_which_data, _training_crop, _other_augmentation,
                   _normalization, _evaluation, _robustness_and_throughput):
    add_keys(c)
  return c


def _which_data(c: ml_collections.ConfigDict) -> None:
  """Which data set, where, at what size and which splits."""
  # 'fashion_mnist' (offline from Debian's dataset-fashion-mnist, or TFDS's
  # download where the internet is reachable), 'imagenet2012' (TFDS's builder
  # over the manually downloaded ILSVRC archives) or 'image_folder'
  # (root/<split>/<label>/*.jpg|jpeg|png).
  c.name = 'fashion_mnist'
  # Where prepared TFDS data lives; None means ~/tensorflow_datasets.
  c.data_dir = config_dict.placeholder(str)
  # imagenet2012 only: the folder holding ILSVRC2012_img_train.tar and
  # ILSVRC2012_img_val.tar; None means <data_dir>/downloads/manual.
  c.manual_dir = config_dict.placeholder(str)
  # image_folder only: the folder holding one sub-folder per split.
  c.root = config_dict.placeholder(str)
  # Folder holding Debian's Fashion-MNIST IDX files (*-ubyte.gz).
  c.fashion_mnist_dir = '/usr/share/datasets/fashion-mnist'
  # Side of the square model input, in pixels.
  c.image_size = 224
  # Split names; None picks the data set's own ('train', and 'validation' for
  # imagenet2012 / 'test' for fashion_mnist / the first of 'validation',
  # 'val', 'test' present for image_folder).
  c.train_split = config_dict.placeholder(str)
  c.eval_split = config_dict.placeholder(str)


def _training_crop(c: ml_collections.ConfigDict) -> None:
  """The training crop."""
  # 'inception' (the paper: a patch of min_area..max_area of the image with
  # aspect ratio min_aspect..max_aspect, center-crop fallback; JPEGs decode
  # only the patch), 'random_resized' (the same sampler with area
  # random_resized_min_area..max_area), 'pad_and_crop' (zero-pad by
  # pad_fraction of the side, random crop of the unpadded size), 'resize'
  # (the whole image, no crop) or 'caffe' (bvlc_googlenet's train_val: the
  # image squashed to 256x256, a random 224x224 square of it; the square's
  # side is eval_crop_fraction of the resized side). Encoded records
  # (JPEG/PNG) are padded after resizing to image_size, decoded arrays
  # (Fashion-MNIST) before.
  c.crop = 'inception'
  c.min_area = 0.08
  c.max_area = 1.0
  c.min_aspect = 3.0 / 4.0
  c.max_aspect = 4.0 / 3.0
  c.random_resized_min_area = 0.6
  # Attempts at sampling a crop that fits before falling back to the center.
  c.crop_attempts = 10
  c.pad_fraction = 0.125


def _other_augmentation(c: ml_collections.ConfigDict) -> None:
  """Training augmentation after the crop."""
  # Random horizontal flip.
  c.flip = True
  # Photometric distortions. The paper only cites Andrew Howard's (2013)
  # and gives no parameters; these are TF-slim's Inception preprocessing
  # (Google's published version) plus AlexNet's lighting: brightness delta
  # (as a fraction of the pixel range), contrast and saturation factors in
  # [1 - s, 1 + s], hue shift (fraction of the colour circle), whose ranges
  # are TF-slim's, and AlexNet's PCA lighting noise (std of the
  # eigen-coefficients), which TF-slim lacks. TF-slim applies its four in one
  # of four fixed orders and clips once at the end; this pipeline draws any
  # order of the five and clips after each.
  c.distort_color = True
  c.brightness = 32.0 / 255.0
  c.contrast = 0.5
  c.saturation = 0.5
  c.hue = 0.2
  c.lighting = 0.1
  # Resize with an interpolation drawn uniformly from bilinear, area, nearest
  # and bicubic (the paper); False always uses data.interpolation (bicubic
  # is flax's examples/imagenet's).
  c.random_interpolation = True
  c.interpolation = 'bilinear'
  # Whether training crops are resized with tf.image.resize's antialias=True
  # filters. False (TF's default, what TF-slim's inception_preprocessing and
  # flax's examples/imagenet train with): bilinear and bicubic read 2 and 4
  # pixels per axis at any scale, no low-pass when shrinking, and cost a
  # fraction of the antialiased resample. True: antialiased bilinear and
  # bicubic (PIL's filters, equal to TF's), large JPEG crops decoded at a
  # reduced scale first. Area and nearest are the same either way. Evaluation
  # (1, 10 and 144 crops) and `predict` antialias whatever this says: one
  # resize per image, as torchvision's PIL-based evaluation does.
  c.antialias = False


def _normalization(c: ml_collections.ConfigDict) -> None:
  """The input scale, for training and evaluation."""
  # 'caffe' (0-255 minus the ImageNet mean: bvlc_googlenet's input, the scale
  # its LRN constants assume; the configs' default wherever model.norm is
  # 'lrn'), 'imagenet' (subtract the ImageNet mean, divide by its std, per
  # channel: what torchvision's weights expect), 'minus_one_one' ([-1, 1]) or
  # 'none' ([0, 1]). See `normalization.normalize`.
  c.normalization = 'imagenet'


def _evaluation(c: ml_collections.ConfigDict) -> None:
  """The evaluation crops."""
  # Crops per evaluation image: 1 (center), 10 (4 corners + center, each
  # mirrored) or 144 (the paper's scheme).
  c.eval_crops = 1
  # The center crop covers this fraction of the shorter side (224/256: the
  # shorter side resized to 256, then a 224 center crop). The 10-crop scheme
  # resizes the shorter side to image_size / eval_crop_fraction.
  c.eval_crop_fraction = 0.875


# data.worker_count's "as many as the host can give".
AUTO_WORKERS = -1


def usable_cores() -> int:
  """The cores this process may run on (a container's or taskset's share,
  not the machine's count)."""
  try:
    return len(os.sched_getaffinity(0))
  except AttributeError:  # Not Linux.
    return os.cpu_count() or 1


def resolve_worker_count(worker_count: int, backend: str,
                         cores: Optional[int] = None) -> Tuple[int, str]:
  """grain worker processes for ``data.worker_count``, and why.

  AUTO_WORKERS gives the host's usable cores less what the training step
  needs of them: on an accelerator one core (the loop that dispatches steps
  and copies batches), on a CPU-only run half of them (the step itself
  computes there). Any other value is taken as given.
  """
  if worker_count != AUTO_WORKERS:
    if worker_count < 0:
      raise ValueError(f'data.worker_count={worker_count}: use 0 (no worker '
                       f'processes), a positive count, or {AUTO_WORKERS} '
                       '(as many as the host can give).')
    return worker_count, f'data.worker_count={worker_count}'
  cores = cores or usable_cores()
  if backend == 'cpu':
    count, kept = cores // 2, 'half of them for the CPU-only step'
  else:
    count, kept = cores - 1, f'one for the loop that feeds the {backend}'
  return count, (f'data.worker_count=auto: {count} grain worker processes '
                 f'({cores} usable cores, {kept})')


def _robustness_and_throughput(c: ml_collections.ConfigDict) -> None:
  """Corrupt files, the decoded cache, workers and reading."""
  # image_folder: 'skip' reports and drops files that do not decode when the
  # data set is prepared; 'error' stops with their list.
  c.on_corrupt = 'skip'
  # image_folder: 'auto' decodes every image once, into a cache next to the
  # prepared records, and trains from the uint8 pixels (as Fashion-MNIST's
  # records are) when all splits' decoded pixels are estimated to take at
  # most 2 GiB (`decoded_cache.AUTO_MAX_BYTES`: small images, or few);
  # otherwise, and with 'never', every step decodes the encoded bytes (a
  # JPEG only its crop). 'always' caches whatever the size. Same order and
  # random draws either way, pixels equal to PIL's and TensorFlow's
  # bilinear resizes' 1e-3 on [0, 255]; see `decoded_cache`.
  c.cache_decoded = 'auto'
  # grain worker processes per host; 0 preprocesses in the main process;
  # AUTO_WORKERS (-1): what the host can give (`resolve_worker_count`),
  # printed at start-up.
  c.worker_count = 0
  # Batches each worker prepares ahead of the consumer.
  c.worker_buffer_size = 2
  # grain's record-reading threads and their read-ahead, per process. Reading
  # a record from local disk is cheap next to decoding it, and grain's
  # defaults (16 and 500) cost more in thread hand-offs than they save (see
  # WORKSPACE.md, "Input pipeline throughput"). Raise both for records on
  # remote storage.
  c.read_threads = 1
  c.read_buffer_size = 16
