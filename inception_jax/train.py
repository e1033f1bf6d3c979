"""Training and evaluation of GoogLeNet: `train_and_evaluate(config, workdir)`.

The driver reads top to bottom in sections: config, mesh, input, model,
update, checkpoint, loop, end. Its parts live beside it: `mesh` (multi-host
start-up, the device mesh, global batches, SIGTERM), `steps` (the jitted
train and evaluation steps), `evaluator` (one split, every example counted
once), `checkpoints.manager` (Orbax, restore-or-init, the run's clock) and
`metrics` (TensorBoard, metrics.jsonl, the progress line).

Two seams let a notebook or a test change what the run sees without
patching the code: `make_train_iter` replaces the training input, and
`on_step(step, metrics)` is called after every step (on the host, with the
step's metrics still on the device).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import math
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

from etils import epath
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from inception_jax import cli
from inception_jax import compile_cache
from inception_jax import evaluator as evaluator_lib
from inception_jax import mesh as mesh_lib
from inception_jax import metrics as metrics_lib
from inception_jax import paths
from inception_jax import steps
from inception_jax import workdir_lock
from inception_jax.checkpoints import finetune
from inception_jax.checkpoints import manager as checkpoint_manager
from inception_jax.data import config as data_config
from inception_jax.data import datasets
from inception_jax.data import normalization
from inception_jax.data import pipeline
from inception_jax.models import googlenet

# Fetched step metrics kept on the host between two logs; beyond this the
# oldest go (their finiteness checked), so memory stays bounded whatever the
# logging interval.
MAX_PENDING_STEPS = 1000
# Above this share of the training time spent waiting for the next batch,
# the end-of-run line calls the input the bottleneck.
INPUT_BOUND_FRACTION = 0.1


class NonFiniteError(FloatingPointError):
  """The loss or the gradient stopped being finite."""


def itstime(step: int, every: int, total: int) -> bool:
  """Whether a periodic action is due: every `every` steps, and at the end."""
  return step == total or (every > 0 and step % every == 0)


def validate_config(config: ml_collections.ConfigDict) -> None:
  """One-line errors for values the config loader cannot check by type."""
  # The model's arguments, checked by building it (cheap: nothing is
  # initialised) before the data set is prepared.
  model = googlenet.create_model(
      **dict(config.model, num_classes=config.model.num_classes or 1))
  if config.data.normalization not in normalization.MODES:
    raise ValueError(
        f'data.normalization={config.data.normalization!r} is not a mode; '
        f'use one of {", ".join(normalization.MODES)}.')
  if model.normalization == 'lrn' and config.data.normalization != 'caffe':
    raise ValueError(
        f'model.norm=lrn with data.normalization='
        f'{config.data.normalization!r}: the paper\'s LRN constants act only '
        f'at Caffe\'s 0-255 input; at this scale the LRNs change the logits '
        f'by about 1e-5 and the run would train without them. Use the '
        f'config arg norm=lrn (--config=FILE:norm=lrn), which sets both, or '
        f'add --config.data.normalization=caffe.')
  if config.data.image_size < googlenet.MIN_IMAGE_SIZE:
    raise ValueError(
        f'data.image_size={config.data.image_size} is too small: GoogLeNet '
        f'needs at least {googlenet.MIN_IMAGE_SIZE}.')
  for key in ('log_every_steps', 'eval_every_steps', 'checkpoint_every_steps',
              'min_steps', 'max_steps'):
    if config.get(key, 0) < 0:
      raise ValueError(f'{key} must be >= 0 (0 turns it off), got '
                       f'{config[key]}.')
  if config.total_steps <= 0 and config.num_epochs <= 0:
    raise ValueError('Set num_epochs > 0 or total_steps > 0.')
  if not 0 <= config.optimizer.polyak_decay < 1:
    raise ValueError(f'optimizer.polyak_decay must be in [0, 1), got '
                     f'{config.optimizer.polyak_decay}.')


@dataclasses.dataclass(frozen=True)
class Schedule:
  """How many steps a run trains, and the start-up line that says why."""
  steps: int
  steps_per_epoch: int
  line: str

  @property
  def epochs(self) -> float:
    return self.steps / self.steps_per_epoch


def schedule(num_images: int, batch_size: int, *, num_epochs: float,
             total_steps: int = 0, min_steps: int = 0,
             max_steps: int = 0) -> Schedule:
  """The run's length once its number of training images is known.

  ``total_steps`` > 0 is taken as it is. Otherwise ``num_epochs`` becomes
  steps (an epoch: the whole batches of ``num_images``), raised to
  ``min_steps`` (so a small data set still trains long enough to converge),
  then lowered to ``max_steps`` (a bound on the run's time); 0 turns either
  bound off, and the bound wins over the minimum.
  """
  per_epoch = max(1, num_images // batch_size)
  if total_steps > 0:
    return Schedule(total_steps, per_epoch,
                    f'schedule: {total_steps:,} steps (total_steps)')
  from_epochs = int(math.ceil(num_epochs * per_epoch))
  steps, why = from_epochs, ''
  if min_steps > 0 and steps < min_steps:
    steps, why = min_steps, (
        f'min_steps={min_steps}, since num_epochs={num_epochs:g} gives '
        f'{from_epochs:,}; --config.min_steps=0 trains num_epochs alone')
  if max_steps > 0 and steps > max_steps:
    steps, why = max_steps, (
        f'max_steps={max_steps}, since num_epochs={num_epochs:g} gives '
        f'{from_epochs:,}; --config.max_steps=0 lifts the bound')
  line = (f'schedule: {steps:,} steps = {steps / per_epoch:.4g} epochs of '
          f'{per_epoch:,} steps ({num_images:,} images, batch {batch_size})')
  return Schedule(steps, per_epoch, f'{line}: {why}' if why else line)


def schedule_of(config, num_images: int) -> Schedule:
  """`schedule` with the config's keys."""
  return schedule(num_images, config.batch_size,
                  num_epochs=config.num_epochs,
                  total_steps=config.total_steps,
                  min_steps=config.get('min_steps', 0),
                  max_steps=config.get('max_steps', 0))


def check_finite(history, skip_nonfinite: bool) -> None:
  """Raises NonFiniteError naming the first non-finite step and metric."""
  if skip_nonfinite:
    return
  for step, m in history:
    for name in ('loss', 'grad_norm'):
      if m[f'nonfinite/{name}']:
        raise NonFiniteError(
            f'train/{name} is not finite at step {step}; the update was not '
            f'applied and nothing was checkpointed after it. Lower '
            f'optimizer.lr, or set --config.skip_nonfinite=True to skip such '
            f'steps and count them.')


def summarise(history) -> Dict[str, float]:
  """Mean of each metric over a logging interval (the lr: its last value)."""
  keys = [k for k in history[-1][1] if not k.startswith('nonfinite/')]
  out = {k: float(np.mean([m[k] for _, m in history])) for k in keys}
  out['train/lr'] = float(history[-1][1]['train/lr'])
  return out


def _write_config(workdir: str, config: ml_collections.ConfigDict) -> None:
  # Also the check that the workdir takes writes, before any training.
  try:
    epath.Path(workdir).mkdir(parents=True, exist_ok=True)
    (epath.Path(workdir) / 'config.json').write_text(config.to_json(indent=2))
  except OSError as e:
    raise ValueError(
        f'cannot write to --workdir {workdir}: {e.strerror or e} '
        f'({e.filename or workdir}); use a writable directory.') from e


class TrainLog:
  """The step metrics between two logs: fetched, checked, averaged, written.

  Metrics stay on the device until a log, a save or `MAX_PENDING_STEPS`
  steps call for them; then every pending step is checked for a non-finite
  loss or gradient. Images/s count training only: the clock restarts after
  the first step (compilation) and after every log, save and evaluation.

  The data wait is the time the device had nothing to do because the loop
  was still waiting for its next batch. JAX dispatches steps asynchronously:
  when the step is the slower of the two, the loop runs ahead of the device
  and spends its time in `next()` while queued steps run, so time in `next()`
  alone would call a compute-bound run input-bound. A wait counts only when
  the last dispatched step has finished by the time the batch arrives (the
  device then idled for at most that wait).
  """

  def __init__(self, writer, progress: metrics_lib.Progress, *,
               batch_size: int, steps_per_epoch: int, skip_nonfinite: bool,
               start_step: int, max_pending_steps: int = MAX_PENDING_STEPS,
               trace: Optional[metrics_lib.StepTrace] = None):
    self.writer, self.progress, self.trace = writer, progress, trace
    self.batch_size, self.steps_per_epoch = batch_size, steps_per_epoch
    self.skip_nonfinite = skip_nonfinite
    self.start_step = start_step
    self.max_pending_steps = max_pending_steps
    self.history: List[Tuple[int, Dict[str, Any]]] = []
    # Seconds waited and trained over the written intervals of this session.
    self.total_wait = self.total_time = 0.0
    self.timed_steps = 0
    self.restart_clock(start_step)

  def restart_clock(self, step: int) -> None:
    self.interval_start, self.interval_step = time.time(), step
    self.interval_wait = 0.0

  def timed_next(self, iterator, pending: Optional[jax.Array] = None):
    """`next(iterator)`; its wait counts if `pending` (an output of the last
    dispatched step) is ready when the batch arrives."""
    start = time.time()
    batch = next(iterator)
    if pending is None or pending.is_ready():
      self.interval_wait += time.time() - start
    return batch

  def wait_fraction(self) -> float:
    """The share of this session's (logged) training time spent waiting."""
    return self.total_wait / max(self.total_time, 1e-9)

  def add(self, step: int, metrics: Dict[str, jax.Array]) -> None:
    self.history.append((step, metrics))
    if self.trace is not None:
      self.trace.after_step(step, metrics)
    if step == self.start_step + 1:
      jax.block_until_ready(metrics)
      self.progress.print(f'Compiled and ran the first step in '
                          f'{time.time() - self.interval_start:.1f}s.')
      self.restart_clock(step)

  @property
  def full(self) -> bool:
    return len(self.history) >= self.max_pending_steps

  def check(self) -> None:
    """Fetches the pending metrics; raises NonFiniteError if one is bad."""
    self.history = [(s, jax.device_get(m)) for s, m in self.history]
    check_finite(self.history, self.skip_nonfinite)
    self.history = self.history[-self.max_pending_steps // 2:]

  def write(self, step: int, nonfinite_steps: int) -> None:
    """Averages the (checked) pending metrics into one record and a line."""
    elapsed = time.time() - self.interval_start
    steps_done = max(1, step - self.interval_step)
    scalars = summarise(self.history)
    scalars['train/step_time'] = elapsed / steps_done
    scalars['train/data_wait_fraction'] = min(
        1.0, self.interval_wait / max(elapsed, 1e-9))
    self.total_wait += self.interval_wait
    self.total_time += elapsed
    self.timed_steps += step - self.interval_step
    scalars['train/images_per_sec'] = (
        steps_done * self.batch_size / max(elapsed, 1e-9))
    scalars['train/epoch'] = step / self.steps_per_epoch
    scalars['train/nonfinite_steps'] = nonfinite_steps
    scalars['wall_time_sec'] = self.progress.total_elapsed()
    self.writer.write_scalars(step, scalars)
    self.progress.train_line(step, scalars, scalars['train/step_time'])
    self.history = []


def banner(model, info, *, params: int, run_length: Schedule,
           batch_size: int, mesh, workdir: str) -> str:
  """The fresh run's start-up lines: what trains on what, and how long."""
  return (f'Training GoogLeNet ({params:,} parameters, '
          f'{model.module}/{model.normalization}/aux={model.aux}, '
          f'{jnp.dtype(model.dtype).name}) on {info.name} ({info.num_train} '
          f'images, {info.num_classes} classes) for {run_length.steps} steps '
          f'of {batch_size} on {mesh.devices.size} device(s) '
          f'({jax.process_count()} process(es)); workdir {workdir}\n'
          f'{run_length.line}')


def peer_line(peer_timeout_s: int) -> str:
  """What a multi-process run (fresh or resumed) says about a lost peer."""
  return (f'If a process of this run is lost, the others stop within '
          f'peer_timeout_s={peer_timeout_s}s; then rerun the same command '
          f'on every host to resume from the newest checkpoint.')


def input_line(wait_fraction: float, data_cfg) -> str:
  """Whether the device waited for its input, and what to set if it did."""
  share = (f'The device waited for its input {100 * wait_fraction:.0f}% of '
           f'the training time')
  if wait_fraction < INPUT_BOUND_FRACTION:
    return share + ': the input kept up.'
  return share + (
      f': the input was the bottleneck. Give it more CPU: '
      f'data.worker_count={data_cfg.worker_count} (grain worker processes, '
      f'up to the host\'s {data_config.usable_cores()} usable cores less '
      f'what the step uses; {data_config.AUTO_WORKERS}: that many) and '
      f'data.read_threads={data_cfg.read_threads}.')


def _prepare(config, workdir: str):
  """Paths made absolute, multi-host start-up, checks before any data."""
  workdir = paths.resolve(workdir)
  config = copy.deepcopy(config)
  paths.resolve_config_paths(config)
  config = datasets.resolve_config(config)
  # jax.distributed.initialize() must come before anything asks JAX for
  # devices or the backend (the model's dtype 'auto' does).
  mesh_lib.initialize_distributed(config.multihost, config.peer_timeout_s)
  compile_cache.configure(config.compilation_cache_dir, workdir)
  validate_config(config)
  config.data.worker_count, workers = data_config.resolve_worker_count(
      config.data.worker_count, jax.default_backend())
  if config.data.worker_count and jax.process_index() == 0:
    print(f'Input: {workers}.', flush=True)
  return config, workdir


def _metadata(model, info, config) -> Dict[str, Any]:
  """What a loader needs without the training code (`inception_jax.load`)."""
  return {'model': googlenet.model_kwargs(model),
          'image_size': config.data.image_size,
          'dataset': {'name': info.name, 'num_classes': info.num_classes,
                      'class_names': list(info.class_names)}}


def _data_and_schedule(config) -> Tuple[datasets.DatasetInfo, Schedule]:
  """The prepared data set's facts, and the run's length from its size."""
  info = datasets.get_dataset_info(config.data)
  return info, schedule_of(config, info.num_train)


def train_and_evaluate(
    config: ml_collections.ConfigDict, workdir: str, *,
    make_train_iter: Callable[..., Any] = pipeline.create_train_iterator,
    on_step: Optional[Callable[[int, Dict[str, jax.Array]], None]] = None,
) -> Dict[str, Any]:
  """Trains (resuming from `workdir` if it holds checkpoints) and evaluates.

  Args:
    config: a training config (see configs/).
    workdir: checkpoints, metrics and TensorBoard logs; local or gs://.
    make_train_iter: called like `pipeline.create_train_iterator`; returns an
      iterator of this process's batches with get_state/set_state.
    on_step: called after every step with the step number and its metrics.

  Returns:
    The final metrics, plus 'preempted': True if SIGTERM stopped the run
    early (after saving a checkpoint).
  """
  config, workdir = _prepare(config, workdir)
  is_primary = jax.process_index() == 0

  # --- Mesh, input, model and update.
  mesh = mesh_lib.create_mesh()
  for key in ('batch_size', 'eval_batch_size'):
    mesh_lib.check_divisible(config[key], mesh, key)
  info, run_length = _data_and_schedule(config)
  model = googlenet.model_from_config(config.model, info.num_classes)
  steps_per_epoch, total_steps = run_length.steps_per_epoch, run_length.steps
  evaluator = evaluator_lib.Evaluator(model, config.data, mesh=mesh,
                                      batch_size=config.eval_batch_size)
  tx, train_step = steps.make_update(
      model, config.optimizer, num_classes=info.num_classes,
      normalization=config.data.normalization, batch_size=config.batch_size,
      steps_per_epoch=steps_per_epoch, total_steps=total_steps, mesh=mesh,
      freeze=config.get('freeze', ''))

  # --- Checkpoint: one trainer per workdir (process 0 holds the lock), then
  # the newest complete checkpoint, or a fresh start.
  lock = workdir_lock.acquire_for_run(workdir, is_primary)
  if is_primary:
    _write_config(workdir, config)
  ckpt = checkpoint_manager.Checkpoints(workdir, keep=config.keep_checkpoints)
  train_iter = make_train_iter(config.data, global_batch_size=config.batch_size,
                               seed=config.seed)
  init_args = dict(seed=config.seed, image_size=config.data.image_size,
                   mesh=mesh)
  state, clock = ckpt.restore_or_init(
      # A resumed fine-tuning run never rereads init_from.
      init=lambda: finetune.init_from(
          steps.create_train_state(model, tx, **init_args),
          config.get('init_from')),
      abstract=lambda: steps.abstract_train_state(model, tx, **init_args),
      train_iter=train_iter)
  resumed, clock = clock is not None, clock or checkpoint_manager.Clock()
  start_step = int(jax.device_get(state.step))
  writer, progress, log = _logs(workdir, config, is_primary=is_primary,
                                start_step=start_step, resumed=resumed,
                                clock=clock, total_steps=total_steps,
                                steps_per_epoch=steps_per_epoch)
  metadata = _metadata(model, info, config)

  def save(state, step: int) -> None:
    clock.wall_time_sec = progress.total_elapsed()
    clock.examples_seen = step * config.batch_size
    ckpt.save(step, state, iterator_state=train_iter.get_state(),
              config=json.loads(config.to_json()), metadata=metadata,
              clock=clock)

  def evaluate(state, step: int) -> Dict[str, float]:
    scalars = evaluator.evaluate_state(state, raw=config.eval_raw)
    writer.write_scalars(step, scalars)
    progress.eval_line(step, scalars)
    return scalars

  progress.print(
      f'Resuming from the checkpoint at step {start_step} in '
      f'{ckpt.directory}.' if resumed else banner(
          model, info, params=googlenet.count_params(state.params),
          run_length=run_length, batch_size=config.batch_size, mesh=mesh,
          workdir=workdir))
  if jax.process_count() > 1:
    progress.print(peer_line(config.peer_timeout_s))

  # --- Loop, then the end: a summary (a finished run rerun evaluates once
  # more).
  with _stop_all_if_a_peer_is_lost(ckpt, lock):
    state, eval_scalars, preempted = _loop(
        state, config, start_step=start_step, total_steps=total_steps,
        train_iter=train_iter, train_step=train_step, mesh=mesh, log=log,
        save=save, evaluate=evaluate, on_step=on_step, lock=lock, ckpt=ckpt)
    if not preempted and not eval_scalars:
      eval_scalars = evaluate(state, int(jax.device_get(state.step)))
    ckpt.wait_until_finished()
  ckpt.close()
  writer.close()
  summary = _finish(state, eval_scalars, preempted=preempted, log=log,
                    workdir=workdir, is_primary=is_primary,
                    checkpoints=ckpt.directory, data_cfg=config.data)
  lock.release()
  return summary


def _loop(state, config, *, start_step: int, total_steps: int, train_iter,
          train_step, mesh, log: TrainLog, save, evaluate, on_step, lock,
          ckpt):
  """Steps until the end or SIGTERM: every periodic action is "if it is
  time: do it". Returns the state, the last evaluation and whether SIGTERM
  stopped the run (after saving)."""
  batch_sharding = mesh_lib.batch_sharded(mesh)
  eval_scalars: Dict[str, float] = {}
  preempted, step_metrics = False, {}
  with mesh_lib.PreemptionSignal() as preemption, _drain_on_error(ckpt):
    for step in range(start_step + 1, total_steps + 1):
      batch = mesh_lib.to_global(
          log.timed_next(train_iter, step_metrics.get('train/loss')),
          batch_sharding)
      state, step_metrics = train_step(state, batch)
      log.add(step, step_metrics)
      if on_step is not None:
        on_step(step, step_metrics)
      lock.heartbeat()
      log_now = itstime(step, config.log_every_steps, total_steps)
      save_now = itstime(step, config.checkpoint_every_steps, total_steps)
      eval_now = itstime(step, config.eval_every_steps, total_steps)
      # Every process asks at every step: with several, they agree here on
      # the one step all of them stop at.
      preempted = preemption.reached(step)
      if log_now or save_now or preempted or log.full:
        log.check()  # raises NonFiniteError
      if log_now:
        log.write(step, int(jax.device_get(state.nonfinite_steps)))
      if save_now or preempted:
        save(state, step)
      if preempted:
        ckpt.wait_until_finished()
        log.progress.print(
            f'SIGTERM: saved a checkpoint at step {step} in '
            f'{ckpt.directory}; rerun the same command to resume.')
        break
      if eval_now:
        eval_scalars = evaluate(state, step)
      if log_now or save_now or eval_now:
        log.restart_clock(step)
  return state, eval_scalars, preempted


@contextlib.contextmanager
def _stop_all_if_a_peer_is_lost(ckpt: checkpoint_manager.Checkpoints, lock):
  """With several processes, a failed collective means another process has
  gone (a host lost, killed, out of memory): raise `PeerLostError`, which
  names the checkpoint to resume from, instead of JAX's traceback."""
  try:
    yield
  except jax.errors.JaxRuntimeError as e:
    if jax.process_count() == 1:
      raise
    lock.release()
    raise mesh_lib.PeerLostError(
        f'process {jax.process_index()} of {jax.process_count()} lost '
        f'another process of this run (a host lost, killed or out of memory; '
        f'its own log says which): {cli.one_line(e)}. Rerun the '
        f'same command on every host to resume from the newest complete '
        f'checkpoint in {ckpt.directory}.') from e


@contextlib.contextmanager
def _drain_on_error(ckpt: checkpoint_manager.Checkpoints):
  """On an error (a non-finite step), the last good save reaches the disk.

  Not when a collective failed with several processes: another process has
  gone, the save cannot complete without it, and waiting would only hang.
  """
  try:
    yield
  except jax.errors.JaxRuntimeError:
    if jax.process_count() == 1:
      ckpt.wait_until_finished()
    raise
  except BaseException:
    ckpt.wait_until_finished()
    raise


def _logs(workdir: str, config, *, is_primary: bool, start_step: int,
          resumed: bool, clock: checkpoint_manager.Clock, total_steps: int,
          steps_per_epoch: int):
  """The metric writer, the progress line and the step metrics' log."""
  writer = metrics_lib.create_writer(
      workdir, is_primary=is_primary,
      resume_step=start_step if resumed else None)
  progress = metrics_lib.Progress(
      total_steps=total_steps, steps_per_epoch=steps_per_epoch,
      enabled=is_primary, previous_seconds=clock.wall_time_sec)
  trace = None if config.profile_steps <= 0 else metrics_lib.StepTrace(
      workdir, config.profile_steps, start_step=start_step,
      total_steps=total_steps, progress=progress)
  log = TrainLog(writer, progress, batch_size=config.batch_size,
                 steps_per_epoch=steps_per_epoch,
                 skip_nonfinite=config.skip_nonfinite, start_step=start_step,
                 trace=trace)
  return writer, progress, log


def _finish(state, eval_scalars: Dict[str, float], *, preempted: bool,
            log: TrainLog, workdir: str, is_primary: bool, checkpoints,
            data_cfg) -> Dict[str, Any]:
  """The run's summary; summary.json and the closing lines if it finished."""
  step = int(jax.device_get(state.step))
  progress = log.progress
  summary = dict(eval_scalars, step=step, preempted=preempted,
                 wall_time_sec=progress.total_elapsed(),
                 session_wall_time_sec=progress.elapsed(),
                 nonfinite_steps=int(jax.device_get(state.nonfinite_steps)),
                 data_wait_fraction=log.wait_fraction())
  if log.timed_steps:
    progress.print(input_line(log.wait_fraction(), data_cfg))
  if not preempted:
    if is_primary:
      # Written last: its presence marks a finished run (experiments.run).
      (epath.Path(workdir) / 'summary.json').write_text(
          json.dumps(summary, indent=2))
    progress.done_line(step, eval_scalars, checkpoints, workdir)
  return summary
