r"""Evaluate a workdir's newest checkpoint with 1, 10 or 144 crops per image.

  python -m inception_jax.evaluate --workdir=runs/fashion_mnist --crops=10 \
      [--split=test] [--batch_size=256] [--raw]

The Polyak-averaged weights are evaluated (``--raw`` adds the raw weights as
``eval_raw/*``); with several crops the softmax is averaged over the crops of
each image, the paper's test-time protocol. The step is the trainer's own
evaluator (`evaluator.Evaluator`, sharded over every device), whose last
batch is padded and masked, so
``eval/num_examples`` is the size of the split whatever the batch size and
device count. The metrics are printed and written to
``DIR/eval_<split>_<crops>crop.json``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import time
from typing import Any, Callable, Dict, Optional, Sequence

import jax

from inception_jax import evaluator as evaluator_lib
from inception_jax import mesh as mesh_lib
from inception_jax import paths
from inception_jax import restore
from inception_jax.data import datasets

# Crops per image -> how many images a default batch holds, relative to the
# config's eval_batch_size: the 144-crop batch stays within memory that the
# single-crop batch fits in.
_CROP_COST = {1: 1, 10: 10, 144: 144}


@dataclasses.dataclass
class Evaluation:
  """What one evaluation produced.

  Attributes:
    metrics: ``eval/top1``, ``eval/top5``, ``eval/loss``,
      ``eval/num_examples`` (and ``eval_raw/*``), plus what was evaluated.
    path: the JSON file written (None on processes other than 0).
    eval_step: the jitted evaluation step (one compilation serves every
      batch, the padded last one included, and both sets of weights).
  """
  metrics: Dict[str, Any]
  path: Optional[str]
  eval_step: Callable


def metrics_file_name(split: str, crops: int) -> str:
  """``eval_<split>_<crops>crop.json``; split ``test[:37]`` gives test_37."""
  name = re.sub(r'[^A-Za-z0-9.=-]+', '_', split).strip('_') or 'split'
  return f'eval_{name}_{crops}crop.json'


def default_batch_size(config, crops: int, num_devices: int) -> int:
  """The config's eval batch scaled down by the crops, a device multiple."""
  images = max(1, config.eval_batch_size // _CROP_COST[crops])
  return max(num_devices, -(-images // num_devices) * num_devices)


def evaluate_checkpoint(workdir: str, *, crops: int = 1,
                        split: Optional[str] = None,
                        batch_size: Optional[int] = None,
                        raw: bool = False,
                        write: bool = True) -> Evaluation:
  """Restores the newest checkpoint of `workdir` and evaluates it.

  Raises:
    ValueError: no checkpoint, no training config to rebuild the input from,
      a bad crop count, split or batch size.
  """
  if crops not in _CROP_COST:
    raise ValueError(f'--crops must be 1, 10 or 144, got {crops}.')
  workdir = paths.resolve(workdir)
  restored = restore.load(workdir, polyak=True)
  config = restore.config_of(restored)
  if config is None:
    raise ValueError(
        f'{restored.path} records no training config, so the evaluation '
        'input cannot be rebuilt; evaluate a training workdir or a checkpoint '
        'exported from one.')
  mesh = mesh_lib.create_mesh()
  num_devices = mesh.devices.size
  batch_size = batch_size or default_batch_size(config, crops, num_devices)
  mesh_lib.check_divisible(batch_size, mesh, 'batch_size')
  split_name = split or datasets.resolve_splits(config.data)[1]
  evaluator = evaluator_lib.Evaluator(restored.model, config.data, mesh=mesh,
                                      batch_size=batch_size, crops=crops,
                                      split=split_name)
  runs = [('eval', restored)]
  if raw:
    if restored.kind != 'train_state':
      raise ValueError(f'{restored.path} holds one set of weights; --raw '
                       'needs a training checkpoint.')
    runs.append(('eval_raw', restore.load(restored.path, polyak=False)))

  start = time.time()
  metrics: Dict[str, Any] = {}
  for prefix, weights in runs:
    result = evaluator.evaluate(weights.variables)
    metrics.update({f'{prefix}/{k}': v for k, v in result.items()})
  metrics.update({
      'checkpoint': restored.path, 'step': restored.step, 'split': split_name,
      'crops': crops, 'batch_size': batch_size,
      'num_devices': num_devices, 'seconds': round(time.time() - start, 3)})

  path = None
  if write and jax.process_index() == 0:
    path = os.path.join(workdir, metrics_file_name(split_name, crops))
    tmp = path + '.tmp'
    with open(tmp, 'w') as f:
      json.dump(metrics, f, indent=2, sort_keys=True)
      f.write('\n')
    os.replace(tmp, path)
  return Evaluation(metrics, path, evaluator.step)


def format_metrics(metrics: Dict[str, Any]) -> str:
  lines = [f'{metrics["checkpoint"]} (step {metrics["step"]}), '
           f'{metrics["split"]}, {metrics["crops"]} crop(s) per image:']
  for prefix, label in (('eval', 'Polyak average'), ('eval_raw', 'raw')):
    if f'{prefix}/top1' in metrics:
      lines.append(
          f'  {label}: top-1 {100 * metrics[f"{prefix}/top1"]:.2f}%  top-5 '
          f'{100 * metrics[f"{prefix}/top5"]:.2f}%  loss '
          f'{metrics[f"{prefix}/loss"]:.4f}  on '
          f'{metrics[f"{prefix}/num_examples"]} images')
  return '\n'.join(lines)


def main(argv: Sequence[str]) -> None:
  del argv
  from absl import flags  # pylint: disable=g-import-not-at-top
  f = flags.FLAGS
  # Multi-host: the same as training (the cluster environment decides).
  mesh_lib.initialize_distributed()
  result = evaluate_checkpoint(f.workdir, crops=f.crops, split=f.split,
                               batch_size=f.batch_size, raw=f.raw)
  print(format_metrics(result.metrics))
  if result.path:
    print(f'Wrote {result.path}.')


def define_flags() -> None:
  from absl import flags  # pylint: disable=g-import-not-at-top
  from inception_jax import cli  # pylint: disable=g-import-not-at-top
  cli.DEFINE_path('workdir', None, 'The training workdir to evaluate.')
  flags.DEFINE_integer('crops', 1, 'Crops per image: 1, 10 or 144; the '
                       'softmax is averaged over them.')
  flags.DEFINE_string('split', None,
                      'Split (TFDS syntax, e.g. test[:1000]); default: the '
                      "config's evaluation split.")
  flags.DEFINE_integer('batch_size', None,
                       'Global images per step, a multiple of the device '
                       "count; default: the config's eval_batch_size divided "
                       'by the crops.')
  flags.DEFINE_bool('raw', False,
                    'Also evaluate the raw weights (eval_raw/*).')
  flags.mark_flag_as_required('workdir')


if __name__ == '__main__':
  from inception_jax import cli  # pylint: disable=g-import-not-at-top
  cli.run(main, define_flags)
