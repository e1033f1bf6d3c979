"""A training run's checkpoints on disk, and which step is the newest whole one.

``DIR/checkpoints/<step>/`` is one Orbax composite checkpoint per saved step:

* ``state/``: the `TrainState` as a nested dict (Orbax StandardSave):
  ``step``, ``params``, ``model_state``, ``opt_state``, ``ema_params``,
  ``ema_model_state``, ``rng``, ``nonfinite_steps``. ``ema_*`` are the
  Polyak averages that evaluation and export use; ``model_state`` is
  ``{'batch_stats': ...}`` with BatchNorm and empty otherwise.
* ``data_iterator/process_<i>-of-<n>.json``: the input's position
  (`inception_jax.data.position`), the same in every process's file, so a
  resumed run sees exactly the batches the uninterrupted run would have, on
  any number of processes and workers.
* ``config/``: the run's full config (Orbax JSON item).
* ``metadata/``: what a loader needs without the training code (Orbax JSON
  item): ``format``, ``step``, ``model`` (every keyword argument of
  `models.create_model`, resolved), ``image_size``, ``dataset`` (``name``,
  ``num_classes``, ``class_names``) and ``clock`` (``wall_time_sec``,
  ``examples_seen``, over all the run's sessions).

Orbax writes a step under a temporary name and marks it finished with
``commit_success.txt`` (in the step and in each item); on a local disk it
then renames the step, on ``gs://`` the marker alone commits it. A step
copied without the markers (``gsutil cp``, ``cp -r``) is trusted once
`check_complete` has read every item back whole. `complete_steps` is that
rule, for the trainer and for `inception_jax.load` alike.

Nothing here imports TensorFlow, grain or optax: `inception_jax.load` uses it.
"""

from __future__ import annotations

import json
import re
from typing import Iterator, Optional, Sequence
import warnings

import jax
import numpy as np
import orbax.checkpoint as ocp
from etils import epath

from inception_jax import cli

FORMAT = 'inception_jax.train_state/1'
CHECKPOINTS_DIR = 'checkpoints'
ITEMS = ('state', 'data_iterator', 'config', 'metadata')
# Orbax's marker of a finished save, and of a save under way or interrupted.
COMMIT_MARKER = 'commit_success.txt'
TMP_MARKER = '.orbax-checkpoint-tmp'
_ITERATOR_FILE = re.compile(r'process_(\d+)-of-(\d+)\.json')


def iterator_file(process_index: int, process_count: int) -> str:
  return f'process_{process_index}-of-{process_count}.json'


def iterator_files(item_dir: epath.Path) -> dict:
  """``{(process_index, process_count): path}`` of a saved input position."""
  return {(int(m.group(1)), int(m.group(2))): path
          for path in item_dir.iterdir()
          for m in [_ITERATOR_FILE.fullmatch(path.name)] if m}


def has_commit_marker(step_dir: epath.PathLike) -> bool:
  return (epath.Path(step_dir) / COMMIT_MARKER).exists()


def read_arrays(item_dir: epath.Path,
                keys: Optional[Sequence[str]] = None) -> dict:
  """An Orbax tree item (state, variables) as numpy arrays.

  Shapes and dtypes come from the item's own metadata, so whatever sharding
  and device count saved it, it reads the same. With `keys`, only those
  top-level subtrees are read (an optimiser state is never touched); a
  subtree saved empty comes back as ``{}``.

  Raises:
    ValueError: a key the item lacks, or an array that does not read back
      whole in its recorded shape (a truncated copy).
  """
  # A handler, not a Checkpointer: a Checkpointer refuses an unmarked item on
  # gs:// before reading a byte, and whether such a copy is whole is for
  # `complete_steps` to decide, by reading it.
  handler = ocp.PyTreeCheckpointHandler()
  try:
    metadata = handler.metadata(item_dir)
    tree = dict(getattr(metadata, 'tree', metadata))
    if keys is not None:
      missing = [k for k in keys if k not in tree]
      if missing:
        raise ValueError(f'it has no {missing} (it has {sorted(tree)})')
      tree = {k: tree[k] for k in keys}
    # Orbax restores no empty subtree as a target; they are added back.
    wanted = {k: v for k, v in tree.items() if jax.tree.leaves(v)}
    restored = handler.restore(item_dir, args=ocp.args.PyTreeRestore(
        item=wanted, partial_restore=keys is not None,
        restore_args=jax.tree.map(
            lambda _: ocp.RestoreArgs(restore_type=np.ndarray), wanted)))
  finally:
    handler.close()
  for (path, saved), value in zip(jax.tree_util.tree_leaves_with_path(wanted),
                                  jax.tree.leaves(restored)):
    if np.shape(value) != tuple(saved.shape):
      raise ValueError(f'{jax.tree_util.keystr(path)} has shape '
                       f'{np.shape(value)}, its metadata {tuple(saved.shape)}')
  return {k: restored.get(k, {}) for k in tree}


def _check_iterator_files(item_dir: epath.Path) -> None:
  """One readable input position per process of the run that saved it."""
  files = iterator_files(item_dir)
  counts = sorted({count for _, count in files})
  if len(counts) != 1:
    raise ValueError('expected the input positions of one run '
                     f'(process_<i>-of-<n>.json), found counts {counts}')
  indices = sorted(index for index, _ in files)
  if indices != list(range(counts[0])):
    raise ValueError(f'has the input positions of processes {indices} of '
                     f'{counts[0]}')
  for path in files.values():
    json.loads(path.read_text())


def check_complete(step_dir: epath.PathLike) -> None:
  """Raises ValueError unless every item of a saved step reads back whole.

  What is read: each item's directory; the JSON items (config, metadata);
  every array of ``state`` in full, against its recorded shape; one input
  position per process of the saving run. A step that passes is what the
  trainer wrote, whether or not Orbax's commit markers came with it.
  """
  step_dir = epath.Path(step_dir)
  for item in ITEMS:
    item_dir = step_dir / item
    try:
      if not item_dir.is_dir():
        raise ValueError('missing')
      if item == 'state':
        read_arrays(item_dir)
      elif item == 'data_iterator':
        _check_iterator_files(item_dir)
      elif not isinstance(ocp.JsonCheckpointHandler().restore(item_dir), dict):
        raise ValueError('not a JSON object')
    except Exception as e:  # pylint: disable=broad-except
      raise ValueError(
          f'the checkpoint {step_dir} has no commit marker and is incomplete '
          f'({item}/: {cli.one_line(e, limit=200)}); copy it again whole, or '
          'remove it to use the step before.') from None


def check_step(step_dir: epath.Path) -> None:
  """Raises ValueError unless `step_dir` is a whole step.

  Whole: not under Orbax's temporary name, and either marked committed by
  Orbax or, without the marker, passing `check_complete`.
  """
  if TMP_MARKER in step_dir.name:
    raise ValueError(f'{step_dir} is an incomplete checkpoint (its save was '
                     'interrupted or is still running); pass its parent '
                     'directory to use the newest complete one.')
  try:
    marked = has_commit_marker(step_dir)
  except Exception as e:  # pylint: disable=broad-except
    raise ValueError(f'Cannot tell whether the checkpoint {step_dir} is '
                     f'complete: {cli.one_line(e)}') from None
  if not marked:
    check_complete(step_dir)


def complete_steps(directory: epath.PathLike, *,
                   atomicity: Optional[ocp.options.AtomicityOptions] = None
                   ) -> Iterator[epath.Path]:
  """The whole steps under `directory`, newest first (`check_step`).

  The one rule for which steps count, the trainer's and the loader's:

  * a step under Orbax's temporary name is a save interrupted or still
    running: skipped, with a warning;
  * a step without Orbax's commit marker that fails `check_complete` is
    refused (ValueError naming it and what is missing) where Orbax itself
    would take it for a finished step (a local disk, where a save commits by
    renaming: it is a broken copy), and skipped with a warning where Orbax
    would not (``gs://``, where a save commits by the marker: it may be one
    still being written).

  Args:
    directory: a run's ``checkpoints/`` directory; local or ``gs://``.
    atomicity: how the storage commits a save, as Orbax's option says it;
      None: Orbax's choice for the path (the marker on ``gs://``).
  """
  directory = epath.Path(directory)
  if not directory.is_dir():
    return
  numbered = []
  for child in directory.iterdir():
    if TMP_MARKER in child.name:
      warnings.warn(f'Ignoring the incomplete checkpoint {child} (a save '
                    'that was interrupted or is still running); only '
                    'complete steps are read.', stacklevel=2)
    elif child.name.isdigit() and child.is_dir():
      numbered.append(child)
  for step_dir in sorted(numbered, key=lambda p: int(p.name), reverse=True):
    try:
      check_step(step_dir)
    except ValueError as e:
      if ocp.step.is_path_finalized(step_dir, atomicity_options=atomicity):
        raise
      warnings.warn(f'Ignoring {e}', stacklevel=2)
      continue
    yield step_dir


def newest_step(directory: epath.PathLike, *,
                atomicity: Optional[ocp.options.AtomicityOptions] = None
                ) -> Optional[epath.Path]:
  """The newest whole step under `directory` (`complete_steps`), or None."""
  return next(complete_steps(directory, atomicity=atomicity), None)


def mark_complete(step_dir: epath.Path) -> None:
  """Writes Orbax's commit markers into a step `check_complete` passed.

  Orbax on ``gs://`` takes an unmarked step for an interrupted save: it
  would neither resume from it nor keep it.
  """
  # The items first: a step's own marker says all of it is there.
  for path in [step_dir / item for item in ITEMS] + [step_dir]:
    (path / COMMIT_MARKER).write_text(
        f'Checked complete and marked by inception_jax: {path}')

