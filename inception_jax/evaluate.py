r"""Evaluate any checkpoint with 1, 10 or 144 crops per image.

  python -m inception_jax.evaluate --workdir=runs/fashion_mnist --crops=10 \
      [--split=test] [--batch_size=256] [--raw]

  python -m inception_jax.evaluate --checkpoint=runs/tv_googlenet \
      --config=configs/imagenet.py:variant=torchvision

`--workdir` evaluates a training run on its own data. `--checkpoint` takes
any checkpoint `inception_jax.load` reads, a parameters-only one included (an
export, converted torchvision or Caffe weights), against the data of
`--config` (default: the config the checkpoint kept, if any). The
preprocessing is the checkpoint's, not the data config's: its input size,
and the normalisation and center crop it was trained with (a training run's
config; torchvision's resize-256-crop-224 with ImageNet mean/std for
converted torchvision weights, the protocol under which torchvision reports
69.78% top-1 for them (torchvision's figure; the conversion is checked here
by logit parity, tests/test_convert.py); Caffe's 0-255 minus the mean for
Caffe's).

The Polyak-averaged weights are evaluated (``--raw`` adds the raw weights as
``eval_raw/*``); with several crops the softmax is averaged over the crops of
each image, the paper's test-time protocol. The step is the trainer's own
evaluator (`evaluator.Evaluator`, sharded over every device), whose last
batch is padded and masked, so
``eval/num_examples`` is the size of the split whatever the batch size and
device count. The metrics are printed and written to
``DIR/eval_<split>_<crops>crop.json`` (DIR: the workdir, or the checkpoint's
directory).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import re
import time
from typing import Any, Callable, Dict, Optional, Sequence

import jax

from inception_jax import cli
from inception_jax import mesh as mesh_lib
from inception_jax import paths
from inception_jax.checkpoints import loader

with cli.optional_imports(__name__):
  from inception_jax import evaluator as evaluator_lib  # pylint: disable=g-import-not-at-top
  from inception_jax.data import datasets  # pylint: disable=g-import-not-at-top

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


# Converted torchvision weights: its evaluation transform (Resize(256),
# CenterCrop(224), ImageNet mean/std); transform_input is inside the model.
TORCHVISION_PREPROCESSING = {'normalization': 'imagenet',
                             'eval_crop_fraction': 0.875}
PREPROCESSING_KEYS = ('normalization', 'eval_crop_fraction')


def recorded_preprocessing(restored: loader.Restored) -> Dict[str, Any]:
  """The data keys a checkpoint's weights expect at evaluation.

  Its input size always; the normalisation and crop fraction that
  ``extra.preprocessing`` records (an export, converted Caffe weights), or
  from the training config it kept (a training run), or torchvision's for
  converted torchvision weights.
  """
  out: Dict[str, Any] = {'image_size': restored.image_size}
  extra = restored.meta.get('extra') or {}
  saved = loader.config_of(restored)
  if extra.get('preprocessing'):
    recorded = dict(extra['preprocessing'])
    # export and the Caffe converter write predict's name for it.
    if 'crop_fraction' in recorded:
      recorded.setdefault('eval_crop_fraction', recorded['crop_fraction'])
    out.update({k: recorded[k] for k in PREPROCESSING_KEYS if k in recorded})
  elif saved is not None and 'data' in saved:
    out.update({k: saved.data[k] for k in PREPROCESSING_KEYS
                if k in saved.data})
  elif str(extra.get('source', '')).startswith('torchvision'):
    out.update(TORCHVISION_PREPROCESSING)
  return out


def evaluate_checkpoint(workdir: str, *, crops: int = 1,
                        split: Optional[str] = None,
                        batch_size: Optional[int] = None,
                        raw: bool = False,
                        write: bool = True,
                        config=None) -> Evaluation:
  """Restores the newest checkpoint under `workdir` and evaluates it.

  Args:
    workdir: a training workdir, or any checkpoint `inception_jax.load` reads.
    config: a training config whose ``data`` says what to evaluate on; None:
      the config the checkpoint kept. Its preprocessing keys are replaced by
      the checkpoint's (`recorded_preprocessing`).

  Raises:
    ValueError: no checkpoint, no config to rebuild the input from, a class
      count that is not the data's, a bad crop count, split or batch size.
  """
  if crops not in _CROP_COST:
    raise ValueError(f'--crops must be 1, 10 or 144, got {crops}.')
  workdir = paths.resolve(workdir)
  restored = loader.load(workdir, polyak=True)
  if config is None:
    config = loader.config_of(restored)
    if config is None:
      raise ValueError(
          f'{restored.path} records no training config, so the evaluation '
          'input cannot be rebuilt; pass --config=CONFIG (e.g. '
          'configs/imagenet.py:variant=torchvision) to say which data.')
  else:
    config = copy.deepcopy(config)
    paths.resolve_config_paths(config)
    config = datasets.resolve_config(config)
  with config.unlocked():
    config.data.update(recorded_preprocessing(restored))
  info = datasets.get_dataset_info(config.data)
  if info.num_classes != restored.model.num_classes:
    raise ValueError(
        f'{restored.path} has {restored.model.num_classes} outputs but '
        f'{info.name} has {info.num_classes} classes; evaluate it on the data '
        'it was trained for.')
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
    runs.append(('eval_raw', loader.load(restored.path, polyak=False)))

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
  if bool(f.workdir) == bool(f.checkpoint):
    raise ValueError('Pass exactly one of --workdir (a training run) and '
                     '--checkpoint (any checkpoint, with --config for data).')
  result = evaluate_checkpoint(f.workdir or f.checkpoint, crops=f.crops,
                               split=f.split, batch_size=f.batch_size,
                               raw=f.raw, config=f.config)
  print(format_metrics(result.metrics))
  if result.path:
    print(f'Wrote {result.path}.')


def define_flags() -> None:
  from absl import flags  # pylint: disable=g-import-not-at-top
  from ml_collections import config_flags  # pylint: disable=g-import-not-at-top
  cli.DEFINE_path('workdir', None, 'The training workdir to evaluate.')
  cli.DEFINE_path('checkpoint', None,
                  'Any checkpoint: a workdir, a step, an export or converted '
                  'torchvision or Caffe weights (model.json).')
  config_flags.DEFINE_config_file(
      'config', None, 'The data to evaluate on (with :args); default: the '
      "checkpoint's own config. Its preprocessing is the checkpoint's.",
      lock_config=False)
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


if __name__ == '__main__':
  cli.run(main, define_flags)
