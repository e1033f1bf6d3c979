r"""A small image folder trained by configs/image_folder.py's defaults.

  python -m experiments.small_folder

Writes image folders from Fashion-MNIST's IDX files (Debian's
dataset-fashion-mnist): for each ``CxN`` of ``--folders`` the first C classes
with the first N training images of each in ``train/`` and the first
``--test_per_class`` test images of the same classes in ``test/`` (held out:
the IDX test split). On each it trains ``configs/image_folder.py:root=FOLDER``
as a user would, twice: the defaults (``min_steps`` raising a short schedule)
and the defaults' fixed 10 epochs alone (``min_steps=0``); on the first folder
also at each ``--min_steps`` of the sweep, to see where test accuracy stops
rising. Two baselines a user would try first see the same pixels: logistic
regression (its L2 weight picked on a fifth of the training images) and a
small CNN (two 3x3 convolutions, Adam), both in JAX. Prints a table and
writes every figure, with each run's step time, to ``--out``.
"""

from __future__ import annotations

import datetime
import json
import os
import shutil
import statistics
import time
from typing import Dict, List, Sequence, Tuple

from absl import flags
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from PIL import Image

from configs import image_folder
from experiments import fashion_mnist_png
from inception_jax import cli
from inception_jax import train
from inception_jax.data import fashion_mnist

FLAGS = flags.FLAGS


def parse_folders(text: str) -> List[Tuple[int, int]]:
  """'5x300,10x300' -> [(5, 300), (10, 300)] (classes, images a class)."""
  out = []
  for part in text.split(','):
    classes, _, per_class = part.partition('x')
    if not (classes.isdigit() and per_class.isdigit()):
      raise ValueError(f'--folders part {part!r} is not CxN, e.g. 5x300.')
    out.append((int(classes), int(per_class)))
  return out


def write_subset(out: str, idx_dir: str, classes: int, per_class: int,
                 test_per_class: int) -> Dict[str, int]:
  """OUT/{train,test}/<class>/<index>.png: the first images of each class."""
  if not fashion_mnist.idx_files_present(idx_dir):
    raise ValueError(f'no Fashion-MNIST IDX files in {idx_dir}; install '
                     "Debian's dataset-fashion-mnist or set --idx_dir.")
  counts = {}
  for split, count in (('train', per_class), ('test', test_per_class)):
    images_file, labels_file = fashion_mnist.IDX_FILES[split]
    images = fashion_mnist.read_idx(os.path.join(idx_dir, images_file))
    labels = fashion_mnist.read_idx(os.path.join(idx_dir, labels_file))
    counts[split] = 0
    for label in range(classes):
      folder = os.path.join(out, split, fashion_mnist_png.folder_name(
          fashion_mnist.CLASS_NAMES[label]))
      os.makedirs(folder, exist_ok=True)
      for i in np.flatnonzero(labels == label)[:count]:
        Image.fromarray(images[i], 'L').save(
            os.path.join(folder, f'{i:05d}.png'))
        counts[split] += 1
  return counts


def read_split(root: str, split: str) -> Tuple[np.ndarray, np.ndarray]:
  """A split's pixels on [0, 1] (N, 28, 28) and labels, classes by name."""
  names = sorted(os.listdir(os.path.join(root, split)))
  images, labels = [], []
  for label, name in enumerate(names):
    folder = os.path.join(root, split, name)
    for file in sorted(os.listdir(folder)):
      with Image.open(os.path.join(folder, file)) as image:
        images.append(np.asarray(image.convert('L'), np.float32) / 255)
      labels.append(label)
  return np.stack(images), np.asarray(labels)


def _fit(loss_fn, params, batches, lr: float):
  """Adam over ``batches`` (an iterable of (x, y)); returns the params."""
  tx = optax.adam(lr)
  opt_state = tx.init(params)

  @jax.jit
  def step(params, opt_state, x, y):
    grads = jax.grad(loss_fn)(params, x, y)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state

  for x, y in batches:
    params, opt_state = step(params, opt_state, x, y)
  return params


def logistic_regression(train_xy, test_xy, l2s=(1e-4, 1e-3, 1e-2),
                        steps: int = 500) -> Dict[str, float]:
  """Softmax regression on the pixels; L2 picked on a fifth of train."""
  (x, y), (x_test, y_test) = train_xy, test_xy
  x, x_test = x.reshape(len(x), -1), x_test.reshape(len(x_test), -1)
  classes = int(y.max()) + 1

  def fit(x, y, l2):
    def loss(w, x, y):
      logits = x @ w['w'] + w['b']
      return (optax.softmax_cross_entropy_with_integer_labels(
          logits, y).mean() + l2 * jnp.sum(w['w'] ** 2))
    w = {'w': jnp.zeros((x.shape[1], classes)), 'b': jnp.zeros(classes)}
    return _fit(loss, w, [(x, y)] * steps, 0.01)

  def accuracy(w, x, y):
    return float(np.mean(np.argmax(x @ w['w'] + w['b'], -1) == y))

  order = np.random.default_rng(0).permutation(len(x))
  held, kept = order[:len(x) // 5], order[len(x) // 5:]
  scores = {l2: accuracy(fit(x[kept], y[kept], l2), x[held], y[held])
            for l2 in l2s}
  best = max(l2s, key=lambda l2: scores[l2])
  return {'test_top1': accuracy(fit(x, y, best), x_test, y_test), 'l2': best}


class SmallCNN(nn.Module):
  """Two 3x3 convolutions, each pooled, and two dense layers."""
  classes: int

  @nn.compact
  def __call__(self, x):
    for features in (32, 64):
      x = nn.relu(nn.Conv(features, (3, 3))(x))
      x = nn.max_pool(x, (2, 2), (2, 2))
    x = nn.relu(nn.Dense(128)(x.reshape(len(x), -1)))
    return nn.Dense(self.classes)(x)


def small_cnn(train_xy, test_xy, epochs: int = 40,
              batch: int = 64) -> Dict[str, float]:
  """The CNN trained with Adam (1e-3) for ``epochs``, no augmentation."""
  (x, y), (x_test, y_test) = train_xy, test_xy
  x, x_test = x[..., None], x_test[..., None]
  model = SmallCNN(int(y.max()) + 1)
  params = model.init(jax.random.PRNGKey(0), x[:1])

  def loss(params, x, y):
    return optax.softmax_cross_entropy_with_integer_labels(
        model.apply(params, x), y).mean()

  rng = np.random.default_rng(0)
  batches = [(x[i], y[i]) for _ in range(epochs)
             for i in np.array_split(rng.permutation(len(x)),
                                     max(1, len(x) // batch))]
  params = _fit(loss, params, batches, 1e-3)
  predict = jax.jit(lambda p, x: jnp.argmax(model.apply(p, x), -1))
  correct = sum(int(np.sum(np.asarray(predict(params, x_test[i:i + 1000]))
                           == y_test[i:i + 1000]))
                for i in range(0, len(x_test), 1000))
  return {'test_top1': correct / len(x_test), 'epochs': epochs}


def train_default(root: str, work: str, name: str,
                  arg: str = '') -> Dict[str, object]:
  """configs/image_folder.py:root=ROOT[,ARG], trained and evaluated."""
  config = image_folder.get_config(f'root={root}' + (f',{arg}' if arg else ''))
  config.data.data_dir = os.path.join(work, 'tfds')
  if 'JAX_COMPILATION_CACHE_DIR' not in os.environ:  # one for all runs
    config.compilation_cache_dir = os.path.join(work, 'jax_cache')
  workdir = os.path.join(work, 'runs', name)
  shutil.rmtree(workdir, ignore_errors=True)  # a fresh run, not a resume
  start = time.time()
  summary = train.train_and_evaluate(config, workdir)
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    records = [json.loads(line) for line in f]
  step_times = [r['train/step_time'] for r in records if 'train/step_time' in r]
  with open(os.path.join(workdir, 'config.json')) as f:
    resolved = json.load(f)
  return {'config_arg': 'root=FOLDER' + (f',{arg}' if arg else ''),
          'steps': summary['step'], 'test_top1': summary['eval/top1'],
          'test_images': summary['eval/num_examples'],
          'num_epochs': resolved['num_epochs'],
          'min_steps': resolved['min_steps'],
          'max_steps': resolved['max_steps'],
          'median_step_time_s': statistics.median(step_times),
          'wall_s': time.time() - start,
          'load_average_1min_at_end': os.getloadavg()[0]}


def run_folder(classes: int, per_class: int, work: str,
               sweep: Sequence[int]) -> Dict[str, object]:
  """The folder written, both baselines and every training run on it."""
  name = f'{classes}x{per_class}'
  root = os.path.join(work, 'folders', name)
  counts = write_subset(root, FLAGS.idx_dir, classes, per_class,
                        FLAGS.test_per_class)
  train_xy, test_xy = read_split(root, 'train'), read_split(root, 'test')
  result = {'folder': name, 'classes': classes, **counts,
            'logistic_regression': logistic_regression(train_xy, test_xy),
            'small_cnn': small_cnn(train_xy, test_xy), 'googlenet': []}
  runs = [('default', ''), ('10_epochs', 'min_steps=0')] + [
      (f'min_steps_{m}', f'min_steps={m}') for m in sweep]
  if FLAGS.runlocal:  # The runs differ in their steps, which runlocal fixes.
    runs = [('default', 'runlocal')]
  for run, arg in runs:
    out = train_default(root, work, f'{name}_{run}', arg)
    result['googlenet'].append({'run': run, **out})
    print(json.dumps({'folder': name, 'run': run, **out}), flush=True)
  return result


def table(results) -> str:
  lines = ['| folder (train images) | run | steps | test top-1 | step s | '
           'run s |', '|---|---|---|---|---|---|']
  for r in results:
    head = f'{r["folder"]} ({r["train"]:,})'
    for g in r['googlenet']:
      lines.append(f'| {head} | GoogLeNet {g["config_arg"]} | {g["steps"]:,} '
                   f'| {100 * g["test_top1"]:.2f}% '
                   f'| {g["median_step_time_s"]:.3f} | {g["wall_s"]:.0f} |')
    for base in ('logistic_regression', 'small_cnn'):
      lines.append(f'| {head} | {base} | | '
                   f'{100 * r[base]["test_top1"]:.2f}% | | |')
  return '\n'.join(lines)


def main(argv: Sequence[str]) -> None:
  del argv
  started = datetime.datetime.now(datetime.timezone.utc).isoformat()
  folders = parse_folders(FLAGS.folders)
  sweep = [int(m) for m in FLAGS.min_steps.split(',') if m]
  results = [run_folder(c, n, FLAGS.work, sweep if i == 0 else ())
             for i, (c, n) in enumerate(folders)]
  record = {'date': started,
            'finished': datetime.datetime.now(
                datetime.timezone.utc).isoformat(),
            'cpus': os.cpu_count(), 'backend': jax.default_backend(),
            'flags': {k: FLAGS[k].value for k in (
                'folders', 'test_per_class', 'min_steps', 'runlocal')},
            'folders': results}
  os.makedirs(os.path.dirname(FLAGS.out) or '.', exist_ok=True)
  with open(FLAGS.out, 'w') as f:
    json.dump(record, f, indent=2)
  print(table(results))
  print(f'wrote {FLAGS.out}')


def define_flags() -> None:
  flags.DEFINE_string('folders', '5x300,5x60,10x300',
                      'Folders to make, CLASSESxIMAGES_PER_CLASS; the sweep '
                      'runs on the first.')
  flags.DEFINE_integer('test_per_class', 1000,
                       'Held-out test images of each class (at most 1000).')
  flags.DEFINE_string('min_steps', '250,500,1000',
                      'min_steps values also trained on the first folder.')
  flags.DEFINE_bool('runlocal', False,
                    'A quick check of the script: one GoogLeNet run a '
                    'folder, :runlocal (a few steps of a tiny model; the '
                    'other runs differ only in their step counts).')
  cli.DEFINE_path('work', '/tmp/small_folder',
                  'Scratch folder: the image folders, prepared data, runs.')
  cli.DEFINE_path('out', 'experiments/results/small_folder.json',
                  'The JSON record to write.')
  cli.DEFINE_path('idx_dir', '/usr/share/datasets/fashion-mnist',
                  "Debian's Fashion-MNIST IDX files (*-ubyte.gz).")


if __name__ == '__main__':
  cli.run(main, define_flags)
