"""Which data set, prepared where, and random access to its splits.

Every data set ends up as a TFDS data set in the ``array_record`` format,
whose ``as_data_source`` gives the random access by index that grain needs
for a shuffled, sharded and exactly resumable order. `RECORD_FORMATS` says,
once per data set, whether its records hold encoded image bytes or decoded
arrays; nothing else in the pipeline looks at the data set's name. An image
folder whose decoded pixels fit a budget is read from a decoded cache
instead (`data.cache_decoded`, see `decoded_cache`). `resolve_config` makes
the choices a training config leaves to its data.
"""

from __future__ import annotations

import dataclasses
import os
from typing import List, Optional, Tuple

import ml_collections
import tensorflow_datasets as tfds

from inception_jax import config as training_config
from inception_jax.data import config as config_lib
from inception_jax.data import decoded_cache
from inception_jax.data import fashion_mnist
from inception_jax.data import image_folder
from inception_jax.data import imagenet
from inception_jax.data import preprocess

FILE_FORMAT = 'array_record'

# ImageNet and image folders keep their JPEG (or PNG) bytes, so training
# decodes only its crop; Fashion-MNIST's 28x28 PNGs are decoded by TFDS.
RECORD_FORMATS = {
    'fashion_mnist': preprocess.DecodedArrays(),
    'imagenet2012': preprocess.EncodedImages(),
    'image_folder': preprocess.EncodedImages(),
}


@dataclasses.dataclass
class DatasetInfo:
  name: str
  num_classes: int
  class_names: List[str]
  num_train: int


def _data_dir(data_cfg) -> Optional[str]:
  return os.path.expanduser(data_cfg.data_dir) if data_cfg.data_dir else None


# Prepared builders of this process, so that creating the train and eval
# iterators does not list (and fingerprint) an image folder again each time.
_PREPARED = {}


def prepare_builder(data_cfg) -> tfds.core.DatasetBuilder:
  """The prepared TFDS builder of ``data_cfg.name`` (prepares it if needed)."""
  key = (data_cfg.name, data_cfg.data_dir, data_cfg.manual_dir,
         data_cfg.root, data_cfg.fashion_mnist_dir, data_cfg.on_corrupt)
  if key not in _PREPARED:
    _PREPARED[key] = _prepare_builder(data_cfg)
  return _PREPARED[key]


def _prepare_builder(data_cfg) -> tfds.core.DatasetBuilder:
  name = data_cfg.name
  data_dir = _data_dir(data_cfg)
  if name == 'fashion_mnist':
    if fashion_mnist.idx_files_present(data_cfg.fashion_mnist_dir):
      builder = fashion_mnist.FashionMnistDebian(
          idx_dir=data_cfg.fashion_mnist_dir, data_dir=data_dir,
          file_format=FILE_FORMAT)
    else:  # TFDS's own download, where the internet is reachable.
      builder = tfds.builder('fashion_mnist', data_dir=data_dir,
                             file_format=FILE_FORMAT)
    if not builder.is_prepared():
      builder.download_and_prepare()
    return builder
  if name == 'imagenet2012':
    return imagenet.prepare(data_dir, data_cfg.manual_dir, FILE_FORMAT)
  if name == 'image_folder':
    if data_cfg.on_corrupt not in ('skip', 'error'):
      raise ValueError(f'data.on_corrupt must be skip or error, got '
                       f'{data_cfg.on_corrupt!r}.')
    builder = image_folder.ImageFolderRecords(
        listing=image_folder.list_folder(data_cfg.root),
        on_corrupt=data_cfg.on_corrupt, data_dir=data_dir,
        file_format=FILE_FORMAT)
    if not builder.is_prepared():
      builder.download_and_prepare()
    return builder
  raise ValueError(f'Unknown data.name {name!r}; expected one of '
                   f'{", ".join(config_lib.DATASET_NAMES)}.')


def resolve_config(
    config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """A training config with what it leaves to the data decided.

  configs/image_folder.py leaves its recipe to the images' size
  (`training_config.by_image_size`): the median shorter side of up to 32
  training images is read here, when the run prepares its data, never while
  a config loads. Any other config comes back as it is.
  """
  if 'by_image_size' not in config:
    return config
  root = config.data.root
  side = image_folder.median_shorter_side(root) if root else None
  return training_config.choose_by_image_size(config, side)


def _splits(data_cfg, builder) -> Tuple[str, str]:
  available = list(builder.info.splits)
  train = data_cfg.train_split or 'train'
  if data_cfg.eval_split:
    eval_split = data_cfg.eval_split
  else:
    eval_split = next((s for s in ('validation', 'val', 'test')
                       if s in available), None)
    if eval_split is None:
      raise ValueError(f'{data_cfg.name} has no validation/val/test split '
                       f'(it has {", ".join(available)}); set '
                       'data.eval_split.')
  return train, eval_split


def _check_split(builder, data_cfg, split: str) -> None:
  # Split expressions such as 'train[:90%]' are TFDS's to parse.
  base = split.split('[')[0].split('+')[0]
  if base not in builder.info.splits:
    raise ValueError(f'{data_cfg.name} has no split {split!r}; it has '
                     f'{", ".join(builder.info.splits)}.')


def _num_examples(builder, split: str) -> int:
  return builder.info.splits[split].num_examples


def get_dataset_info(data_cfg) -> DatasetInfo:
  """Prepares the data set if needed and describes it."""
  builder = prepare_builder(data_cfg)
  train, eval_split = _splits(data_cfg, builder)
  label = builder.info.features['label']
  for split in (train, eval_split):
    _check_split(builder, data_cfg, split)
  return DatasetInfo(
      name=data_cfg.name, num_classes=label.num_classes,
      class_names=list(label.names), num_train=_num_examples(builder, train))


# Whether each prepared image folder reads decoded pixels, decided once per
# process (the decision samples records) and shared by all of its splits.
_CACHED = {}


def uses_decoded_cache(data_cfg) -> bool:
  """Whether ``data_cfg``'s records come from the decoded cache.

  Only image folders are cached: ImageNet's JPEGs are far over any memory
  budget, and Fashion-MNIST's records are decoded arrays already.
  """
  mode = decoded_cache.check_mode(data_cfg.cache_decoded)
  if data_cfg.name != 'image_folder' or mode == 'never':
    return False
  builder = prepare_builder(data_cfg)
  key = (os.fspath(builder.data_dir), mode)
  if key not in _CACHED:
    _CACHED[key] = decoded_cache.should_cache(builder, mode)
  return _CACHED[key]


def record_format(data_cfg):
  """How ``data_cfg.name``'s records hold their image (see RECORD_FORMATS)."""
  if data_cfg.name not in RECORD_FORMATS:
    raise ValueError(f'Unknown data.name {data_cfg.name!r}; expected one of '
                     f'{", ".join(config_lib.DATASET_NAMES)}.')
  if uses_decoded_cache(data_cfg):
    return decoded_cache.CachedImages()
  return RECORD_FORMATS[data_cfg.name]


def data_source(data_cfg, split: str):
  """Random access to ``split``: records {'image', 'label', ...}, the image
  as `record_format` says."""
  builder = prepare_builder(data_cfg)
  _check_split(builder, data_cfg, split)
  if uses_decoded_cache(data_cfg):
    return decoded_cache.DecodedSource(builder, split)
  decoders = None
  if record_format(data_cfg).encoded:
    decoders = {'image': tfds.decode.SkipDecoding()}
  return builder.as_data_source(split=split, decoders=decoders)


def resolve_splits(data_cfg) -> Tuple[str, str]:
  return _splits(data_cfg, prepare_builder(data_cfg))
