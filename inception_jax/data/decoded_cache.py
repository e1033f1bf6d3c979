"""An image folder's pixels decoded once, kept next to its prepared records.

An image folder's records hold encoded bytes (JPEG, PNG), which suits photos:
training decodes only its crop. For small images the decode is most of an
example's cost, paid again every epoch, so when the decoded pixels fit a
budget they are decoded once and read as uint8 arrays, as Fashion-MNIST's
records are.

Where the cache lives: two files per split in the prepared data set's own
directory (``decoded_v1_<split>.pixels``: every image's uint8 pixels, back
to back; ``decoded_v1_<split>.index.npy``: offset, height, width, channels
and label per record), memory-mapped when read. Chosen over a copy in each
process's memory because it is built once, like the prepared records (a
restart, `evaluate` and every later run start at once); grain's worker
processes unpickle only the paths and share the pages through the page
cache instead of each receiving a copy; and the folder's fingerprint names
the directory, so adding or removing images builds a fresh cache with the
fresh records.

The cache changes no random draw and no order: records keep their indices
(a split expression such as ``train[:90%]`` maps onto the same records of
the cached split), the grain sampler and its per-record generators are
untouched, and `CachedImages` samples with the encoded path's geometry
(pad-and-crop at the model's size). Pixels are those the encoded path
decodes (the same TensorFlow decoder, whole image, then the box sliced);
grey images are stored with one channel and replicated to RGB after the
resize, as the encoded path's identical channels would be; both resize
with the same `preprocess.resample`. One difference remains: for a JPEG
with subsampled chroma (most photos) the encoded path's fused
decode-and-crop upsamples the chroma at the crop's edge without the pixels
beyond it, so the crop's last column or row can differ from the whole
image's decode, which is what the cache holds.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Dict, List, Tuple

from absl import logging
import numpy as np
import tensorflow_datasets as tfds

from inception_jax.data import preprocess

MODES = ('auto', 'always', 'never')
# 'auto' caches when the decoded pixels of all splits are estimated to take
# at most this many bytes (as 3-channel uint8; grey images take a third).
AUTO_MAX_BYTES = 2 << 30
# Records decoded to estimate the decoded size, spread over each split.
_ESTIMATE_SAMPLE = 64
_VERSION = 'decoded_v1'
_READ_CHUNK = 1024


@dataclasses.dataclass(frozen=True)
class CachedImages(preprocess.DecodedArrays):
  """Decoded arrays standing in for encoded records.

  Stored pixels, but sampled as the encoded records are (a pad-and-crop at
  the model's size), so an example gets the encoded path's draws.
  """
  pad_after_resize = True


def check_mode(mode: str) -> str:
  if mode not in MODES:
    raise ValueError(f'data.cache_decoded must be one of {", ".join(MODES)}, '
                     f'got {mode!r}.')
  return mode


def cache_files(builder, split: str) -> Tuple[str, str]:
  """The pixels and index files of ``split``'s cache."""
  stem = os.path.join(os.fspath(builder.data_dir), f'{_VERSION}_{split}')
  return stem + '.pixels', stem + '.index.npy'


def is_local(builder) -> bool:
  """Whether the prepared data is on a local disk (memory-mappable)."""
  return '://' not in os.fspath(builder.data_dir)


def _encoded_source(builder, split: str):
  return builder.as_data_source(
      split=split, decoders={'image': tfds.decode.SkipDecoding()})


def decode_record(encoded: bytes) -> np.ndarray:
  """uint8 [H, W, C] as the encoded path decodes it; C is 1 for grey."""
  image = np.asarray(preprocess.decode(encoded))
  if (image[..., :1] == image[..., 1:]).all():
    return image[..., :1]
  return image


def estimated_bytes(builder) -> int:
  """Decoded bytes of all splits, as RGB, from a sample of each split."""
  total = 0
  for split, info in builder.info.splits.items():
    source = _encoded_source(builder, split)
    n = info.num_examples
    picks = np.unique(np.linspace(0, n - 1, min(n, _ESTIMATE_SAMPLE))
                      .astype(int))
    pixels = [np.prod(preprocess.encoded_shape(source[int(i)]['image']))
              for i in picks]
    total += int(np.mean(pixels) * 3 * n)
  return total


def should_cache(builder, mode: str) -> bool:
  """Whether the image folder prepared by ``builder`` reads cached pixels."""
  check_mode(mode)
  if mode == 'never':
    return False
  if not is_local(builder):
    if mode == 'always':
      raise ValueError(f'data.cache_decoded=always needs the prepared data '
                       f'on a local disk, not {builder.data_dir}; set '
                       'data.cache_decoded=never or a local data.data_dir.')
    return False
  if mode == 'always':
    return True
  size = estimated_bytes(builder)
  if size > AUTO_MAX_BYTES:
    logging.info('image_folder: decoding per step: about %d MB decoded, over '
                 'the %d MB that data.cache_decoded=auto caches',
                 size >> 20, AUTO_MAX_BYTES >> 20)
    return False
  return True


def build(builder, split: str) -> None:
  """Decodes every record of ``split`` once into its cache files."""
  pixels_path, index_path = cache_files(builder, split)
  if os.path.exists(index_path):
    return
  source = _encoded_source(builder, split)
  index = np.zeros((len(source), 5), np.int64)
  # Temporary names, renamed when complete (the index last: its presence
  # marks a finished cache), so concurrent builders or a killed one never
  # leave a partial cache that looks whole.
  suffix = f'.tmp{os.getpid()}'
  offset = 0
  with open(pixels_path + suffix, 'wb') as f:
    # Records read in chunks: one read call per chunk, not per record.
    for start in range(0, len(source), _READ_CHUNK):
      keys = list(range(start, min(start + _READ_CHUNK, len(source))))
      for i, record in zip(keys, source.__getitems__(keys)):
        image = decode_record(record['image'])
        f.write(np.ascontiguousarray(image).tobytes())
        index[i] = (offset,) + image.shape + (record['label'],)
        offset += image.size
  os.replace(pixels_path + suffix, pixels_path)
  np.save(index_path + suffix, index)
  os.replace(index_path + suffix + '.npy', index_path)
  logging.info('image_folder: %d decoded images of split %s cached in %s '
               '(%.1f MB)', len(index), split, pixels_path, offset / 2**20)


def _record_positions(builder, split: str) -> List[Tuple[str, np.ndarray]]:
  """(base split, its record indices) that make up ``split``, in order.

  A split expression ('train[:90%]', 'train+val') reads file instructions
  (a shard file, records skipped and taken); each shard file belongs to one
  base split at a known offset.
  """
  where: Dict[str, Tuple[str, int]] = {}
  for name, info in builder.info.splits.items():
    offset = 0
    for instruction in info.file_instructions:
      where[os.fspath(instruction.filename)] = (name, offset)
      offset += instruction.examples_in_shard
  positions = []
  for instruction in builder.info.splits[split].file_instructions:
    name, offset = where[os.fspath(instruction.filename)]
    start = offset + instruction.skip
    indices = np.arange(start, start + instruction.take)
    if positions and positions[-1][0] == name:
      positions[-1] = (name, np.concatenate([positions[-1][1], indices]))
    else:
      positions.append((name, indices))
  return positions


class _SplitPixels:
  """One base split's cache files, memory-mapped on first use."""

  def __init__(self, pixels_path: str, index_path: str):
    self.pixels_path, self.index_path = pixels_path, index_path
    self._pixels = self._index = None

  def __getstate__(self):
    # Worker processes map the files themselves.
    return {'pixels_path': self.pixels_path, 'index_path': self.index_path}

  def __setstate__(self, state):
    self.__init__(state['pixels_path'], state['index_path'])

  def record(self, i: int):
    if self._index is None:
      self._index = np.load(self.index_path)
      self._pixels = (np.memmap(self.pixels_path, np.uint8, 'r')
                      if os.path.getsize(self.pixels_path) else
                      np.zeros(0, np.uint8))
    offset, height, width, channels, label = (int(v) for v in self._index[i])
    flat = self._pixels[offset:offset + height * width * channels]
    return {'image': flat.reshape(height, width, channels), 'label': label}


class DecodedSource:
  """Random access to a split's records with their pixels from the cache.

  Records are {'image': uint8 [H, W, C], 'label': int}, in the order (and
  with the labels) of the TFDS source over the same split.
  """

  def __init__(self, builder, split: str):
    self._parts = []
    for name, indices in _record_positions(builder, split):
      build(builder, name)
      self._parts.append((_SplitPixels(*cache_files(builder, name)), indices))
    self._starts = np.cumsum([0] + [len(p[1]) for p in self._parts])
    self._split = split

  def __len__(self) -> int:
    return int(self._starts[-1])

  def __getitem__(self, index: int):
    if not 0 <= index < len(self):
      raise IndexError(index)
    part = int(np.searchsorted(self._starts, index, side='right')) - 1
    pixels, indices = self._parts[part]
    return pixels.record(int(indices[index - int(self._starts[part])]))

  def __repr__(self) -> str:
    return f'DecodedSource(split={self._split!r}, records={len(self)})'
