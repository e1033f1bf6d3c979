"""Training and evaluation of GoogLeNet with one sharded `jax.jit` step.

`train_and_evaluate(config, workdir)` reads top to bottom in sections: mesh,
input, model, update, sharding, checkpoint, eval, loop. The same code runs on
one CPU, on 8 accelerators and on many hosts: the mesh spans every device,
the batch is split over its 'data' axis and the state is replicated, so XLA
inserts the gradient all-reduce and BatchNorm's cross-device batch
statistics by itself (they are over the global batch, no pmean needed).
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import json
import math
import os
import signal
import time
from typing import Any, Callable, Dict, Mapping, Optional, Tuple

from absl import logging
from etils import epath
import jax
import jax.numpy as jnp
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
import ml_collections
import numpy as np
import optax

from inception_jax import checkpointing
from inception_jax import data as data_lib
from inception_jax import metrics as metrics_lib
from inception_jax import optim
from inception_jax import paths
from inception_jax.models import googlenet
from inception_jax.train_state import TrainState

Batch = Dict[str, jax.Array]


class NonFiniteError(FloatingPointError):
  """The loss or the gradient stopped being finite."""


# --- Mesh and multi-host -----------------------------------------------------

def _cluster_environment() -> bool:
  """True where the environment describes more than one process."""
  env = os.environ
  if env.get('JAX_COORDINATOR_ADDRESS'):
    return True
  for name in ('SLURM_NTASKS', 'OMPI_COMM_WORLD_SIZE'):
    if int(env.get(name, '1') or 1) > 1:
      return True
  return ',' in env.get('TPU_WORKER_HOSTNAMES', '')


def initialize_distributed(config: ml_collections.ConfigDict) -> None:
  """`jax.distributed.initialize()` for multi-host runs, before any device use.

  With `config.multihost` or a multi-process cluster environment; the
  arguments come from that environment (TPU pod, SLURM, Open MPI, or
  JAX_COORDINATOR_ADDRESS / JAX_NUM_PROCESSES / JAX_PROCESS_ID).
  """
  if not (config.multihost or _cluster_environment()):
    return
  if jax.distributed.is_initialized():
    return
  # Multi-process CPU runs need a collectives backend; harmless elsewhere.
  jax.config.update('jax_cpu_collectives_implementation', 'gloo')
  # jax reads JAX_COORDINATOR_ADDRESS itself but not the process count and
  # index; without them it falls back to cluster auto-detection, which
  # fails outside a known cluster (e.g. processes started by hand).
  env = os.environ
  kwargs = {}
  if env.get('JAX_NUM_PROCESSES'):
    kwargs['num_processes'] = int(env['JAX_NUM_PROCESSES'])
  if env.get('JAX_PROCESS_ID'):
    kwargs['process_id'] = int(env['JAX_PROCESS_ID'])
  jax.distributed.initialize(**kwargs)


def create_mesh(devices=None) -> Mesh:
  """A one-axis mesh ('data',) over all devices of all processes."""
  devices = jax.devices() if devices is None else devices
  return Mesh(np.asarray(devices), ('data',))


def check_divisible(batch_size: int, mesh: Mesh, key: str) -> None:
  n = mesh.devices.size
  if batch_size <= 0 or batch_size % n:
    raise ValueError(
        f'{key}={batch_size} cannot be split evenly over the {n} devices; '
        f'use a multiple of {n} (e.g. --config.{key}={max(n, batch_size // n * n)}).')


def to_global(batch: Mapping[str, np.ndarray],
              sharding: NamedSharding) -> Batch:
  """This process's slice of the batch -> arrays sharded over the mesh."""
  return {k: jax.make_array_from_process_local_data(sharding, np.asarray(v))
          for k, v in batch.items()}


# --- Model --------------------------------------------------------------------

def resolve_dtype(name: str) -> str:
  """'auto': bfloat16 compute on accelerators, float32 on CPU."""
  if name == 'auto':
    return 'float32' if jax.default_backend() == 'cpu' else 'bfloat16'
  if name not in ('float32', 'bfloat16', 'float16'):
    raise ValueError(f"model.dtype={name!r} is not one of ('auto', "
                     f"'float32', 'bfloat16', 'float16').")
  return name


def model_kwargs(model_cfg: ml_collections.ConfigDict,
                 num_classes: int) -> Dict[str, Any]:
  """The exact keyword arguments of `create_model` (JSON-friendly)."""
  return dict(num_classes=num_classes, module=model_cfg.module,
              aux=model_cfg.aux, norm=model_cfg.norm,
              variant=model_cfg.variant, width=model_cfg.width,
              dropout=model_cfg.dropout, aux_dropout=model_cfg.aux_dropout,
              transform_input=model_cfg.transform_input,
              dtype=resolve_dtype(model_cfg.dtype))


# --- Update -------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class StepSettings:
  """The constants of a train step (closed over, not traced)."""
  num_classes: int
  aux_weight: float = 0.3
  label_smoothing: float = 0.0
  polyak_decay: float = 0.0


def cross_entropy(logits: jax.Array, labels: jax.Array, num_classes: int,
                  label_smoothing: float = 0.0) -> jax.Array:
  """Per-example softmax cross-entropy with optional label smoothing."""
  targets = jax.nn.one_hot(labels, num_classes)
  if label_smoothing:
    targets = optax.smooth_labels(targets, label_smoothing)
  return optax.softmax_cross_entropy(logits.astype(jnp.float32), targets)


def correct_topk(logits: jax.Array, labels: jax.Array, k: int) -> jax.Array:
  """1.0 where the label is among the k highest logits."""
  k = min(k, logits.shape[-1])
  _, top = jax.lax.top_k(logits, k)
  return jnp.any(top == labels[:, None], axis=-1).astype(jnp.float32)


def train_step(state: TrainState, batch: Batch, *, apply_fn: Callable,
               tx: optax.GradientTransformation, schedule: optax.Schedule,
               settings: StepSettings) -> Tuple[TrainState, Dict[str, jax.Array]]:
  """One SGD step on a (global) batch; returns the new state and metrics.

  The update is applied only if the loss and the gradient are finite; the
  caller decides whether a skipped step is an error (`nonfinite` metric).
  """
  dropout_rng = jax.random.fold_in(state.rng, state.step)
  has_bn = bool(state.batch_stats)

  def loss_fn(params):
    variables = {'params': params}
    if has_bn:
      variables['batch_stats'] = state.batch_stats
      (logits, aux), updates = apply_fn(
          variables, batch['image'], train=True,
          rngs={'dropout': dropout_rng}, mutable=['batch_stats'])
      batch_stats = updates['batch_stats']
    else:
      logits, aux = apply_fn(variables, batch['image'], train=True,
                             rngs={'dropout': dropout_rng})
      batch_stats = state.batch_stats
    ce = functools.partial(cross_entropy, labels=batch['label'],
                           num_classes=settings.num_classes,
                           label_smoothing=settings.label_smoothing)
    main_loss = ce(logits).mean()
    aux_losses = [ce(a).mean() for a in aux]
    loss = main_loss + settings.aux_weight * sum(aux_losses)
    return loss, (logits, main_loss, aux_losses, batch_stats)

  (loss, (logits, main_loss, aux_losses, batch_stats)), grads = (
      jax.value_and_grad(loss_fn, has_aux=True)(state.params))
  grad_norm = optax.global_norm(grads)
  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  decay = optim.polyak_decay_at(state.step, settings.polyak_decay)
  finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
  updated = state.replace(
      params=params, batch_stats=batch_stats, opt_state=opt_state,
      ema_params=optim.polyak_update(state.ema_params, params, decay),
      ema_batch_stats=optim.polyak_update(state.ema_batch_stats, batch_stats,
                                          decay))
  # A non-finite update never reaches the state (nor a checkpoint).
  new_state = jax.tree_util.tree_map(
      lambda new, old: jnp.where(finite, new, old), updated, state)
  new_state = new_state.replace(
      step=state.step + 1,
      nonfinite_steps=state.nonfinite_steps + (~finite).astype(jnp.int32))

  labels = batch['label']
  metrics = {
      'train/loss': loss,
      'train/main_loss': main_loss,
      'train/top1': correct_topk(logits, labels, 1).mean(),
      'train/top5': correct_topk(logits, labels, 5).mean(),
      'train/lr': schedule(state.step),
      'train/grad_norm': grad_norm,
      'nonfinite/loss': ~jnp.isfinite(loss),
      'nonfinite/grad_norm': ~jnp.isfinite(grad_norm),
  }
  for i, aux_loss in enumerate(aux_losses):
    metrics[f'train/aux{i + 1}_loss'] = aux_loss
  return new_state, metrics


def eval_step(variables: Any, batch: Batch, *, apply_fn: Callable,
              num_classes: int) -> Dict[str, jax.Array]:
  """Masked sums over a padded batch, so counts are exact.

  Multi-crop batches ([B, crops, S, S, 3]) average the softmax over the crops
  (the paper's test-time protocol).
  """
  images, labels, mask = batch['image'], batch['label'], batch['mask']
  if images.ndim == 5:
    b, crops = images.shape[:2]
    logits, _ = apply_fn(variables, images.reshape((b * crops,) +
                                                   images.shape[2:]),
                         train=False)
    probs = jax.nn.softmax(logits).reshape((b, crops, -1)).mean(axis=1)
    logits = jnp.log(jnp.maximum(probs, 1e-30))
  else:
    logits, _ = apply_fn(variables, images, train=False)
  weight = mask.astype(jnp.float32)
  loss = cross_entropy(logits, labels, num_classes)
  return {
      'loss': jnp.sum(loss * weight),
      'top1': jnp.sum(correct_topk(logits, labels, 1) * mask).astype(jnp.int32),
      'top5': jnp.sum(correct_topk(logits, labels, 5) * mask).astype(jnp.int32),
      'num_examples': jnp.sum(mask.astype(jnp.int32)),
  }


# --- Sharding -----------------------------------------------------------------

def create_train_state(model: googlenet.GoogLeNet,
                       tx: optax.GradientTransformation, *, seed: int,
                       image_size: int, mesh: Mesh,
                       compiler_options: Optional[dict] = None) -> TrainState:
  """Initialises the state directly as replicated arrays on the mesh."""
  replicated = NamedSharding(mesh, P())

  def init(rng):
    init_rng, dropout_rng = jax.random.split(rng)
    variables = googlenet.init_variables(model, init_rng, image_size)
    return TrainState.create(variables=variables,
                             opt_state=tx.init(variables['params']),
                             rng=dropout_rng)

  return jax.jit(init, out_shardings=replicated,
                 compiler_options=compiler_options)(jax.random.PRNGKey(seed))


def abstract_train_state(model, tx, *, seed: int, image_size: int,
                         mesh: Mesh) -> TrainState:
  """Shapes and shardings of the state, without computing it."""
  shapes = jax.eval_shape(
      lambda: create_train_state(model, tx, seed=seed, image_size=image_size,
                                 mesh=mesh))
  return checkpointing.abstract_like(shapes, NamedSharding(mesh, P()))


def make_train_step(model, tx, schedule, settings: StepSettings, mesh: Mesh,
                    compiler_options: Optional[dict] = None) -> Callable:
  """The jitted step: batch sharded on 'data', state replicated and donated.

  `compiler_options` go to XLA (e.g. a lower optimisation level for tests,
  where compiling dominates a handful of steps).
  """
  replicated = NamedSharding(mesh, P())
  batch_sharding = NamedSharding(mesh, P('data'))
  step = functools.partial(train_step, apply_fn=model.apply, tx=tx,
                           schedule=schedule, settings=settings)
  return jax.jit(step, in_shardings=(replicated, batch_sharding),
                 out_shardings=(replicated, replicated), donate_argnums=0,
                 compiler_options=compiler_options)


def make_eval_step(model, num_classes: int, mesh: Mesh) -> Callable:
  replicated = NamedSharding(mesh, P())
  step = functools.partial(eval_step, apply_fn=model.apply,
                           num_classes=num_classes)
  return jax.jit(step,
                 in_shardings=(replicated, NamedSharding(mesh, P('data'))),
                 out_shardings=replicated)


# --- Eval ---------------------------------------------------------------------

def evaluate(eval_fn: Callable, variables: Any,
             config: ml_collections.ConfigDict,
             batch_sharding: NamedSharding) -> Dict[str, float]:
  """One pass over the evaluation split; every example counted once."""
  batches = data_lib.create_eval_iterator(
      config.data, global_batch_size=config.eval_batch_size,
      crops=config.data.eval_crops)
  totals = None
  for batch in batches:
    sums = eval_fn(variables, to_global(batch, batch_sharding))
    totals = sums if totals is None else jax.tree_util.tree_map(
        jnp.add, totals, sums)
  totals = jax.device_get(totals)
  n = int(totals['num_examples'])
  return {'loss': float(totals['loss']) / max(n, 1),
          'top1': int(totals['top1']) / max(n, 1),
          'top5': int(totals['top5']) / max(n, 1),
          'num_examples': n}


def run_evals(eval_fn, state: TrainState, config, batch_sharding
              ) -> Dict[str, float]:
  """`eval/*` with the Polyak average; `eval_raw/*` too when asked."""
  scalars = {}
  runs = [('eval', True)] + ([('eval_raw', False)] if config.eval_raw else [])
  for prefix, polyak in runs:
    result = evaluate(eval_fn, state.eval_variables(polyak), config,
                      batch_sharding)
    scalars.update({f'{prefix}/{k}': v for k, v in result.items()})
  return scalars


# --- Loop helpers -------------------------------------------------------------

def total_steps_of(config, steps_per_epoch: int) -> int:
  if config.total_steps > 0:
    return config.total_steps
  return int(math.ceil(config.num_epochs * steps_per_epoch))


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


class _PreemptionSignal:
  """Turns SIGTERM into a flag that the loop checks after every step."""

  def __init__(self):
    self.received = False
    self._previous = None

  def __enter__(self):
    try:
      self._previous = signal.signal(signal.SIGTERM, self._handle)
    except ValueError:  # not the main thread (e.g. a notebook worker)
      self._previous = None
    return self

  def _handle(self, signum, frame):
    del signum, frame
    self.received = True

  def reached(self, step: int) -> bool:
    if jax.process_count() > 1:
      # Every process must stop at the same step to save collectively.
      from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
      try:
        return multihost_utils.reached_preemption_sync_point(step)
      except RuntimeError:
        return self.received
    return self.received

  def __exit__(self, *exc):
    if self._previous is not None:
      signal.signal(signal.SIGTERM, self._previous)


def validate_config(config: ml_collections.ConfigDict) -> None:
  """One-line errors for values the config loader cannot check by type."""
  googlenet.validate_model_args(
      module=config.model.module, norm=config.model.norm,
      variant=config.model.variant, width=config.model.width)
  resolve_dtype(config.model.dtype)
  if config.data.image_size < googlenet.MIN_IMAGE_SIZE:
    raise ValueError(
        f'data.image_size={config.data.image_size} is too small: GoogLeNet '
        f'needs at least {googlenet.MIN_IMAGE_SIZE}.')
  for key in ('log_every_steps', 'eval_every_steps', 'checkpoint_every_steps'):
    if config[key] < 0:
      raise ValueError(f'{key} must be >= 0 (0 turns it off), got '
                       f'{config[key]}.')
  if config.total_steps <= 0 and config.num_epochs <= 0:
    raise ValueError('Set num_epochs > 0 or total_steps > 0.')
  if not 0 <= config.optimizer.polyak_decay < 1:
    raise ValueError(f'optimizer.polyak_decay must be in [0, 1), got '
                     f'{config.optimizer.polyak_decay}.')


# --- The whole run ------------------------------------------------------------

def train_and_evaluate(config: ml_collections.ConfigDict,
                       workdir: str) -> Dict[str, Any]:
  """Trains (resuming from `workdir` if it holds checkpoints) and evaluates.

  Returns the final metrics, plus 'preempted': True if SIGTERM stopped the
  run early (after saving a checkpoint).
  """
  workdir = paths.resolve(workdir)
  config = copy.deepcopy(config)
  paths.resolve_config_paths(config)
  # First: validate_config's dtype check ('auto') asks JAX for its backend,
  # and jax.distributed.initialize() must come before that.
  initialize_distributed(config)
  validate_config(config)
  is_primary = jax.process_index() == 0

  # --- Mesh.
  mesh = create_mesh()
  check_divisible(config.batch_size, mesh, 'batch_size')
  check_divisible(config.eval_batch_size, mesh, 'eval_batch_size')
  replicated = NamedSharding(mesh, P())
  batch_sharding = NamedSharding(mesh, P('data'))

  # --- Input.
  info = data_lib.get_dataset_info(config.data)
  num_classes = config.model.num_classes or info.num_classes
  if num_classes != info.num_classes:
    raise ValueError(
        f'model.num_classes={config.model.num_classes} but {info.name} has '
        f'{info.num_classes} classes; set it to 0 to follow the data set.')
  steps_per_epoch = max(1, info.num_train // config.batch_size)
  total_steps = total_steps_of(config, steps_per_epoch)

  # --- Model.
  kwargs = model_kwargs(config.model, num_classes)
  model = googlenet.create_model(**kwargs)

  # --- Update.
  schedule = optim.create_learning_rate_schedule(
      config.optimizer, batch_size=config.batch_size,
      steps_per_epoch=steps_per_epoch, total_steps=total_steps)
  tx = optim.create_optimizer(config.optimizer, schedule)
  settings = StepSettings(num_classes=num_classes,
                          aux_weight=config.optimizer.aux_weight,
                          label_smoothing=config.optimizer.label_smoothing,
                          polyak_decay=config.optimizer.polyak_decay)
  train_fn = make_train_step(model, tx, schedule, settings, mesh)
  eval_fn = make_eval_step(model, num_classes, mesh)

  # --- Checkpoint: resume from the newest complete one, or start afresh.
  if is_primary:
    # epath: the workdir may be a gs:// URL on a Cloud TPU VM.
    # Also the check that the workdir takes writes, before any training.
    try:
      epath.Path(workdir).mkdir(parents=True, exist_ok=True)
      (epath.Path(workdir) / 'config.json').write_text(
          config.to_json(indent=2))
    except OSError as e:
      raise ValueError(
          f'cannot write to --workdir {workdir}: {e.strerror or e} '
          f'({e.filename or workdir}); use a writable directory.') from e
  ckpt = checkpointing.Checkpoints(workdir, keep=config.keep_checkpoints)
  train_iter = data_lib.create_train_iterator(
      config.data, global_batch_size=config.batch_size, seed=config.seed)
  latest = ckpt.latest_step()
  if latest is None:
    state = create_train_state(model, tx, seed=config.seed,
                               image_size=config.data.image_size, mesh=mesh)
  else:
    abstract = abstract_train_state(model, tx, seed=config.seed,
                                    image_size=config.data.image_size,
                                    mesh=mesh)
    state, iterator_text = ckpt.restore(latest, abstract)
    if iterator_text is not None:
      checkpointing.check_input_order(
          iterator_text, config.data.worker_count,
          str(ckpt.directory / str(latest)))
      train_iter.set_state(checkpointing.iterator_state_from_text(
          iterator_text, train_iter.get_state()))
    else:
      logging.warning('Checkpoint %d has no input state for this process; '
                      'the input restarts from the beginning.', latest)
  start_step = int(jax.device_get(state.step))
  checkpoint_metadata = {
      'model': kwargs, 'image_size': config.data.image_size,
      'dataset': {'name': info.name, 'num_classes': info.num_classes,
                  'class_names': list(info.class_names)}}
  config_dict = json.loads(config.to_json())

  def save_checkpoint(step: int, state: TrainState) -> None:
    ckpt.save(step, state, iterator_state=train_iter.get_state(),
              config=config_dict, metadata=checkpoint_metadata)

  writer = metrics_lib.create_writer(
      workdir, is_primary=is_primary,
      resume_step=start_step if latest is not None else None)
  previous_seconds = (
      metrics_lib.wall_time_before(os.path.join(workdir, 'metrics.jsonl'),
                                   start_step)
      if latest is not None and is_primary else 0.0)
  progress = metrics_lib.Progress(total_steps=total_steps,
                                  steps_per_epoch=steps_per_epoch,
                                  enabled=is_primary,
                                  previous_seconds=previous_seconds)
  num_params = googlenet.count_params(state.params)
  if latest is None:
    progress.print(
        f'Training GoogLeNet ({num_params:,} parameters, '
        f'{kwargs["module"]}/{kwargs["norm"]}/aux={kwargs["aux"]}, '
        f'{kwargs["dtype"]}) on {info.name} ({info.num_train} images, '
        f'{info.num_classes} classes) for {total_steps} steps of '
        f'{config.batch_size} on {mesh.devices.size} device(s) '
        f'({jax.process_count()} process(es)); workdir {workdir}')
  else:
    progress.print(f'Resuming from the checkpoint at step {start_step} in '
                   f'{ckpt.directory}.')

  # --- Loop.
  step = start_step
  history = []
  last_saved = start_step if latest is not None else None
  eval_scalars: Dict[str, float] = {}
  preempted = False
  interval_start, interval_step = time.time(), step
  with _PreemptionSignal() as preemption:
    while step < total_steps:
      batch = to_global(next(train_iter), batch_sharding)
      state, step_metrics = train_fn(state, batch)
      step += 1
      history.append((step, step_metrics))
      if step == start_step + 1:
        # The first step includes compilation; time the rest.
        jax.block_until_ready(step_metrics)
        progress.print(f'Compiled and ran the first step in '
                       f'{time.time() - interval_start:.1f}s.')
        interval_start, interval_step = time.time(), step

      is_last = step == total_steps
      log_now = (config.log_every_steps and
                 step % config.log_every_steps == 0) or is_last
      save_now = (config.checkpoint_every_steps and
                  step % config.checkpoint_every_steps == 0) or is_last
      eval_now = (config.eval_every_steps and
                  step % config.eval_every_steps == 0) or is_last
      stop_now = preemption.reached(step)

      if log_now or save_now or stop_now:
        history = [(s, jax.device_get(m)) for s, m in history]
        try:
          check_finite(history, config.skip_nonfinite)
        except NonFiniteError:
          # The last finite state may still be on its way to disk; the
          # process exits right after this error.
          ckpt.wait_until_finished()
          raise
      if log_now and history:
        elapsed = time.time() - interval_start
        steps_done = max(1, step - interval_step)
        scalars = summarise(history)
        scalars['train/step_time'] = elapsed / steps_done
        scalars['train/images_per_sec'] = (
            steps_done * config.batch_size / max(elapsed, 1e-9))
        scalars['train/epoch'] = step / steps_per_epoch
        scalars['train/nonfinite_steps'] = int(jax.device_get(
            state.nonfinite_steps))
        scalars['wall_time_sec'] = progress.total_elapsed()
        writer.write_scalars(step, scalars)
        progress.train_line(step, scalars, scalars['train/step_time'])
        history = []
      if save_now or stop_now:
        save_checkpoint(step, state)
        last_saved = step
      if stop_now:
        ckpt.wait_until_finished()
        progress.print(f'SIGTERM: saved a checkpoint at step {step} in '
                       f'{ckpt.directory}; rerun the same command to resume.')
        preempted = True
        break
      if eval_now:
        eval_scalars = run_evals(eval_fn, state, config, batch_sharding)
        writer.write_scalars(step, eval_scalars)
        progress.eval_line(step, eval_scalars)
      if log_now or save_now or eval_now:
        # Evaluation and saving do not count towards images/s.
        interval_start, interval_step = time.time(), step

  # --- End: the last checkpoint, a final evaluation, a summary.
  if not preempted:
    if last_saved != step:
      save_checkpoint(step, state)
    if not eval_scalars:
      eval_scalars = run_evals(eval_fn, state, config, batch_sharding)
      writer.write_scalars(step, eval_scalars)
      progress.eval_line(step, eval_scalars)
  ckpt.wait_until_finished()
  ckpt.close()
  writer.flush()
  writer.close()
  summary = dict(eval_scalars, step=step, preempted=preempted,
                 wall_time_sec=progress.total_elapsed(),
                 session_wall_time_sec=progress.elapsed(),
                 nonfinite_steps=int(jax.device_get(state.nonfinite_steps)))
  if not preempted:
    if is_primary:
      # Written last: its presence marks a finished run (experiments.run).
      (epath.Path(workdir) / 'summary.json').write_text(
          json.dumps(summary, indent=2))
    top1 = eval_scalars.get('eval/top1')
    progress.print(
        f'Done: {step} steps in '
        f'{metrics_lib.format_duration(progress.total_elapsed())}'
        + (f' ({metrics_lib.format_duration(progress.elapsed())} this session)'
           if progress.previous_seconds else '')
        + (f', eval top1 {100 * top1:.2f}% (Polyak average) on '
           f'{eval_scalars["eval/num_examples"]} images' if top1 is not None
           else '')
        + f'. Checkpoints in {ckpt.directory}, metrics in '
        f'{os.path.join(workdir, "metrics.jsonl")}.')
  return summary
