"""Orbax checkpoints of a training run: save, find the newest, resume.

Layout of ``DIR/checkpoints/<step>/`` (one Orbax composite checkpoint per
saved step; Orbax writes it under a temporary name and renames it when it is
complete, so a directory named by a bare step number is always whole):

* ``state/``: the `TrainState` as a nested dict (Orbax StandardSave):
  ``step``, ``params``, ``model_state``, ``opt_state``, ``ema_params``,
  ``ema_model_state``, ``rng``, ``nonfinite_steps``. `ema_*` are the Polyak
  averages that evaluation and export use. ``model_state`` is
  ``{'batch_stats': ...}`` with BatchNorm and empty otherwise. (Checkpoints
  written before it existed hold ``batch_stats`` / ``ema_batch_stats``;
  they still resume and load.)
* ``data_iterator/process_<i>-of-<n>.json``: the input's position (JSON,
  `INPUT_POSITION_FORMAT`: the count of the global stream's examples
  consumed, the same in every process's file), so a resumed run sees
  exactly the batches the uninterrupted run would have seen, on any number
  of processes and workers. (Older runs saved grain's per-process state;
  they resume at the saved step of today's order, with a warning.)
* ``config/``: the run's full config (Orbax JSON item).
* ``metadata/``: what a loader needs without the training code (Orbax JSON
  item): ``format``, ``step``, ``model`` (the exact keyword arguments of
  `models.create_model`, every one, resolved), ``image_size``,
  ``dataset`` (``name``, ``num_classes``, ``class_names``), and ``clock``
  (``wall_time_sec``, ``examples_seen``: the run's clock over all its
  sessions, which a resumed run continues).

``DIR/config.json`` beside it is the same config for people and scripts.

Orbax marks a finished save with ``commit_success.txt`` (in the step and in
each item). A step copied without those markers (``gsutil cp``/``cp -r`` of
a checkpoint written by an Orbax that did not write them; on ``gs://``
Orbax's own check then calls it incomplete) is trusted only after
`check_complete` has read every file the trainer writes: a resumed run then
adds the markers (`adopt_unmarked_steps`), `restore.load` reads it as it is.
"""

from __future__ import annotations

import dataclasses
import json
import re
from typing import Any, Callable, Mapping, Optional, Tuple

from absl import logging
import flax
import jax
import numpy as np
import orbax.checkpoint as ocp
from etils import epath

from inception_jax.train_state import upgrade_state_dict

FORMAT = 'inception_jax.train_state/1'
CHECKPOINTS_DIR = 'checkpoints'
ITEMS = ('state', 'data_iterator', 'config', 'metadata')
# The training input's saved position (data/pipeline.py): the count of the
# global stream's examples consumed, valid for any process count.
INPUT_POSITION_FORMAT = 'inception_jax.input_position/1'
# Orbax's marker of a finished save (its atomicity.COMMIT_SUCCESS_FILE).
COMMIT_MARKER = 'commit_success.txt'
_ITERATOR_FILE = re.compile(r'process_(\d+)-of-(\d+)\.json')


# --- The input iterator's state, one JSON file per process. -----------------

class IteratorStateHandler(ocp.CheckpointHandler):
  """Saves each process's input iterator state as its own JSON file.

  The same file names as grain's own Orbax handler, but the state is taken
  as text when `save` is called: with asynchronous checkpointing the loop
  has moved on (and the iterator with it) before the arrays reach disk.
  """

  def save(self, directory: epath.Path, args: 'IteratorStateSave'):
    directory.mkdir(parents=True, exist_ok=True)
    (directory / _iterator_file()).write_text(args.state)

  def restore(self, directory: epath.Path,
              args: Optional['IteratorStateRestore'] = None) -> Optional[str]:
    path = directory / _iterator_file()
    if path.exists():
      return path.read_text()
    # Saved by another number of processes: the input position is the
    # global stream's (the same in every file), so any process's will do.
    saved = sorted((int(m.group(1)), p) for p in directory.iterdir()
                   for m in [_ITERATOR_FILE.fullmatch(p.name)] if m)
    return saved[0][1].read_text() if saved else None

  def metadata(self, directory: epath.Path) -> Any:
    return None


@ocp.args.register_with_handler(IteratorStateHandler, for_save=True)
@dataclasses.dataclass
class IteratorStateSave(ocp.args.CheckpointArgs):
  state: str


@ocp.args.register_with_handler(IteratorStateHandler, for_restore=True)
@dataclasses.dataclass
class IteratorStateRestore(ocp.args.CheckpointArgs):
  pass


def _iterator_file() -> str:
  return f'process_{jax.process_index()}-of-{jax.process_count()}.json'


def iterator_state_to_text(state: Any) -> str:
  """grain's DataLoaderIterator gives JSON bytes, DatasetIterator a dict."""
  if isinstance(state, bytes):
    return state.decode('utf-8')
  if isinstance(state, str):
    return state
  return json.dumps(state, indent=1)


def iterator_state_from_text(text: str, like: Any) -> Any:
  """Converts saved text back to the kind of state `like` is."""
  if isinstance(like, bytes):
    return text.encode('utf-8')
  if isinstance(like, str):
    return text
  return json.loads(text)


def input_position(text: Optional[str]) -> Optional[dict]:
  """A saved input state in the pipeline's format, or None (an older run's
  per-process grain state, or none)."""
  try:
    value = json.loads(text) if text else None
  except ValueError:
    return None
  if isinstance(value, dict) and value.get('format') == INPUT_POSITION_FORMAT:
    return value
  return None


# --- Steps without Orbax's commit markers. ---------------------------------

def _one_line(error: BaseException) -> str:
  text = ' '.join(str(error).split()) or type(error).__name__
  return text if len(text) <= 200 else text[:197] + '...'


def has_commit_marker(step_dir: epath.PathLike) -> bool:
  return (epath.Path(step_dir) / COMMIT_MARKER).exists()


def _tree_of(metadata: Any) -> Any:
  metadata = getattr(metadata, 'item_metadata', metadata)
  return getattr(metadata, 'tree', metadata)


def _check_state(state_dir: epath.Path) -> None:
  """Reads every array of the ``state`` item: truncated files fail here."""
  # Handlers, not Checkpointers: a Checkpointer refuses an unmarked item on
  # gs:// before reading a byte, which is the very case checked here.
  handler = ocp.PyTreeCheckpointHandler()
  try:
    tree = _tree_of(handler.metadata(state_dir))
    if not jax.tree.leaves(tree):
      raise ValueError('it holds no arrays')
    as_numpy = jax.tree.map(
        lambda _: ocp.RestoreArgs(restore_type=np.ndarray), tree)
    restored = handler.restore(
        state_dir, args=ocp.args.PyTreeRestore(restore_args=as_numpy))
    for (path, saved), value in zip(
        jax.tree_util.tree_leaves_with_path(tree), jax.tree.leaves(restored)):
      if tuple(np.shape(value)) != tuple(getattr(saved, 'shape', ())):
        raise ValueError(f'{jax.tree_util.keystr(path)} has shape '
                         f'{np.shape(value)}, its metadata {saved.shape}')
  finally:
    handler.close()


def _check_iterator_states(item_dir: epath.Path) -> None:
  """One readable input position per process of the run that saved it."""
  found = {}
  for path in item_dir.iterdir():
    match = _ITERATOR_FILE.fullmatch(path.name)
    if match:
      found.setdefault(int(match.group(2)), set()).add(int(match.group(1)))
      json.loads(path.read_text())
  if len(found) != 1:
    raise ValueError('expected the input positions of one run '
                     f'(process_<i>-of-<n>.json), found counts {sorted(found)}')
  (count, indices), = found.items()
  if indices != set(range(count)):
    raise ValueError(f'has the input positions of processes {sorted(indices)} '
                     f'of {count}')


def check_complete(step_dir: epath.PathLike,
                   items: Tuple[str, ...] = ITEMS) -> None:
  """Raises ValueError unless every item of a saved step reads back whole.

  What is read: each item's directory; the JSON items (config, metadata);
  every array of ``state`` in full, against its recorded shape; one input
  position per process of the saving run. A step that passes is what the
  trainer wrote, whether or not Orbax's commit markers came with it.
  """
  step_dir = epath.Path(step_dir)
  problem = None
  for item in items:
    item_dir = step_dir / item
    try:
      if not item_dir.is_dir():
        raise ValueError('missing')
      if item == 'state':
        _check_state(item_dir)
      elif item == 'data_iterator':
        _check_iterator_states(item_dir)
      else:
        handler = ocp.JsonCheckpointHandler()
        if not isinstance(handler.restore(item_dir), dict):
          raise ValueError('not a JSON object')
    except Exception as e:  # pylint: disable=broad-except
      problem = f'{item}/: {_one_line(e)}'
      break
  if problem is not None:
    raise ValueError(
        f'the checkpoint {step_dir} has no commit marker and is incomplete '
        f'({problem}); copy it again whole, or remove it to use the step '
        'before.')


def adopt_unmarked_steps(directory: epath.Path) -> None:
  """Checks each step without a commit marker and marks the complete ones.

  Orbax on gs:// ignores a step without ``commit_success.txt`` (a resumed
  run would silently start over); on a local disk it trusts any directory
  named by a step number. A complete copy is marked so both see it; an
  incomplete one that Orbax would trust raises ValueError naming it, one
  Orbax ignores is left to Orbax (an interrupted save on gs:// looks the
  same, and Orbax removes it).

  Every process reads; only process 0 writes, then all wait for it.
  """
  unmarked = []
  if directory.is_dir():
    unmarked = sorted((p for p in directory.iterdir()
                       if p.name.isdigit() and not has_commit_marker(p)),
                      key=lambda p: int(p.name))
  multihost = jax.process_count() > 1
  if multihost:
    # Process 0's count decides for all (one collective, as the workdir
    # lock's). Process 0 writes only after it, so every process listed the
    # same steps before any marker appeared.
    from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
    count = int(multihost_utils.broadcast_one_to_all(np.int32(len(unmarked))))
    if count == 0:
      return
  for step_dir in unmarked:
    try:
      check_complete(step_dir)
    except ValueError as e:
      if ocp.step.is_path_finalized(step_dir):
        raise
      logging.warning('Ignoring %s', e)
      continue
    if jax.process_index() == 0:
      for path in [step_dir] + [step_dir / item for item in ITEMS]:
        (path / COMMIT_MARKER).write_text(
            f'Checked complete and marked by inception_jax: {path}')
      logging.warning('The checkpoint %s had no commit marker; its files are '
                      'all there and readable, so it is marked and used.',
                      step_dir)
  if multihost:
    multihost_utils.sync_global_devices('inception_jax:adopt_unmarked_steps')


# --- Comparing the architecture of a checkpoint with the config's. ---------

def _flat_shapes(tree: Any) -> dict:
  flat = flax.traverse_util.flatten_dict(
      flax.serialization.to_state_dict(tree), sep='/')
  return {k: tuple(getattr(v, 'shape', ())) for k, v in flat.items()}


def first_mismatch(saved: Any, expected: Any) -> Optional[str]:
  """Describes the first parameter that differs in name or shape, or None."""
  saved, expected = _flat_shapes(saved), _flat_shapes(expected)
  for name in sorted(set(saved) | set(expected)):
    if name not in saved:
      return f'{name} (shape {expected[name]}) is not in the checkpoint'
    if name not in expected:
      return (f'{name} (shape {saved[name]}) is in the checkpoint but not in '
              f'the model the config builds')
    if saved[name] != expected[name]:
      return (f'{name} has shape {saved[name]} in the checkpoint but '
              f'{expected[name]} in the model the config builds')
  return None


class ArchitectureMismatchError(ValueError):
  pass


@dataclasses.dataclass
class Clock:
  """The run's clock, over every session that led to its state."""
  wall_time_sec: float = 0.0
  examples_seen: int = 0

  def to_json(self) -> dict:
    return dataclasses.asdict(self)

  @classmethod
  def from_json(cls, value: Optional[Mapping[str, Any]]) -> 'Clock':
    value = value or {}
    return cls(wall_time_sec=float(value.get('wall_time_sec', 0.0)),
               examples_seen=int(value.get('examples_seen', 0)))


# --- The manager. -----------------------------------------------------------

class Checkpoints:
  """`DIR/checkpoints/`: periodic asynchronous saves and exact resume."""

  def __init__(self, workdir: str, *, keep: int):
    self.directory = epath.Path(workdir) / CHECKPOINTS_DIR
    self._warn_about_partial_saves()
    adopt_unmarked_steps(self.directory)
    self.manager = ocp.CheckpointManager(
        self.directory,
        options=ocp.CheckpointManagerOptions(
            max_to_keep=keep if keep and keep > 0 else None,
            enable_async_checkpointing=True,
            # Saves are decided by the training loop, not by Orbax.
            save_interval_steps=1,
            cleanup_tmp_directories=True),
        # Handlers named up front, so a fresh process can read an item's
        # metadata (the architecture check) before restoring anything.
        item_handlers={
            'state': ocp.StandardCheckpointHandler(),
            'data_iterator': IteratorStateHandler(),
            'config': ocp.JsonCheckpointHandler(),
            'metadata': ocp.JsonCheckpointHandler(),
        })

  def _warn_about_partial_saves(self) -> None:
    if jax.process_index() != 0 or not self.directory.exists():
      return
    for path in self.directory.iterdir():
      if not path.name.isdigit() and 'tmp' in path.name:
        logging.warning('Ignoring the incomplete checkpoint %s (a save was '
                        'interrupted); it will be removed.', path)

  def latest_step(self) -> Optional[int]:
    return self.manager.latest_step()

  def save(self, step: int, state: Any, *, iterator_state: Any,
           config: Mapping[str, Any], metadata: Mapping[str, Any],
           clock: Clock) -> None:
    """Starts saving `state` at `step`; returns once the arrays are copied."""
    metadata = dict(metadata, format=FORMAT, step=int(step),
                    clock=clock.to_json())
    self.manager.save(
        int(step),
        args=ocp.args.Composite(
            state=ocp.args.StandardSave(flax.serialization.to_state_dict(state)),
            data_iterator=IteratorStateSave(
                iterator_state_to_text(iterator_state)),
            config=ocp.args.JsonSave(dict(config)),
            metadata=ocp.args.JsonSave(metadata)),
        force=True)

  def _saved_tree(self, step: int) -> dict:
    saved = self.manager.item_metadata(step)['state']
    return dict(getattr(saved, 'tree', saved))

  def check_architecture(self, step: int, abstract_state: Any) -> None:
    """Raises ArchitectureMismatchError naming the first differing parameter."""
    tree = upgrade_state_dict(self._saved_tree(step))
    problem = None
    for key in ('params', 'model_state'):
      problem = problem or first_mismatch(
          {key: tree.get(key, {})}, {key: getattr(abstract_state, key)})
    if problem is not None:
      raise ArchitectureMismatchError(
          f'the checkpoint {self.directory / str(step)} was written by a '
          f'different architecture: {problem}. Use the config it was trained '
          f'with (see its config.json) or a new --workdir.')

  def restore(self, step: int, abstract_state: Any
              ) -> Tuple[Any, Optional[str], Clock]:
    """The state (onto `abstract_state`'s shardings), the input iterator's
    saved text and the run's clock."""
    self.check_architecture(step, abstract_state)
    target = flax.serialization.to_state_dict(abstract_state)
    if 'batch_stats' in self._saved_tree(step):
      target = _legacy_layout(target)
    restored = self.manager.restore(
        step,
        args=ocp.args.Composite(
            state=ocp.args.StandardRestore(target),
            data_iterator=IteratorStateRestore(),
            metadata=ocp.args.JsonRestore()))
    state = flax.serialization.from_state_dict(
        abstract_state, upgrade_state_dict(restored['state']))
    clock = Clock.from_json((restored['metadata'] or {}).get('clock'))
    return state, restored['data_iterator'], clock

  def restore_or_init(self, *, init: Callable[[], Any],
                      abstract: Callable[[], Any], train_iter: Any,
                      worker_count: int) -> Tuple[Any, Optional[Clock]]:
    """The newest complete checkpoint's state, or `init()` when there is none.

    A restored run also puts the input iterator back where the checkpoint
    left it, on any number of processes and workers (`worker_count` is not
    part of the order; kept for callers). Returns the state and the saved
    clock (None for a fresh start).
    """
    del worker_count
    latest = self.latest_step()
    if latest is None:
      return init(), None
    state, iterator_text, clock = self.restore(latest, abstract())
    where = self.directory / str(latest)
    if input_position(iterator_text) is not None:
      train_iter.set_state(iterator_state_from_text(
          iterator_text, train_iter.get_state()))
      return state, clock
    # No position in today's format: an older run's per-process grain state
    # (another order altogether), or none saved for this process.
    current = input_position(
        iterator_state_to_text(train_iter.get_state()))
    if current is None:
      logging.warning('Checkpoint %s has no input position this input can '
                      'resume from; the input restarts from the beginning.',
                      where)
      return state, clock
    step = int(jax.device_get(state.step))
    current['examples'] = step * int(current['global_batch_size'])
    logging.warning(
        'Checkpoint %s has no input position in the current format (an older '
        'run\'s, or none for this process); the input continues at step %d of '
        'the current order, so examples of this epoch may repeat or be '
        'missed.', where, step)
    train_iter.set_state(json.dumps(current))
    return state, clock

  def wait_until_finished(self) -> None:
    self.manager.wait_until_finished()

  def close(self) -> None:
    self.manager.close()


def _legacy_layout(target: dict) -> dict:
  """A restore target in the layout of checkpoints from before model_state."""
  target = dict(target)
  for new, old in (('model_state', 'batch_stats'),
                   ('ema_model_state', 'ema_batch_stats')):
    target[old] = dict(target.pop(new)).get('batch_stats', {})
  return target
