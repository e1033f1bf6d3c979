"""A user's own images, ``root/<split>/<label>/*.jpg|jpeg|png``, as TFDS data.

The folder is checked and every file decoded once, when the data set is
prepared: files that are not images, or do not decode, are reported (each
path, then a count) and left out, so a bad file can never stop training deep
inside an epoch. The prepared ``array_record`` copy keeps the original
encoded bytes (JPEG stays JPEG, so training can decode just its crop). Its
location depends on a fingerprint of the file listing, so adding or removing
images prepares a fresh copy. `median_shorter_side` measures the images for
configs/image_folder.py's choice of recipe, when the run prepares its data.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
import statistics
from typing import Dict, List, Optional, Tuple

from absl import logging
from PIL import Image
import tensorflow_datasets as tfds

from inception_jax.data import config as config_lib

IMAGE_EXTENSIONS = config_lib.IMAGE_EXTENSIONS
LAYOUT = 'root/<split>/<label>/*.jpg|jpeg|png'
_SPLIT_NAME = re.compile(r'^[A-Za-z0-9_]+$')


@dataclasses.dataclass
class FolderListing:
  """What is under the root, before any decoding."""
  root: str
  class_names: List[str]
  # split -> [(path, label index)] of files with an image extension.
  files: Dict[str, List[Tuple[str, int]]]
  # Files in the right place but without an image extension.
  other_files: List[str]
  # Identifies the listing (names, labels, sizes); see `fingerprint`.
  fingerprint: str = ''


def fingerprint(root: str, files: Dict[str, List[Tuple[str, int]]]) -> str:
  """A short hash of every file's place, label and size."""
  digest = hashlib.sha256()
  for split in sorted(files):
    for path, label in files[split]:
      digest.update(f'{os.path.relpath(path, root)}|{label}|'
                    f'{os.path.getsize(path)}\n'.encode())
  return digest.hexdigest()[:16]


def _layout_error(root: str, problem: str) -> ValueError:
  return ValueError(f'image_folder {root}: {problem}; expected {LAYOUT}.')


def list_folder(root: str) -> FolderListing:
  """Lists splits, classes and candidate files; ValueError if malformed."""
  if not root:
    raise ValueError(f'data.root is not set; image_folder expects {LAYOUT}.')
  root = os.path.abspath(os.path.expanduser(root))
  if not os.path.isdir(root):
    raise _layout_error(root, 'no such directory')
  splits = sorted(d for d in os.listdir(root)
                  if os.path.isdir(os.path.join(root, d))
                  and not d.startswith('.'))
  if not splits:
    raise _layout_error(root, 'no split folders')
  bad = [s for s in splits if not _SPLIT_NAME.match(s)]
  if bad:
    raise _layout_error(root, f'split folder names must be letters, digits '
                        f'or _, got {bad[0]!r}')
  labels_per_split = {}
  for split in splits:
    split_dir = os.path.join(root, split)
    labels = sorted(d for d in os.listdir(split_dir)
                    if os.path.isdir(os.path.join(split_dir, d))
                    and not d.startswith('.'))
    if not labels:
      raise _layout_error(split_dir, 'no label folders')
    labels_per_split[split] = labels
  class_names = sorted(set().union(*labels_per_split.values()))
  index = {name: i for i, name in enumerate(class_names)}
  files, other = {}, []
  for split in splits:
    files[split] = []
    for label in labels_per_split[split]:
      label_dir = os.path.join(root, split, label)
      for name in sorted(os.listdir(label_dir)):
        path = os.path.join(label_dir, name)
        if not os.path.isfile(path):
          continue
        if name.lower().endswith(IMAGE_EXTENSIONS):
          files[split].append((path, index[label]))
        else:
          other.append(path)
    if not files[split]:
      raise _layout_error(os.path.join(root, split), 'no image files')
  return FolderListing(root, class_names, files, other,
                       fingerprint(root, files))


def decodes(path: str) -> bool:
  """Whether the file decodes as an image with the decoder training uses."""
  # TensorFlow is imported here, not with the module: the trainer imports
  # this module on every data set, and TF takes 2-3 s to import.
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  try:
    with open(path, 'rb') as f:
      data = f.read()
    image = tf.io.decode_image(data, channels=3, expand_animations=False)
    return image.shape[0] > 0 and image.shape[1] > 0
  except (tf.errors.InvalidArgumentError, tf.errors.UnknownError, OSError):
    return False


def median_shorter_side(root: str, sample: int = 32) -> Optional[float]:
  """Median shorter side, in pixels, of up to ``sample`` training images.

  Reads only the images' headers, spread over the classes of
  ``root/train``; None when there is no such folder or no image opens (the
  layout and corrupt files are reported when the data set is prepared).
  """
  train = os.path.join(os.path.expanduser(root), 'train')
  try:
    classes = sorted(os.listdir(train))
  except OSError:
    return None
  sides = []
  for label in classes:
    folder = os.path.join(train, label)
    if not os.path.isdir(folder):
      continue
    names = sorted(n for n in os.listdir(folder)
                   if n.lower().endswith(IMAGE_EXTENSIONS))
    for name in names[:max(1, sample // max(1, len(classes)))]:
      try:
        with Image.open(os.path.join(folder, name)) as image:
          sides.append(min(image.size))
      except OSError:
        continue
    if len(sides) >= sample:
      break
  return statistics.median(sides) if sides else None


def check_files(listing: FolderListing, on_corrupt: str
                ) -> Tuple[Dict[str, List[Tuple[str, int]]], List[str]]:
  """Decodes every candidate; returns the good files and the skipped paths."""
  good, skipped = {}, list(listing.other_files)
  for split, entries in listing.files.items():
    good[split] = []
    for path, label in entries:
      if decodes(path):
        good[split].append((path, label))
      else:
        skipped.append(path)
  total = sum(len(e) for e in listing.files.values()) + len(
      listing.other_files)
  for path in skipped:
    logging.warning('image_folder: skipping %s (not a decodable '
                    'jpg/jpeg/png image)', path)
  summary = (f'image_folder {listing.root}: {len(skipped)} of {total} files '
             'skipped (not decodable jpg/jpeg/png images)')
  logging.info(summary)
  if skipped:
    print(summary)
    if on_corrupt == 'error':
      raise ValueError(f'{summary}, first: {skipped[0]}; set '
                       'data.on_corrupt=skip to leave them out.')
  for split, entries in good.items():
    if not entries:
      raise _layout_error(os.path.join(listing.root, split),
                          'no decodable image files')
  return good, skipped


class ImageFolderRecords(tfds.core.GeneratorBasedBuilder):
  """TFDS builder over one image folder; one config per folder fingerprint."""

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'Encoded bytes of every decodable image.'}
  BUILDER_CONFIGS = []

  def __init__(self, *, listing: FolderListing, on_corrupt: str = 'skip',
               **kwargs):
    self._listing = listing
    self._on_corrupt = on_corrupt
    self.skipped_files: List[str] = []
    kwargs['config'] = tfds.core.BuilderConfig(
        name='folder_' + listing.fingerprint)
    super().__init__(**kwargs)

  # TFDS pickles a builder as its base-class arguments; grain's worker
  # processes unpickle the data source, so the listing must travel too.
  def __getstate__(self):
    return {**super().__getstate__(), 'listing': self._listing,
            'on_corrupt': self._on_corrupt}

  def __setstate__(self, state):
    self.__init__(listing=state['listing'], on_corrupt=state['on_corrupt'],
                  **state['_original_state'])

  def _info(self) -> tfds.core.DatasetInfo:
    return self.dataset_info_from_configs(
        features=tfds.features.FeaturesDict({
            'image': tfds.features.Image(),
            'label': tfds.features.ClassLabel(
                names=self._listing.class_names),
            'file_name': tfds.features.Text(),
        }),
        supervised_keys=('image', 'label'),
        description=f'Images under {self._listing.root}.',
    )

  def _split_generators(self, dl_manager):
    del dl_manager
    good, self.skipped_files = check_files(self._listing, self._on_corrupt)
    return {split: self._generate_examples(entries)
            for split, entries in good.items()}

  def _generate_examples(self, entries):
    for path, label in entries:
      relative = os.path.relpath(path, self._listing.root)
      # Passing the path stores the file's bytes unchanged.
      yield relative, {'image': path, 'label': label, 'file_name': relative}
