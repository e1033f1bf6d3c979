"""Restore a trained GoogLeNet anywhere: `load(path)` (`inception_jax.load`).

Two kinds of checkpoint are read:

* a training checkpoint, ``DIR/checkpoints/<step>/`` (`layout`): only the
  variables inference needs are read from its ``state`` item (the Polyak
  averages by default, or the raw weights); the optimiser state never leaves
  the disk;
* a parameters-only checkpoint (``model.json`` + ``variables/``, `params`),
  as written by `inception_jax.export` and the torchvision converter.

Arrays are read in the shapes and dtypes the checkpoint records and put on
this process's first device, never on the sharding they were saved with, so
a checkpoint written by 8 TPU chips loads in a one-CPU Colab.

This is what a Colab imports: it stays free of TensorFlow, TFDS, grain and
optax (a test checks ``sys.modules``).
"""

from __future__ import annotations

import copy
import os
from typing import NamedTuple, Optional, Tuple

import jax
import ml_collections
import orbax.checkpoint as ocp
from etils import epath

from inception_jax import cli
from inception_jax import paths
from inception_jax.checkpoints import layout
from inception_jax.checkpoints import params
from inception_jax.models import googlenet

_TRAIN_STATE_FORMAT_PREFIX = layout.FORMAT.rsplit('/', 1)[0] + '/'


class Restored(NamedTuple):
  """A restored model, ready for ``model.apply(variables, x, train=False)``.

  Attributes:
    model: the rebuilt `GoogLeNet` module.
    variables: ``{'params': ...}`` plus the model's other collections
      (``'batch_stats'`` for BatchNorm models), on one local device.
    config: the training run's config, or None for a parameters-only
      checkpoint (its ``meta['extra']`` says what is known).
    step: the training step of the weights, or None if unknown.
    class_names: one name per output, or None.
    image_size: the square input size the model was trained for.
    path: the checkpoint directory actually read (the step directory, or
      the parameters-only directory).
    kind: ``'train_state'`` or ``'params'``.
    meta: the checkpoint's own metadata (training ``metadata`` item, or
      ``model.json``).
  """
  model: googlenet.GoogLeNet
  variables: dict
  config: Optional[ml_collections.ConfigDict]
  step: Optional[int]
  class_names: Optional[Tuple[str, ...]]
  image_size: int
  path: str
  kind: str
  meta: dict


def _find(path: epath.Path) -> Tuple[str, epath.Path]:
  """``('params'|'train_state', directory)`` of what `path` holds."""
  if not path.exists():
    raise ValueError(f'{path} does not exist.')
  if not path.is_dir():
    raise ValueError(f'{path} is a file; expected a checkpoint directory (a '
                     'workdir, its checkpoints/, one step of it, or a '
                     'parameters-only checkpoint with model.json).')
  if (path / params.META_FILE).exists():
    return 'params', path
  if (path / 'state').is_dir():
    layout.check_step(path)
    return 'train_state', path
  directory = path / layout.CHECKPOINTS_DIR
  newest = layout.newest_step(directory if directory.is_dir() else path)
  if newest is None:
    raise ValueError(
        f'No checkpoint in {path}: expected a workdir with checkpoints/<step>/'
        ', a checkpoints/ directory, one <step>/ directory, or a '
        'parameters-only checkpoint (model.json).')
  return 'train_state', newest


def _read_json_item(step_dir: epath.Path, item: str) -> dict:
  try:
    value = ocp.JsonCheckpointHandler().restore(step_dir / item)
  except Exception as e:  # pylint: disable=broad-except
    raise ValueError(
        f'Cannot read the {item} of the checkpoint {step_dir} (is it '
        f'truncated or corrupt?): {cli.one_line(e)}') from None
  if not isinstance(value, dict):
    raise ValueError(f'{step_dir / item} does not hold a JSON object.')
  return value


def _read_variables(item_dir: epath.Path, where: epath.Path, keys=None):
  try:
    return layout.read_arrays(item_dir, keys)
  except Exception as e:  # pylint: disable=broad-except
    raise ValueError(
        f'Cannot read the variables of the checkpoint {where} (is it '
        f'truncated or corrupt?): {cli.one_line(e)}') from None


def _model(kwargs: dict, where: epath.Path,
           dtype: Optional[str]) -> googlenet.GoogLeNet:
  kwargs = dict(kwargs, **({'dtype': dtype} if dtype is not None else {}))
  try:
    return googlenet.create_model(**kwargs)
  except (TypeError, ValueError) as e:
    raise ValueError(f'{where}: the saved model arguments do not build a '
                     f'model: {cli.one_line(e)}') from None


def _load_train_state(step_dir: epath.Path, polyak: bool,
                      dtype: Optional[str]) -> Restored:
  meta = _read_json_item(step_dir, 'metadata')
  if not str(meta.get('format', '')).startswith(_TRAIN_STATE_FORMAT_PREFIX):
    raise ValueError(f'{step_dir / "metadata"} has format '
                     f'{meta.get("format")!r}, not an inception_jax training '
                     'checkpoint.')
  model = _model(meta['model'], step_dir, dtype)
  config = ml_collections.ConfigDict(_read_json_item(step_dir, 'config'))
  params_key, state_key = (('ema_params', 'ema_model_state') if polyak
                           else ('params', 'model_state'))
  state = _read_variables(step_dir / 'state', step_dir,
                          (params_key, state_key))
  names = (meta.get('dataset') or {}).get('class_names')
  return Restored(
      model=model, variables={'params': state[params_key], **state[state_key]},
      config=config, step=int(meta.get('step', step_dir.name)),
      class_names=tuple(names) if names else None,
      image_size=int(meta['image_size']), path=os.fspath(step_dir),
      kind='train_state', meta=meta)


def _load_params(path: epath.Path, dtype: Optional[str]) -> Restored:
  meta = params.read_meta(path)
  model = _model(meta['model'], path / params.META_FILE, dtype)
  variables = _read_variables(path / params.VARIABLES_DIR, path)
  # Collections saved empty (batch_stats without BatchNorm) are left out.
  variables = {k: v for k, v in variables.items()
               if k == 'params' or jax.tree.leaves(v)}
  step = (meta.get('extra') or {}).get('step')
  names = meta.get('class_names')
  return Restored(
      model=model, variables=variables, config=None,
      step=int(step) if step is not None else None,
      class_names=tuple(names) if names else None,
      image_size=int(meta['image_size']), path=os.fspath(path),
      kind='params', meta=meta)


def load(path: epath.PathLike, *, polyak: bool = True,
         dtype: Optional[str] = None) -> Restored:
  """Restores a model and its variables onto this process's first device.

  Args:
    path: a workdir, its ``checkpoints/`` directory, one step directory, or
      a parameters-only checkpoint; local or ``gs://``. For a workdir or
      ``checkpoints/`` the newest whole step is used
      (`layout.complete_steps`, the trainer's rule).
    polyak: the Polyak-averaged weights (what evaluation reports) rather
      than the raw ones. A parameters-only checkpoint holds one set and
      ignores this.
    dtype: override the compute dtype the model was trained with (e.g.
      'float32' for a bfloat16 TPU run restored on a CPU). Parameters are
      float32 either way.

  Returns:
    A `Restored` with the model, variables, config, step, class names and
    image size.

  Raises:
    ValueError: `path` holds no complete checkpoint, or its files cannot be
      read.
  """
  kind, directory = _find(epath.Path(paths.resolve(path)))
  if kind == 'params':
    restored = _load_params(directory, dtype)
  else:
    restored = _load_train_state(directory, polyak, dtype)
  return restored._replace(variables=jax.device_put(
      restored.variables, jax.local_devices()[0]))


def config_of(restored: Restored) -> Optional[ml_collections.ConfigDict]:
  """The training config, also for an exported checkpoint that kept it."""
  if restored.config is not None:
    return copy.deepcopy(restored.config)
  saved = (restored.meta.get('extra') or {}).get('config')
  return ml_collections.ConfigDict(saved) if saved else None
