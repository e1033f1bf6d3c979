"""Saving and resuming a training run: `Checkpoints` and the run's `Clock`.

One Orbax manager over ``DIR/checkpoints/`` (the layout is in `layout`)
saves the train state, the input position, the config and the metadata of a
step together, asynchronously. A run resumes from `layout.complete_steps`'s
newest step, the one `inception_jax.load` reads too.
"""

from __future__ import annotations

import dataclasses
import logging as pylogging
from typing import Any, Callable, Mapping, Optional, Tuple

from absl import logging
import flax
import jax
import orbax.checkpoint as ocp
from etils import epath

from inception_jax.checkpoints import layout
from inception_jax.data import position


_REGISTERED = False


def _save_each_array_from_one_replica() -> None:
  """Orbax's default ("replica-parallel") has every replica of a replicated
  array write a slice of it, and takes the slices with one eager, compiled
  `slice` per array: about 1,200 per save of this train state (parameters,
  momentum, Polyak average), 1.3-2 s a save on a CPU and 3.9 s of compiles
  in a fresh process, for arrays of at most 4 MB (the classifier). One
  replica writing each whole array is Orbax's other mode, with the same
  files. (The handler is registered for the process, as Orbax has it;
  `array_metadata_store` is what Orbax's default handler carries.)"""
  from orbax.checkpoint._src.metadata import array_metadata_store  # pylint: disable=g-import-not-at-top
  global _REGISTERED
  if _REGISTERED:
    return
  absl_logger = logging.get_absl_logger()
  level = absl_logger.level
  absl_logger.setLevel(pylogging.ERROR)  # Orbax warns of every override
  try:
    ocp.type_handlers.register_type_handler(
        jax.Array, ocp.type_handlers.ArrayHandler(
            use_replica_parallel=False,
            array_metadata_store=array_metadata_store.Store()),
        override=True)
  finally:
    absl_logger.setLevel(level)
  _REGISTERED = True


class IteratorStateHandler(ocp.CheckpointHandler):
  """Saves each process's input position as its own JSON file.

  The state is taken as text when `save` is called: with asynchronous
  checkpointing the loop (and the iterator with it) has moved on before the
  arrays reach disk.
  """

  def save(self, directory: epath.Path, args: 'IteratorStateSave'):
    directory.mkdir(parents=True, exist_ok=True)
    (directory / layout.iterator_file(
        jax.process_index(), jax.process_count())).write_text(args.state)

  def restore(self, directory: epath.Path,
              args: Optional['IteratorStateRestore'] = None) -> str:
    files = layout.iterator_files(directory)
    # Saved by another number of processes: the position is the global
    # stream's (the same in every file), so any process's will do.
    own = (jax.process_index(), jax.process_count())
    path = files.get(own) or (files[min(files)] if files else None)
    if path is None:
      raise ValueError(f'{directory} holds no input position.')
    return path.read_text()

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


def _first_mismatch(saved: Any, expected: Any) -> Optional[str]:
  """The first parameter that differs in name or shape, or None."""
  def shapes(tree):
    flat = flax.traverse_util.flatten_dict(
        flax.serialization.to_state_dict(tree), sep='/')
    return {k: tuple(getattr(v, 'shape', ())) for k, v in flat.items()}
  saved, expected = shapes(saved), shapes(expected)
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


def _adopt_complete_steps(directory: epath.Path) -> Optional[int]:
  """The newest whole step, every whole one marked so that Orbax sees it.

  Every process reads; process 0 writes the markers, then all wait for it.
  """
  steps = list(layout.complete_steps(directory))
  if jax.process_index() == 0:
    for step_dir in steps:
      if not layout.has_commit_marker(step_dir):
        layout.mark_complete(step_dir)
        logging.warning('The checkpoint %s had no commit marker; its files '
                        'are all there and readable, so it is marked and '
                        'used.', step_dir)
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
    multihost_utils.sync_global_devices('inception_jax:checkpoint_markers')
  return int(steps[0].name) if steps else None


class Checkpoints:
  """`DIR/checkpoints/`: periodic asynchronous saves and exact resume."""

  def __init__(self, workdir: str, *, keep: int):
    _save_each_array_from_one_replica()
    self.directory = epath.Path(workdir) / layout.CHECKPOINTS_DIR
    # The step a run resumes from (None: a fresh start).
    self.resume_step = _adopt_complete_steps(self.directory)
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

  def save(self, step: int, state: Any, *, iterator_state: Any,
           config: Mapping[str, Any], metadata: Mapping[str, Any],
           clock: Clock) -> None:
    """Starts saving `state` at `step`; returns once the arrays are copied."""
    metadata = dict(metadata, format=layout.FORMAT, step=int(step),
                    clock=clock.to_json())
    self.manager.save(
        int(step),
        args=ocp.args.Composite(
            state=ocp.args.StandardSave(flax.serialization.to_state_dict(state)),
            data_iterator=IteratorStateSave(
                position.iterator_state_to_text(iterator_state)),
            config=ocp.args.JsonSave(dict(config)),
            metadata=ocp.args.JsonSave(metadata)),
        force=True)

  def check_architecture(self, step: int, abstract_state: Any) -> None:
    """Raises ValueError naming the first parameter that differs."""
    saved = self.manager.item_metadata(step)['state']
    saved = getattr(saved, 'tree', saved)
    problem = None
    for key in ('params', 'model_state'):
      problem = problem or _first_mismatch(
          {key: saved.get(key, {})}, {key: getattr(abstract_state, key)})
    if problem is not None:
      raise ValueError(
          f'the checkpoint {self.directory / str(step)} was written by a '
          f'different architecture: {problem}. Use the config it was trained '
          f'with (see its config.json) or a new --workdir.')

  def restore_or_init(self, *, init: Callable[[], Any],
                      abstract: Callable[[], Any],
                      train_iter: Any) -> Tuple[Any, Optional[Clock]]:
    """The newest whole checkpoint's state, or `init()` when there is none.

    A restored run also puts the input iterator back where the checkpoint
    left it, on any number of processes and workers. Returns the state
    (onto `abstract()`'s shardings) and the saved clock (None for a fresh
    start).
    """
    step = self.resume_step
    if step is None:
      return init(), None
    abstract_state = abstract()
    self.check_architecture(step, abstract_state)
    restored = self.manager.restore(
        step,
        args=ocp.args.Composite(
            state=ocp.args.StandardRestore(
                flax.serialization.to_state_dict(abstract_state)),
            data_iterator=IteratorStateRestore(),
            metadata=ocp.args.JsonRestore()))
    train_iter.set_state(position.iterator_state_from_text(
        restored['data_iterator'], train_iter.get_state()))
    state = flax.serialization.from_state_dict(abstract_state,
                                               restored['state'])
    return state, Clock.from_json(restored['metadata'].get('clock'))

  def wait_until_finished(self) -> None:
    self.manager.wait_until_finished()

  def close(self) -> None:
    self.manager.close()
