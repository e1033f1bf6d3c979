"""ILSVRC 2012 through TFDS's own ``imagenet2012`` builder.

ImageNet cannot be downloaded by a script: the user fetches the archives
from image-net.org and puts them in the manual directory. Before handing
over to TFDS this checks they are there, so the error names the exact files
and folder instead of surfacing as a TFDS assertion.
"""

from __future__ import annotations

import os
from typing import Optional

import tensorflow_datasets as tfds

ARCHIVES = ('ILSVRC2012_img_train.tar', 'ILSVRC2012_img_val.tar')


def default_manual_dir(data_dir: Optional[str]) -> str:
  """TFDS's default: <data_dir>/downloads/manual."""
  data_dir = data_dir or os.path.join('~', 'tensorflow_datasets')
  return os.path.join(os.path.expanduser(data_dir), 'downloads', 'manual')


def prepare(data_dir: Optional[str], manual_dir: Optional[str],
            file_format: str = 'array_record') -> tfds.core.DatasetBuilder:
  """Returns the prepared builder, preparing it from the archives if needed."""
  builder = tfds.builder('imagenet2012', data_dir=data_dir,
                         file_format=file_format)
  if builder.is_prepared():
    return builder
  manual_dir = os.path.abspath(os.path.expanduser(
      manual_dir or default_manual_dir(data_dir)))
  missing = [name for name in ARCHIVES
             if not os.path.isfile(os.path.join(manual_dir, name))]
  if missing:
    raise ValueError(
        f'imagenet2012 is not prepared in {builder.data_dir} and '
        f'{" and ".join(missing)} {"is" if len(missing) == 1 else "are"} '
        f'missing: download {", ".join(ARCHIVES)} from '
        f'https://image-net.org/ and put them in {manual_dir} (or set '
        'data.manual_dir).')
  builder.download_and_prepare(
      download_config=tfds.download.DownloadConfig(manual_dir=manual_dir))
  return builder
