"""Restore a trained GoogLeNet anywhere: `load(path)`.

Two kinds of checkpoint are read:

* A training checkpoint, ``DIR/checkpoints/<step>/`` (see
  `inception_jax.checkpointing`). Only the variables inference needs are
  read from its ``state`` item (the Polyak averages by default, or the raw
  weights): the optimiser state never leaves the disk.
* A parameters-only checkpoint (``model.json`` + ``variables/``, see
  `inception_jax.params_checkpoint`), as written by `inception_jax.export`
  and by the torchvision converter.

Arrays are restored from the shapes and dtypes recorded in the checkpoint
onto this process's first device, never onto the sharding they were saved
with, so a checkpoint written by 8 TPU chips loads in a one-CPU Colab.

This module is what a Colab imports: it must stay free of TensorFlow, TFDS,
grain and optax (a test checks ``sys.modules``). It shares the checkpoint
layout's names with `inception_jax.checkpointing`, which needs none of them,
and restores only the arrays inference needs.
"""

from __future__ import annotations

import copy
import os
from typing import NamedTuple, Optional, Sequence, Tuple
import warnings

import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
from etils import epath

from inception_jax import checkpointing
from inception_jax import params_checkpoint
from inception_jax import paths
from inception_jax.models import googlenet

TRAIN_STATE_FORMAT_PREFIX = checkpointing.FORMAT.rsplit('/', 1)[0] + '/'
CHECKPOINTS_DIR = checkpointing.CHECKPOINTS_DIR
STATE_ITEM, _, CONFIG_ITEM, METADATA_ITEM = checkpointing.ITEMS
# Orbax writes a step under a temporary name and renames it when complete.
_TMP_MARKER = '.orbax-checkpoint-tmp'
# What load() reads of an unmarked step (the trainer's every item but the
# input positions, which inference never needs).
_LOAD_ITEMS = (STATE_ITEM, CONFIG_ITEM, METADATA_ITEM)
# Items are read by name, not by Orbax's storage-specific commit check:
# find_checkpoint has already decided the step is whole.
_READ_AS_FINAL = {'temporary_path_class':
                  ocp.path.atomicity.AtomicRenameTemporaryPath}


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


def _as_path(path: epath.PathLike) -> epath.Path:
  return epath.Path(paths.resolve(path))


def _one_line(error: BaseException) -> str:
  text = ' '.join(str(error).split())
  text = text or type(error).__name__
  return text if len(text) <= 300 else text[:297] + '...'


def _is_tmp(path: epath.Path) -> bool:
  return _TMP_MARKER in path.name


def _is_step_dir(path: epath.Path) -> bool:
  return (path / STATE_ITEM).is_dir() and (path / METADATA_ITEM).is_dir()


def _is_finalized(path: epath.Path) -> bool:
  """Whether a step is whole: False for an interrupted save's temporary
  directory; True with Orbax's commit marker; without one (a copy made by
  gsutil or cp -r, or a save interrupted on gs://, where Orbax commits by
  the marker rather than by a rename) True only once every file is checked.

  Raises:
    ValueError: an unmarked step that fails the check (naming it and what is
      missing), or one whose marker cannot be read.
  """
  if _is_tmp(path):
    return False
  try:
    marked = checkpointing.has_commit_marker(path)
  except Exception as e:  # pylint: disable=broad-except
    # An unreadable step is reported, never trusted.
    raise ValueError(f'Cannot tell whether the checkpoint {path} is complete: '
                     f'{_one_line(e)}') from None
  if not marked:
    checkpointing.check_complete(path, _LOAD_ITEMS)
  return True


def _newest_step_dir(directory: epath.Path) -> Optional[epath.Path]:
  """The newest complete ``<step>`` directory; warns about partial ones."""
  candidates = []
  for child in directory.iterdir():
    if not child.is_dir():
      continue
    if _is_tmp(child):
      warnings.warn(
          f'Ignoring the incomplete checkpoint {child} (a save that was '
          'interrupted or is still running); only complete steps are read.',
          stacklevel=3)
    elif child.name.isdigit():
      candidates.append((int(child.name), child))
  # Newest first, checking only as far as the first whole one: an unmarked
  # step is read in full to be trusted.
  for _, child in sorted(candidates, reverse=True):
    try:
      if _is_finalized(child) and _is_step_dir(child):
        return child
    except ValueError as e:
      warnings.warn(f'Ignoring {e}', stacklevel=3)
  return None


def find_checkpoint(path: epath.PathLike) -> Tuple[str, epath.Path]:
  """Resolves `path` to ``('params'|'train_state', directory)``.

  `path` may be a workdir, its ``checkpoints/`` directory, one step
  directory or a parameters-only checkpoint.

  Raises:
    ValueError: nothing under `path` is a complete checkpoint.
  """
  path = _as_path(path)
  if not path.exists():
    raise ValueError(f'{path} does not exist.')
  if not path.is_dir():
    raise ValueError(f'{path} is a file; expected a checkpoint directory (a '
                     'workdir, its checkpoints/, one step of it, or a '
                     'parameters-only checkpoint with model.json).')
  if (path / params_checkpoint.META_FILE).exists():
    return 'params', path
  if _is_step_dir(path):
    if not _is_finalized(path):
      raise ValueError(f'{path} is an incomplete checkpoint (its save was '
                       'interrupted); pass its parent directory to use the '
                       'newest complete one.')
    return 'train_state', path
  directory = path / CHECKPOINTS_DIR
  if not directory.is_dir():
    directory = path
  newest = _newest_step_dir(directory)
  if newest is None:
    raise ValueError(
        f'No checkpoint in {path}: expected a workdir with checkpoints/<step>/'
        ', a checkpoints/ directory, one <step>/ directory, or a '
        'parameters-only checkpoint (model.json).')
  return 'train_state', newest


def _read_json_item(step_dir: epath.Path, item: str) -> dict:
  """Reads a JSON item of a composite checkpoint (Orbax JsonSave)."""
  item_dir = step_dir / item
  try:
    with ocp.Checkpointer(ocp.JsonCheckpointHandler(),
                          **_READ_AS_FINAL) as ckptr:
      value = ckptr.restore(item_dir)
  except Exception as e:  # pylint: disable=broad-except
    raise ValueError(
        f'Cannot read the {item} of the checkpoint {step_dir} (is it '
        f'truncated or corrupt?): {_one_line(e)}') from None
  if not isinstance(value, dict):
    raise ValueError(f'{item_dir} does not hold a JSON object.')
  return value


def _variable_keys(step_dir: epath.Path, polyak: bool) -> Tuple[str, str]:
  """The state's keys of the parameters and of the other model variables.

  Checkpoints from before `model_state` existed hold BatchNorm's statistics
  as ``batch_stats`` / ``ema_batch_stats``.
  """
  try:
    with ocp.Checkpointer(ocp.PyTreeCheckpointHandler(),
                          **_READ_AS_FINAL) as ckptr:
      tree = ckptr.metadata(step_dir / STATE_ITEM)
      tree = getattr(tree, 'item_metadata', tree)
      tree = getattr(tree, 'tree', tree)
      legacy = 'model_state' not in tree and 'batch_stats' in tree
  except Exception as e:  # pylint: disable=broad-except
    raise ValueError(
        f'Cannot read the state of the checkpoint {step_dir} (is it '
        f'truncated or corrupt?): {_one_line(e)}') from None
  state = 'batch_stats' if legacy else 'model_state'
  return ('ema_params', 'ema_' + state) if polyak else ('params', state)


def restore_state_subtrees(step_dir: epath.PathLike,
                           keys: Sequence[str]) -> dict:
  """Restores only `keys` of a training checkpoint's ``state`` item.

  The restore targets are built from the checkpoint's own array metadata
  (shape and dtype) with a single-device sharding on this process, so the
  device count of the run that saved it does not matter, and what is not
  asked for (the optimiser state) is never read.

  Returns:
    ``{key: subtree}``; a subtree saved empty (``batch_stats`` of a model
    without BatchNorm) comes back as ``{}``.

  Raises:
    ValueError: a key the checkpoint lacks, or unreadable (truncated,
      corrupt) files.
  """
  state_dir = _as_path(step_dir) / STATE_ITEM
  sharding = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  try:
    with ocp.Checkpointer(ocp.PyTreeCheckpointHandler(),
                          **_READ_AS_FINAL) as ckptr:
      tree = ckptr.metadata(state_dir)
      tree = getattr(tree, 'item_metadata', tree)
      tree = getattr(tree, 'tree', tree)
      if not isinstance(tree, dict):
        raise ValueError(f'unexpected metadata {type(tree).__name__}')
      missing = [k for k in keys if k not in tree]
      if missing:
        raise KeyError(f'the state has no {missing} (it has '
                       f'{sorted(tree)})')
      # Orbax cannot restore an empty subtree as a target; add those back.
      wanted = {k: tree[k] for k in keys if jax.tree.leaves(tree[k])}
      target = jax.tree.map(
          lambda m: jax.ShapeDtypeStruct(tuple(m.shape), np.dtype(m.dtype),
                                         sharding=sharding), wanted)
      restore_args = jax.tree.map(
          lambda t: ocp.ArrayRestoreArgs(sharding=sharding,
                                         global_shape=t.shape, dtype=t.dtype),
          target)
      restored = ckptr.restore(
          state_dir, args=ocp.args.PyTreeRestore(
              item=target, restore_args=restore_args, partial_restore=True))
  except Exception as e:  # pylint: disable=broad-except
    raise ValueError(
        f'Cannot restore the state of the checkpoint {step_dir} (is it '
        f'truncated or corrupt?): {_one_line(e)}') from None
  return {k: restored.get(k, {}) for k in keys}


def _model_from_kwargs(kwargs: dict, where: epath.Path,
                       dtype: Optional[str]) -> googlenet.GoogLeNet:
  kwargs = dict(kwargs)
  if dtype is not None:
    kwargs['dtype'] = dtype
  try:
    return googlenet.create_model(**kwargs)
  except (TypeError, ValueError) as e:
    raise ValueError(f'{where}: the saved model arguments do not build a '
                     f'model: {_one_line(e)}') from None


def _load_train_state(step_dir: epath.Path, polyak: bool,
                      dtype: Optional[str]) -> Restored:
  meta = _read_json_item(step_dir, METADATA_ITEM)
  if not str(meta.get('format', '')).startswith(TRAIN_STATE_FORMAT_PREFIX):
    raise ValueError(f'{step_dir / METADATA_ITEM} has format '
                     f'{meta.get("format")!r}, not an inception_jax training '
                     'checkpoint.')
  model = _model_from_kwargs(meta['model'], step_dir, dtype)
  config = None
  if (step_dir / CONFIG_ITEM).is_dir():
    config = ml_collections.ConfigDict(_read_json_item(step_dir, CONFIG_ITEM))
  params_key, state_key = _variable_keys(step_dir, polyak)
  subtrees = restore_state_subtrees(step_dir, (params_key, state_key))
  model_state = subtrees[state_key]
  if state_key.endswith('batch_stats'):
    model_state = {'batch_stats': model_state} if model_state else {}
  variables = {'params': subtrees[params_key], **model_state}
  dataset = meta.get('dataset') or {}
  names = dataset.get('class_names')
  return Restored(
      model=model, variables=variables, config=config,
      step=int(meta.get('step', step_dir.name)),
      class_names=tuple(names) if names else None,
      image_size=int(meta['image_size']), path=os.fspath(step_dir),
      kind='train_state', meta=meta)


def _load_params(path: epath.Path, dtype: Optional[str]) -> Restored:
  try:
    model, variables, meta = params_checkpoint.load_params_checkpoint(path)
  except ValueError:
    raise
  except Exception as e:  # pylint: disable=broad-except
    raise ValueError(f'Cannot read the checkpoint {path} (is it truncated or '
                     f'corrupt?): {_one_line(e)}') from None
  if dtype is not None:
    model = _model_from_kwargs(meta['model'], path, dtype)
  extra = meta.get('extra') or {}
  step = extra.get('step')
  names = meta.get('class_names')
  # Collections saved empty (batch_stats without BatchNorm) are left out.
  variables = {k: v for k, v in variables.items()
               if k == 'params' or jax.tree.leaves(v)}
  return Restored(
      model=model, variables=variables, config=None,
      step=int(step) if step is not None else None,
      class_names=tuple(names) if names else None,
      image_size=int(meta['image_size']), path=os.fspath(path),
      kind='params', meta=meta)


def load(path: epath.PathLike, *, polyak: bool = True,
         dtype: Optional[str] = None) -> Restored:
  """Restores a model and its variables onto this process's devices.

  Args:
    path: a workdir, its ``checkpoints/`` directory, one step directory, or
      a parameters-only checkpoint; local or ``gs://``. For a workdir or
      ``checkpoints/`` the newest complete step is used; steps left
      half-written by an interrupted save are skipped with a warning.
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
  kind, directory = find_checkpoint(path)
  if kind == 'params':
    return _load_params(directory, dtype)
  return _load_train_state(directory, polyak, dtype)


def config_of(restored: Restored) -> Optional[ml_collections.ConfigDict]:
  """The training config, also for an exported checkpoint that kept it.

  An older checkpoint's data config is brought to today's keys
  (`data.config.upgrade`), so it still rebuilds its input pipeline.
  """
  config = copy.deepcopy(restored.config)
  if config is None:
    saved = (restored.meta.get('extra') or {}).get('config')
    config = ml_collections.ConfigDict(saved) if saved else None
  if config is not None and 'data' in config:
    # TensorFlow-free, like the rest of this module.
    from inception_jax.data import config as data_config  # pylint: disable=g-import-not-at-top
    with config.unlocked():
      config.data = data_config.upgrade(config.data)
  return config
