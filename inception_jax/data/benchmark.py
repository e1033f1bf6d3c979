"""How fast the training input pipeline runs on this host's CPUs.

  python -m inception_jax.data.benchmark --dataset=jpeg --num_batches=20
  python -m inception_jax.data.benchmark --dataset=fashion_mnist \\
      --image_size=64 --num_batches=50
  python -m inception_jax.data.benchmark --dataset=folder_vs_native \\
      --root=FOLDER --image_size=32 --batch_size=128

``jpeg`` writes synthetic photos of about 500x375 (the ImageNet average) as
an image folder and times the ImageNet training path on them: fused JPEG
decode-and-crop, random interpolation, flip, colour distortions.
``fashion_mnist`` times the bundled run's preprocessing (that of
configs/fashion_mnist.py) on the prepared Fashion-MNIST. ``image_folder``
times the same preprocessing on the image folder ``--root`` (small images:
what configs/image_folder.py sets for them), its records read as
``--cache_decoded`` says. ``folder_vs_native`` times, in one process and
taking turns for ``--rounds`` rounds so that the machine's load falls on
all alike, the native Fashion-MNIST records and the folder ``--root``
(experiments/fashion_mnist_png.py writes Fashion-MNIST as one) both from its
decoded cache and decoded per step; each figure is the median of its rounds.
The last line printed is JSON with images/s, the worker processes used and
images/s per CPU core, plus images per CPU-second of the whole process (all
threads) when there are no workers, the figure that says how many cores a
given accelerator throughput needs.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from typing import Sequence

from absl import flags
import numpy as np
from PIL import Image

from inception_jax import cli
from inception_jax.data import config as config_lib
from inception_jax.data import datasets
from inception_jax.data import pipeline


def synthetic_photo(rng: np.random.Generator, height: int = 375,
                    width: int = 500) -> Image.Image:
  """Smooth colour fields plus texture: JPEG sizes like real photos."""
  y, x = np.mgrid[0:height, 0:width].astype(np.float32)
  channels = []
  for _ in range(3):
    fx, fy, phase = rng.uniform(0.005, 0.05, 2).tolist() + [rng.uniform(0, 6.3)]
    channels.append(np.sin(x * fx + phase) * np.cos(y * fy) * 80 + 128)
  image = np.stack(channels, -1) + rng.normal(0, 12, (height, width, 3))
  return Image.fromarray(np.clip(image, 0, 255).astype(np.uint8))


def write_jpeg_folder(root: str, num_images: int, num_classes: int = 4,
                      seed: int = 0) -> int:
  """Writes root/{train,val}/<class>/*.jpg; returns mean JPEG bytes."""
  rng = np.random.default_rng(seed)
  sizes = []
  for split, count in (('train', num_images), ('val', num_classes)):
    for i in range(count):
      label_dir = os.path.join(root, split, f'class_{i % num_classes}')
      os.makedirs(label_dir, exist_ok=True)
      path = os.path.join(label_dir, f'{i:06d}.jpg')
      synthetic_photo(rng).save(path, quality=90)
      sizes.append(os.path.getsize(path))
  return int(np.mean(sizes))


def run(data_cfg, batch_size: int, num_batches: int) -> dict:
  """Times ``num_batches`` training batches after one warm-up batch."""
  it = pipeline.create_train_iterator(data_cfg, global_batch_size=batch_size,
                                      seed=0, process_index=0,
                                      process_count=1)
  next(it)  # Starts workers, opens files, warms TF's kernels.
  cpu0, wall0 = time.process_time(), time.perf_counter()
  for _ in range(num_batches):
    next(it)
  wall = time.perf_counter() - wall0
  cpu = time.process_time() - cpu0
  images = batch_size * num_batches
  cores = max(1, data_cfg.worker_count)
  result = {
      'images_per_s': round(images / wall, 1),
      'workers': data_cfg.worker_count,
      'cores_assumed': cores,
      'images_per_s_per_core': round(images / wall / cores, 1),
      'seconds': round(wall, 2),
      'images': images,
  }
  if data_cfg.worker_count == 0:
    # All threads of this process (TF kernels may use several).
    result['images_per_cpu_s'] = round(images / cpu, 1)
  return result


def benchmark_config(dataset: str, image_size: int, worker_count: int,
                     root: str = None, cache_decoded: str = 'auto'):
  """The data config timed: the paper's recipe for ``jpeg``, the bundled
  run's (configs/fashion_mnist.py) for ``fashion_mnist`` and for
  ``image_folder`` (configs/image_folder.py's for small images)."""
  cfg = config_lib.default_config()
  cfg.image_size = image_size
  cfg.worker_count = worker_count
  if dataset == 'jpeg':
    cfg.name = 'image_folder'
  else:
    cfg.name = dataset
    cfg.update(crop='random_resized', distort_color=False,
               random_interpolation=False, eval_crop_fraction=1.0)
  if dataset == 'image_folder':
    if not root:
      raise ValueError(f'--dataset={dataset} needs --root=FOLDER (an image '
                       'folder root/<split>/<label>/*).')
    cfg.update(root=root, cache_decoded=cache_decoded)
  return cfg


# folder_vs_native's contenders: (name, data set, data.cache_decoded).
CONTENDERS = (('fashion_mnist', 'fashion_mnist', 'auto'),
              ('image_folder_cached', 'image_folder', 'always'),
              ('image_folder_decoded_per_step', 'image_folder', 'never'))


def folder_vs_native(f, data_dir: str) -> dict:
  """Times the contenders in turns; the median images/s of each."""
  configs = {}
  for name, dataset, cache in CONTENDERS:
    cfg = benchmark_config(dataset, f.image_size, f.worker_count, f.root,
                           cache)
    cfg.data_dir = data_dir
    datasets.prepare_builder(cfg)
    configs[name] = cfg
  rounds = {name: [] for name in configs}
  for _ in range(f.rounds):
    for name, cfg in configs.items():
      rounds[name].append(run(cfg, f.batch_size, f.num_batches))
  result = {}
  for name, runs in rounds.items():
    speeds = [r['images_per_s'] for r in runs]
    result[name] = {'images_per_s': float(np.median(speeds)),
                    'rounds_images_per_s': speeds,
                    'images_per_cpu_s': float(np.median(
                        [r.get('images_per_cpu_s', 0) for r in runs]))}
  native = result['fashion_mnist']['images_per_s']
  for name in result:
    result[name]['vs_native'] = round(result[name]['images_per_s'] / native,
                                      3)
  return result


def main(argv: Sequence[str]) -> None:
  del argv
  f = flags.FLAGS
  with tempfile.TemporaryDirectory() as tmp:
    data_dir = f.data_dir or os.path.join(tmp, 'tfds')
    if f.dataset == 'folder_vs_native':
      if not f.root:
        raise ValueError('--dataset=folder_vs_native needs --root=FOLDER '
                         '(experiments/fashion_mnist_png.py writes one).')
      result = {'contenders': folder_vs_native(f, data_dir),
                'rounds': f.rounds, 'num_batches': f.num_batches}
      result.update(dataset=f.dataset, image_size=f.image_size,
                    batch_size=f.batch_size, cpu_count=os.cpu_count())
      print(json.dumps(result))
      return
    cfg = benchmark_config(f.dataset, f.image_size, f.worker_count, f.root,
                           f.cache_decoded)
    cfg.data_dir = data_dir
    extra = {}
    if f.dataset == 'jpeg':
      cfg.root = os.path.join(tmp, 'images')
      extra['mean_jpeg_bytes'] = write_jpeg_folder(cfg.root, f.num_images)
      extra['jpeg_shape'] = [375, 500]
    datasets.prepare_builder(cfg)
    if cfg.name == 'image_folder':
      extra['cached'] = datasets.uses_decoded_cache(cfg)
    result = run(cfg, f.batch_size, f.num_batches)
  result.update(dataset=f.dataset, image_size=cfg.image_size,
                batch_size=f.batch_size, cpu_count=os.cpu_count(), **extra)
  print(json.dumps(result))


def define_flags() -> None:
  flags.DEFINE_enum('dataset', 'jpeg', ['jpeg', 'fashion_mnist',
                                        'image_folder', 'folder_vs_native'],
                    'Which pipeline to time.')
  flags.DEFINE_integer('num_batches', 20, 'Batches timed (per round).')
  flags.DEFINE_integer('batch_size', 64, 'Images per batch.')
  flags.DEFINE_integer('image_size', 224, 'Model input side.')
  flags.DEFINE_integer('worker_count', 0,
                       'grain worker processes (0: main process).')
  flags.DEFINE_integer('num_images', 200,
                       'JPEGs generated for --dataset=jpeg.')
  cli.DEFINE_path('root', None, 'The image folder for --dataset=image_folder '
                  'and folder_vs_native.')
  flags.DEFINE_enum('cache_decoded', 'auto', ['auto', 'always', 'never'],
                    'data.cache_decoded for --dataset=image_folder.')
  flags.DEFINE_integer('rounds', 3, 'Turns each contender takes, for '
                       '--dataset=folder_vs_native.')
  cli.DEFINE_path('data_dir', None,
                  'Where to prepare TFDS data (default: a temp dir).')


if __name__ == '__main__':
  cli.run(main, define_flags)
