r"""How fast the training input pipeline runs on this host's CPUs.

  python -m inception_jax.data.benchmark --dataset=jpeg --peer=tfdata
  python -m inception_jax.data.benchmark --dataset=jpeg --num_batches=20
  python -m inception_jax.data.benchmark --dataset=fashion_mnist \\
      --image_size=64 --num_batches=50
  python -m inception_jax.data.benchmark --dataset=folder_vs_native \\
      --root=FOLDER --image_size=32 --batch_size=128

``jpeg`` writes synthetic photos of about 500x375 (the ImageNet average) as
an image folder and times the ImageNet training path on them: fused JPEG
decode-and-crop, random interpolation, flip, colour distortions, the
records read as ``--cache_decoded`` says (``auto``, the default, reads so
few photos from the decoded cache: no JPEG decode per step; ``never``
decodes every step, as on ImageNet). ``fashion_mnist`` times the bundled
run's preprocessing (that of configs/fashion_mnist.py) on the prepared
Fashion-MNIST. ``image_folder`` times the same preprocessing on the image
folder ``--root`` (small images: what configs/image_folder.py sets for
them), its records read as ``--cache_decoded`` says. ``folder_vs_native``
times, in one process and taking turns for ``--rounds`` rounds so that the
machine's load falls on all alike, the native Fashion-MNIST records and the
folder ``--root`` (experiments/fashion_mnist_png.py writes Fashion-MNIST as
one) both from its decoded cache and decoded per step; each figure is the
median of its rounds. The last line printed is JSON with images/s, the
worker processes used and images/s per CPU core, plus images per
CPU-second of this process (all threads) and its grain workers, the figure
that says how many cores a given accelerator throughput needs.

``--peer=tfdata`` (``jpeg`` only) compares, on the same files, the tf.data
pipeline of flax's ``examples/imagenet`` (graph-mode
``decode_and_crop_jpeg`` of a ``sample_distorted_bounding_box`` crop of
8-100% of the area at 3:4 to 4:3, bicubic resize, flip, mean/std
normalisation, ``map(num_parallel_calls=AUTOTUNE)``), this project's path
doing the same work (no colour distortions, bicubic as TF's
``antialias=False``, flip) and with the paper's full augmentation (its host
part: the colour distortions run in the step; ``paper_device_part`` times
them there), both decoding the JPEGs every step as tf.data
does, each with every grain worker count of ``--peer_worker_counts`` (0:
all in the main process; tf.data has no worker processes, its threads are
counted either way), and only decoding the same JPEGs (the floor that no
preprocessing goes below). Its figure is what a host pays: images per
CPU-second of every process the pipeline runs on, start-up excluded. Each
timing runs in a fresh spawned process that pulls ``--warmup_batches``
(imports, the first batch's set-up, workers started, buffers filled; none
of it counted), then ``--num_batches`` over which the CPU of that process
(all threads) and of its descendants, live (read from /proc) or ended, is
summed; it then closes the pipeline, so its workers end and are reaped,
and exits, so no thread of it runs into the next timing. The pipelines
take turns ``--rounds`` times and each figure is the median of its rounds:
a burst of load from other jobs hits one round, not one pipeline, and the
median, unlike the best round, neither keeps the luckiest burst-free moment
nor favours the pipeline whose figures spread most. It prints a table and,
last, JSON with each figure and, per worker count, the ratios to tf.data
per CPU-second.

Earlier, all pipelines were timed in one process with ``time.process_time``
after one warm-up batch, each keeping its best round, and grain workers were
refused. Without workers that counted the same CPU (TF's threads are the
process's; a deleted tf.data iterator leaves no thread working; tf.data's
cost per image is flat from the second batch), so its ratios differ from
these by the load and by best against median; but it could not count
workers, which do nearly all the work when there are any (98% here).
Ratios of 1.4-1.8x (same work) and 0.9-1.0x (the paper's), which a count
over every process also gave, are those of this project's path reading the
decoded cache instead of decoding JPEGs: another workload (figures in
experiments/results/benchmarks.md).
"""

from __future__ import annotations

import gc
import glob
import json
import multiprocessing
import os
import resource
import tempfile
import time
from typing import Callable, Dict, Iterator, Sequence, Tuple

from absl import flags
import numpy as np
from PIL import Image

from inception_jax import cli
from inception_jax.data import config as config_lib
from inception_jax.data import datasets
from inception_jax.data import pipeline

PEERS = ('none', 'tfdata')


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


def process_tree_cpu() -> Tuple[float, float]:
  """CPU seconds (user + system) used so far by this process (all its
  threads) and by its descendants, live or ended: grain workers, the
  processes they start, and any of them already reaped.

  Live descendants are read from /proc (Linux); without it only ended
  ones are counted.
  """
  own = resource.getrusage(resource.RUSAGE_SELF)
  reaped = resource.getrusage(resource.RUSAGE_CHILDREN)
  others = reaped.ru_utime + reaped.ru_stime
  tick = os.sysconf('SC_CLK_TCK')
  children: Dict[int, list] = {}
  stats = {}
  for name in os.listdir('/proc') if os.path.isdir('/proc') else ():
    if not name.isdigit():
      continue
    try:
      with open(f'/proc/{name}/stat') as f:
        text = f.read()
    except OSError:  # Ended since listdir.
      continue
    # The command name, field 2, may hold spaces and parentheses.
    fields = text[text.rindex(')') + 2:].split()
    pid, ppid = int(name), int(fields[1])
    children.setdefault(ppid, []).append(pid)
    # utime, stime, and what the process reaped: cutime, cstime.
    stats[pid] = sum(int(v) for v in fields[11:15]) / tick
  pending = list(children.get(os.getpid(), ()))
  while pending:
    pid = pending.pop()
    others += stats[pid]
    pending.extend(children.get(pid, ()))
  return own.ru_utime + own.ru_stime, others


def _time_batches(make: Callable[[], Iterator], batch_size: int,
                  num_batches: int) -> dict:
  """Times ``num_batches`` of the iterator ``make()`` returns, after one
  warm-up batch, CPU counted over this process and its workers, then closes
  it: background threads that went on filling its buffers would bill their
  CPU to whatever is timed next."""
  it = make()
  next(it)  # Starts workers and threads, opens files, warms kernels.
  cpu0, wall0 = sum(process_tree_cpu()), time.perf_counter()
  for _ in range(num_batches):
    next(it)
  wall = time.perf_counter() - wall0
  cpu = sum(process_tree_cpu()) - cpu0
  del it
  gc.collect()
  images = batch_size * num_batches
  return {'images_per_s': round(images / wall, 1),
          'images_per_cpu_s': round(images / cpu, 1),
          'seconds': round(wall, 2), 'images': images}


def run(data_cfg, batch_size: int, num_batches: int) -> dict:
  """Times ``num_batches`` training batches after one warm-up batch."""
  result = _time_batches(lambda: _train_iterator(data_cfg, batch_size),
                         batch_size, num_batches)
  cores = max(1, data_cfg.worker_count)
  result.update(workers=data_cfg.worker_count, cores_assumed=cores,
                images_per_s_per_core=round(result['images_per_s'] / cores,
                                            1))
  return result


def tfdata_reference(paths: Sequence[str], labels: Sequence[int],
                     image_size: int, batch_size: int):
  """flax ``examples/imagenet``'s training input, over files on disk.

  The crop, its fallback and the pixel work are that example's
  (``input_pipeline.preprocess_for_train``); the records come from the
  files rather than TFDS, and are not shuffled. An endless iterator of
  numpy batches.
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  mean = tf.constant([0.485 * 255, 0.456 * 255, 0.406 * 255])
  std = tf.constant([0.229 * 255, 0.224 * 255, 0.225 * 255])
  crop_padding = 32

  def resize(image):
    return tf.image.resize([image], [image_size, image_size],
                           method=tf.image.ResizeMethod.BICUBIC)[0]

  def center_crop(image_bytes):
    shape = tf.io.extract_jpeg_shape(image_bytes)
    side = tf.cast(
        image_size / (image_size + crop_padding)
        * tf.cast(tf.minimum(shape[0], shape[1]), tf.float32), tf.int32)
    top = ((shape[0] - side) + 1) // 2
    left = ((shape[1] - side) + 1) // 2
    return resize(tf.io.decode_and_crop_jpeg(
        image_bytes, tf.stack([top, left, side, side]), channels=3))

  def random_crop(image_bytes):
    shape = tf.io.extract_jpeg_shape(image_bytes)
    begin, size, _ = tf.image.sample_distorted_bounding_box(
        shape, bounding_boxes=tf.constant([0., 0., 1., 1.], shape=[1, 1, 4]),
        min_object_covered=0.1, aspect_ratio_range=(3 / 4, 4 / 3),
        area_range=(0.08, 1.0), max_attempts=10,
        use_image_if_no_bounding_boxes=True)
    top, left, _ = tf.unstack(begin)
    height, width, _ = tf.unstack(size)
    image = tf.io.decode_and_crop_jpeg(
        image_bytes, tf.stack([top, left, height, width]), channels=3)
    # No crop found: the sampler returned the whole image.
    bad = tf.reduce_sum(tf.cast(tf.equal(shape, tf.shape(image)),
                                tf.int32)) >= 3
    return tf.cond(bad, lambda: center_crop(image_bytes),
                   lambda: resize(image))

  def preprocess(path, label):
    image = random_crop(tf.io.read_file(path))
    image = tf.reshape(image, [image_size, image_size, 3])
    image = tf.image.random_flip_left_right(image)
    return {'image': (image - mean) / std, 'label': label}

  ds = tf.data.Dataset.from_tensor_slices((list(paths), list(labels)))
  ds = ds.repeat().map(preprocess, num_parallel_calls=tf.data.AUTOTUNE)
  ds = ds.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)
  return ds.as_numpy_iterator()


def decode_only(paths: Sequence[str], repeats: int = 3) -> Dict[str, float]:
  """Images per CPU-second of only decoding the files, whole and as the
  paper's random crops: the floor of any JPEG training input."""
  import cv2  # pylint: disable=g-import-not-at-top
  from inception_jax.data import preprocess  # pylint: disable=g-import-not-at-top
  from inception_jax.data import sampling  # pylint: disable=g-import-not-at-top
  encoded = []
  for path in paths:
    with open(path, 'rb') as f:
      encoded.append(f.read())
  rng = np.random.default_rng(0)
  boxes = [sampling.sample_inception_crop(
      rng, *preprocess.encoded_shape(e)) for e in encoded]

  def whole_opencv():
    for e in encoded:
      cv2.imdecode(np.frombuffer(e, np.uint8), cv2.IMREAD_COLOR)

  def whole_tf():
    for e in encoded:
      preprocess.decode(e)

  def crops_tf():
    for e, box in zip(encoded, boxes):
      preprocess.decode_crop(e, box)

  result = {}
  for name, fn in (('whole_opencv', whole_opencv), ('whole_tf', whole_tf),
                   ('inception_crop_tf', crops_tf)):
    fn()  # Warm-up.
    best = float('inf')
    for _ in range(repeats):
      cpu0 = time.process_time()
      fn()
      best = min(best, time.process_time() - cpu0)
    result[name] = round(len(encoded) / best, 1)
  return result


def _peer_iterator(spec: dict) -> Iterator:
  if spec['kind'] == 'tfdata':
    return tfdata_reference(spec['paths'], spec['labels'],
                            spec['image_size'], spec['batch_size'])
  return _train_iterator(spec['data_cfg'], spec['batch_size'])


def _measure_in_child(spec: dict, warmup_batches: int, num_batches: int,
                      connection) -> None:
  """In a fresh process: builds the pipeline, pulls ``warmup_batches``
  (start-up, buffers filled, workers running), then times ``num_batches``
  with every process's CPU; sends the figures and closes the pipeline, so
  that grain's workers end and are reaped before this process exits."""
  it = _peer_iterator(spec)
  for _ in range(warmup_batches):
    next(it)
  main0, others0 = process_tree_cpu()
  wall0 = time.perf_counter()
  for _ in range(num_batches):
    next(it)
  wall = time.perf_counter() - wall0
  main1, others1 = process_tree_cpu()
  connection.send({'wall_s': wall, 'main_cpu_s': main1 - main0,
                   'others_cpu_s': others1 - others0})
  connection.close()
  del it
  gc.collect()


def measure_in_fresh_process(spec: dict, warmup_batches: int,
                             num_batches: int) -> dict:
  """One pipeline's figures for ``num_batches`` after ``warmup_batches``,
  in a process of its own (spawned: no state or thread of an earlier
  pipeline runs on), CPU counted over every process it runs on.

  ``child_cpu_s`` is the OS's account of the whole child, start-up
  included, taken when it was reaped with its workers: an upper bound on the
  window's CPU that does not rely on /proc.
  """
  context = multiprocessing.get_context('spawn')
  receiver, sender = context.Pipe(duplex=False)
  before = resource.getrusage(resource.RUSAGE_CHILDREN)
  child = context.Process(target=_measure_in_child,
                          args=(spec, warmup_batches, num_batches, sender))
  child.start()
  sender.close()
  try:
    figures = receiver.recv()
  except EOFError:
    figures = None
  child.join()
  after = resource.getrusage(resource.RUSAGE_CHILDREN)
  if figures is None or child.exitcode:
    raise RuntimeError(f'timing {spec["name"]} failed: its process '
                       f'exited with code {child.exitcode} (see above).')
  cpu = figures['main_cpu_s'] + figures['others_cpu_s']
  images = num_batches * spec['batch_size']
  return {
      'images_per_cpu_s': images / cpu,
      'images_per_s': images / figures['wall_s'],
      'main_process_cpu_share': figures['main_cpu_s'] / cpu,
      'window_cpu_s': cpu,
      'child_cpu_s': (after.ru_utime + after.ru_stime
                      - before.ru_utime - before.ru_stime),
  }


def _median_of_rounds(rounds: Sequence[dict], workers: int) -> dict:
  """Each figure's median over the rounds, and the rounds themselves."""
  result = {'workers': workers}
  for key, digits in (('images_per_cpu_s', 1), ('images_per_s', 1),
                      ('main_process_cpu_share', 3)):
    result[key] = round(float(np.median([r[key] for r in rounds])), digits)
  for key in ('images_per_cpu_s', 'window_cpu_s', 'child_cpu_s'):
    result[f'rounds_{key}'] = [round(r[key], 3) for r in rounds]
  return result


def compare_with_tfdata(cfg, batch_size: int, num_batches: int, rounds: int,
                        warmup_batches: int = 4,
                        worker_counts: Sequence[int] = (0, 2)) -> dict:
  """The tf.data reference against this project's path, same files, each
  timing in a fresh process, the pipelines in turns; medians of the rounds
  (see the module doc)."""
  paths = sorted(glob.glob(os.path.join(cfg.root, 'train', '*', '*.jpg')))
  classes = sorted({os.path.basename(os.path.dirname(p)) for p in paths})
  labels = [classes.index(os.path.basename(os.path.dirname(p)))
            for p in paths]
  specs = {'tfdata': (0, dict(kind='tfdata', paths=paths, labels=labels,
                              image_size=cfg.image_size))}
  for workers in worker_counts:
    # The JPEG path: decoded every step, as tf.data does, not from the cache.
    paper = cfg.copy_and_resolve_references()
    paper.update(cache_decoded='never', worker_count=workers)
    same_work = paper.copy_and_resolve_references()
    same_work.update(distort_color=False, random_interpolation=False,
                     interpolation='bicubic')
    for work, data_cfg in (('same_work', same_work), ('paper', paper)):
      specs[_ours(work, workers)] = (workers, dict(kind='grain',
                                                   data_cfg=data_cfg))
  load_before = os.getloadavg()[0]
  timed: Dict[str, list] = {name: [] for name in specs}
  for _ in range(rounds):
    for name, (_, spec) in specs.items():
      timed[name].append(measure_in_fresh_process(
          dict(spec, name=name, batch_size=batch_size), warmup_batches,
          num_batches))
  pipelines = {name: _median_of_rounds(timed[name], specs[name][0])
               for name in specs}
  reference = pipelines['tfdata']['images_per_cpu_s']
  by_worker_count = {
      str(workers): {
          f'{work}_vs_tfdata_per_cpu_s': round(
              pipelines[_ours(work, workers)]['images_per_cpu_s']
              / reference, 2) for work in ('same_work', 'paper')}
      for workers in worker_counts}
  return {
      'pipelines': pipelines, 'by_worker_count': by_worker_count,
      'decode_only_images_per_cpu_s': decode_only(paths),
      'paper_device_part': device_part(batch_size, cfg.image_size),
      'rounds': rounds, 'warmup_batches': warmup_batches,
      'num_batches': num_batches,
      # Other jobs on the host: their load inflates CPU times too.
      'load_average_1min': [load_before, os.getloadavg()[0]],
  }


# A TPU v4 chip's HBM bandwidth, as Google publishes it (bytes/s): the
# device part is elementwise, so bytes moved, not FLOPs, bound it there.
TPU_V4_HBM_BYTES_PER_S = 1.2e12


def device_part(batch_size: int, image_size: int, repeats: int = 5) -> dict:
  """What the paper's augmentation costs in the step: the colour
  distortions and the normalisation (`steps.model_input`) of a uint8
  batch, jitted on this host's JAX backend, ms per image (best of
  ``repeats``), and XLA's count of its FLOPs and bytes per image, from
  which a memory-bound estimate on a TPU v4 chip follows."""
  from inception_jax import steps  # pylint: disable=g-import-not-at-top
  from inception_jax.data import device_colour  # pylint: disable=g-import-not-at-top
  from inception_jax.data import sampling  # pylint: disable=g-import-not-at-top
  import jax  # pylint: disable=g-import-not-at-top
  c = config_lib.default_config()
  rng = np.random.default_rng(0)
  draws = [sampling.sample_colour(
      rng, brightness=c.brightness, contrast=c.contrast,
      saturation=c.saturation, hue=c.hue, lighting=c.lighting)
           for _ in range(batch_size)]
  batch = jax.device_put({
      'image': rng.integers(0, 256, (batch_size, image_size, image_size, 3),
                            np.uint8),
      'colour': device_colour.encode_batch(draws)})
  start = time.perf_counter()
  compiled = jax.jit(lambda b: steps.model_input(b, 'caffe')).lower(
      batch).compile()
  compile_s = time.perf_counter() - start
  cost = compiled.cost_analysis()
  cost = (cost[0] if isinstance(cost, list) else cost) or {}
  jax.block_until_ready(compiled(batch))
  best = float('inf')
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(compiled(batch))
    best = min(best, time.perf_counter() - start)
  bytes_per_image = float(cost.get('bytes accessed', 0.0)) / batch_size
  return {'backend': jax.default_backend(),
          'ms_per_image': round(1e3 * best / batch_size, 3),
          'compile_s': round(compile_s, 2),
          'flops_per_image': float(cost.get('flops', 0.0)) / batch_size,
          'bytes_per_image': bytes_per_image,
          'tpu_v4_estimate_us_per_image': round(
              1e6 * bytes_per_image / TPU_V4_HBM_BYTES_PER_S, 2)}


def _ours(work: str, workers: int) -> str:
  return f'ours_{work}' + (f'_{workers}_workers' if workers else '')


def _train_iterator(data_cfg, batch_size: int):
  return pipeline.create_train_iterator(
      data_cfg, global_batch_size=batch_size, seed=0, process_index=0,
      process_count=1)


def format_table(result: dict) -> str:
  """The comparison as a Markdown table."""
  reference = result['pipelines']['tfdata']['images_per_cpu_s']
  rows = ['| pipeline | grain workers | images/s | images/CPU-s, all '
          'processes | main process\'s share of the CPU | vs tf.data per '
          'CPU-s |', '|---|---|---|---|---|---|']
  for name, r in result['pipelines'].items():
    rows.append(f'| {name} | {r["workers"]} | {r["images_per_s"]} '
                f'| {r["images_per_cpu_s"]} '
                f'| {r["main_process_cpu_share"]:.2f} '
                f'| {r["images_per_cpu_s"] / reference:.2f}x |')
  for name, v in result['decode_only_images_per_cpu_s'].items():
    rows.append(f'| decode only, {name} | | | {v} | | {v / reference:.2f}x |')
  device = result['paper_device_part']
  rows.append(f'\nThe paper\'s colour distortions and normalisation in the '
              f'step: {device["ms_per_image"]} ms per image on this host\'s '
              f'{device["backend"]}; {device["bytes_per_image"] / 1e6:.1f} MB '
              f'moved per image, about {device["tpu_v4_estimate_us_per_image"]}'
              f' us on a TPU v4 chip if bandwidth-bound.')
  return '\n'.join(rows)


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
  if dataset != 'fashion_mnist':
    cfg.cache_decoded = cache_decoded
  if dataset == 'image_folder':
    if not root:
      raise ValueError(f'--dataset={dataset} needs --root=FOLDER (an image '
                       'folder root/<split>/<label>/*).')
    cfg.root = root
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
                        [r['images_per_cpu_s'] for r in runs]))}
  native = result['fashion_mnist']['images_per_s']
  for name in result:
    result[name]['vs_native'] = round(result[name]['images_per_s'] / native,
                                      3)
  return result


def _check_flags(f) -> list:
  """The flags' mistakes as one-line errors; the worker counts of --peer."""
  if f.peer != 'none' and f.dataset != 'jpeg':
    raise ValueError(f'--peer={f.peer} compares JPEG pipelines; add '
                     '--dataset=jpeg.')
  if f.peer != 'none' and f.worker_count:
    raise ValueError('--peer times its own worker counts; drop '
                     '--worker_count and set --peer_worker_counts.')
  text = ','.join(f.peer_worker_counts)
  if not (f.peer_worker_counts and all(
      w.isdigit() for w in f.peer_worker_counts)):
    raise ValueError(f'--peer_worker_counts={text}: give one or more counts '
                     '>= 0, e.g. 0,2.')
  worker_counts = [int(w) for w in f.peer_worker_counts]
  if f.peer != 'none' and max(worker_counts) and not os.path.isdir('/proc'):
    raise ValueError('Counting grain workers\' CPU reads /proc (Linux); use '
                     '--peer_worker_counts=0 here.')
  if f.warmup_batches < 1 or f.num_batches < 1:
    raise ValueError('--warmup_batches and --num_batches must be at least 1.')
  if f.rounds < 1:
    raise ValueError(f'--rounds={f.rounds}: it must be at least 1.')
  return worker_counts


def main(argv: Sequence[str]) -> None:
  del argv
  f = flags.FLAGS
  worker_counts = _check_flags(f)
  with tempfile.TemporaryDirectory() as tmp:
    # Fashion-MNIST where training prepares it (prepared once, reused);
    # the synthetic folders in a temporary directory.
    data_dir = f.data_dir or (None if f.dataset == 'fashion_mnist' else
                              os.path.join(tmp, 'tfds'))
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
    if data_dir:
      cfg.data_dir = data_dir
    extra = {}
    if f.dataset == 'jpeg':
      cfg.root = os.path.join(tmp, 'images')
      extra['mean_jpeg_bytes'] = write_jpeg_folder(cfg.root, f.num_images)
      extra['jpeg_shape'] = [375, 500]
    datasets.prepare_builder(cfg)
    if f.peer == 'tfdata':
      result = compare_with_tfdata(cfg, f.batch_size, f.num_batches,
                                   f.rounds, f.warmup_batches, worker_counts)
      print(format_table(result))
    else:
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
  flags.DEFINE_enum('peer', 'none', list(PEERS),
                    'tfdata: also time flax examples/imagenet\'s tf.data '
                    'input on the same JPEGs, and compare (--dataset=jpeg).')
  flags.DEFINE_integer('num_batches', 20, 'Batches timed (per round).')
  flags.DEFINE_integer('warmup_batches', 4, 'With --peer: batches pulled '
                       'before the timing starts (start-up, buffers, '
                       'workers up).')
  flags.DEFINE_list('peer_worker_counts', ['0', '2'], 'With --peer: the grain '
                    'worker process counts this project\'s path is timed '
                    'with, each against the same tf.data figures.')
  flags.DEFINE_integer('batch_size', 64, 'Images per batch.')
  flags.DEFINE_integer('image_size', 224, 'Model input side.')
  flags.DEFINE_integer('worker_count', 0,
                       'grain worker processes (0: main process).')
  flags.DEFINE_integer('num_images', 200,
                       'JPEGs generated for --dataset=jpeg.')
  cli.DEFINE_path('root', None, 'The image folder for --dataset=image_folder '
                  'and folder_vs_native.')
  flags.DEFINE_enum('cache_decoded', 'auto', ['auto', 'always', 'never'],
                    'data.cache_decoded for --dataset=image_folder and '
                    'jpeg (--peer always decodes, as tf.data does).')
  flags.DEFINE_integer('rounds', 3, 'Turns each contender takes, for '
                       '--dataset=folder_vs_native and --peer=tfdata; the '
                       'median counts.')
  cli.DEFINE_path('data_dir', None,
                  'Where to prepare TFDS data (default: TFDS\'s own for '
                  'fashion_mnist, as training uses; a temp dir otherwise).')


if __name__ == '__main__':
  cli.run(main, define_flags)
