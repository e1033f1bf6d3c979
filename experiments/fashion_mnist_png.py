r"""Fashion-MNIST written out as a PNG image folder, from Debian's IDX files.

  python -m experiments.fashion_mnist_png --out=data/fashion_mnist_png

Writes ``OUT/{train,test}/<class name>/<index>.png``: 28x28 greyscale PNGs
(lossless, so the pixels are the IDX files' own), ``<index>`` the image's
position in the original file. Class names are Fashion-MNIST's, with the
``/`` of ``T-shirt/top`` written as ``-``. The folder is what
``configs/image_folder.py:root=OUT`` trains on, to compare a user's own
images path with the native ``configs/fashion_mnist.py``
(experiments/results/image_folder_vs_native.md).
"""

from __future__ import annotations

import json
import os
from typing import Dict, Optional, Sequence

from absl import flags
from PIL import Image

from inception_jax import cli
from inception_jax.data import fashion_mnist


def folder_name(class_name: str) -> str:
  return class_name.replace('/', '-')


def write_png_folder(out: str, idx_dir: str,
                     limit: Optional[int] = None) -> Dict[str, int]:
  """Writes the split folders; returns images written per split.

  ``limit`` keeps the first ``limit`` images of each split (for a quick
  look, or a test). Existing files are overwritten.
  """
  if not fashion_mnist.idx_files_present(idx_dir):
    raise ValueError(f'no Fashion-MNIST IDX files in {idx_dir}; install '
                     "Debian's dataset-fashion-mnist or set --idx_dir.")
  counts = {}
  for split, (images_file, labels_file) in fashion_mnist.IDX_FILES.items():
    images = fashion_mnist.read_idx(os.path.join(idx_dir, images_file))
    labels = fashion_mnist.read_idx(os.path.join(idx_dir, labels_file))
    if limit is not None:
      images, labels = images[:limit], labels[:limit]
    for name in fashion_mnist.CLASS_NAMES:
      os.makedirs(os.path.join(out, split, folder_name(name)), exist_ok=True)
    for i, (image, label) in enumerate(zip(images, labels)):
      name = folder_name(fashion_mnist.CLASS_NAMES[label])
      Image.fromarray(image, 'L').save(
          os.path.join(out, split, name, f'{i:05d}.png'))
    counts[split] = len(images)
  return counts


def main(argv: Sequence[str]) -> None:
  del argv
  f = flags.FLAGS
  counts = write_png_folder(f.out, f.idx_dir, f.limit)
  print(json.dumps({'out': f.out, **counts}))


def define_flags() -> None:
  cli.DEFINE_path('out', None, 'Folder to write (created).', required=True)
  cli.DEFINE_path('idx_dir', '/usr/share/datasets/fashion-mnist',
                  "Debian's Fashion-MNIST IDX files (*-ubyte.gz).")
  flags.DEFINE_integer('limit', None, 'Only the first N images of each split.')


if __name__ == '__main__':
  cli.run(main, define_flags)
