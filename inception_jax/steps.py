"""The jitted steps: one training update and one masked evaluation batch.

Pure functions of the state and a global batch, compiled once with explicit
shardings: the batch split over the mesh's 'data' axis, the state replicated
and donated. Training (`train.py`), the stand-alone evaluation
(`evaluate.py`, through `evaluator.Evaluator`) and the throughput benchmark
(`benchmark.py`) all use these, so a measured step is the step that trains.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, Dict, Optional, Tuple

import jax
import jax.numpy as jnp
from jax.sharding import Mesh
import optax

from inception_jax import mesh as mesh_lib
from inception_jax import optim
from inception_jax.data import device_colour
from inception_jax.data import normalization as normalization_lib
from inception_jax.models import googlenet
from inception_jax.train_state import TrainState

Batch = Dict[str, jax.Array]


@dataclasses.dataclass(frozen=True)
class StepSettings:
  """The constants of a train step (closed over, not traced).

  ``normalization``: the ``data.normalization`` mode that maps the batch's
  uint8 pixels to the model's input range (`normalization.on_device`).
  """
  num_classes: int
  normalization: str
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


def model_input(batch: Batch, normalization: str) -> jax.Array:
  """The model's input from a batch's uint8 pixels: each example's colour
  distortions, as the host drew them (``batch['colour']``, training batches
  of configs with ``data.distort_color``), then the normalisation."""
  images = batch['image']
  if 'colour' in batch:
    images = device_colour.distort(images, batch['colour'])
  return normalization_lib.on_device(images, normalization)


def train_step(state: TrainState, batch: Batch, *, apply_fn: Callable,
               tx: optax.GradientTransformation, schedule: optax.Schedule,
               settings: StepSettings) -> Tuple[TrainState, Dict[str, jax.Array]]:
  """One SGD step on a (global) batch; returns the new state and metrics.

  The update is applied only if the loss and the gradient are finite; the
  caller decides whether a skipped step is an error (`nonfinite` metric).
  """
  dropout_rng = jax.random.fold_in(state.rng, state.step)
  images = model_input(batch, settings.normalization)

  def loss_fn(params):
    (logits, aux), model_state = apply_fn(
        {'params': params, **state.model_state}, images, train=True,
        rngs={'dropout': dropout_rng}, mutable=list(state.model_state))
    ce = functools.partial(cross_entropy, labels=batch['label'],
                           num_classes=settings.num_classes,
                           label_smoothing=settings.label_smoothing)
    main_loss = ce(logits).mean()
    aux_losses = [ce(a).mean() for a in aux]
    loss = main_loss + settings.aux_weight * sum(aux_losses)
    return loss, (logits, main_loss, aux_losses, dict(model_state))

  (loss, (logits, main_loss, aux_losses, model_state)), grads = (
      jax.value_and_grad(loss_fn, has_aux=True)(state.params))
  grad_norm = optax.global_norm(grads)
  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  decay = optim.polyak_decay_at(state.step, settings.polyak_decay)
  finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
  updated = state.replace(
      params=params, model_state=model_state, opt_state=opt_state,
      ema_params=optim.polyak_update(state.ema_params, params, decay),
      ema_model_state=optim.polyak_update(state.ema_model_state, model_state,
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
              num_classes: int, normalization: str) -> Dict[str, jax.Array]:
  """Masked sums over a padded batch, so counts are exact.

  Multi-crop batches ([B, crops, S, S, 3]) average the softmax over the crops
  (the paper's test-time protocol).
  """
  images = model_input(batch, normalization)
  labels, mask = batch['label'], batch['mask']
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


def _init_fn(model, tx, image_size: int):
  def init(rng):
    init_rng, dropout_rng = jax.random.split(rng)
    variables = googlenet.init_variables(model, init_rng, image_size)
    return TrainState.create(variables=variables,
                             opt_state=tx.init(variables['params']),
                             rng=dropout_rng)
  return init


def create_train_state(model: googlenet.GoogLeNet,
                       tx: optax.GradientTransformation, *, seed: int,
                       image_size: int, mesh: Mesh,
                       compiler_options: Optional[dict] = None) -> TrainState:
  """Initialises the state directly as replicated arrays on the mesh."""
  return jax.jit(_init_fn(model, tx, image_size),
                 out_shardings=mesh_lib.replicated(mesh),
                 compiler_options=compiler_options)(jax.random.PRNGKey(seed))


def abstract_train_state(model, tx, *, seed: int, image_size: int,
                         mesh: Mesh) -> TrainState:
  """The state's shapes, dtypes and shardings, without computing it."""
  shapes = jax.eval_shape(_init_fn(model, tx, image_size),
                          jax.random.PRNGKey(seed))
  sharding = mesh_lib.replicated(mesh)
  return jax.tree_util.tree_map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding),
      shapes)


def make_train_step(model, tx, schedule, settings: StepSettings, mesh: Mesh,
                    compiler_options: Optional[dict] = None) -> Callable:
  """``step(state, global_batch) -> (state, metrics)``, jitted and donating."""
  replicated = mesh_lib.replicated(mesh)
  step = functools.partial(train_step, apply_fn=model.apply, tx=tx,
                           schedule=schedule, settings=settings)
  return jax.jit(step,
                 in_shardings=(replicated, mesh_lib.batch_sharded(mesh)),
                 out_shardings=(replicated, replicated), donate_argnums=0,
                 compiler_options=compiler_options)


def make_update(model, optimizer_cfg, *, num_classes: int, normalization: str,
                batch_size: int, steps_per_epoch: int, total_steps: int,
                mesh: Mesh,
                freeze: str = '') -> Tuple[optax.GradientTransformation,
                                           Callable]:
  """The optimiser and jitted train step of an ``optimizer`` config.

  The one place a config's optimiser settings become a step: the trainer and
  the benchmark both call it.
  """
  schedule = optim.create_learning_rate_schedule(
      optimizer_cfg, batch_size=batch_size, steps_per_epoch=steps_per_epoch,
      total_steps=total_steps)
  tx = optim.create_optimizer(optimizer_cfg, schedule, freeze)
  settings = StepSettings(num_classes=num_classes,
                          normalization=normalization,
                          aux_weight=optimizer_cfg.aux_weight,
                          label_smoothing=optimizer_cfg.label_smoothing,
                          polyak_decay=optimizer_cfg.polyak_decay)
  return tx, make_train_step(model, tx, schedule, settings, mesh)


def make_eval_step(model, num_classes: int, normalization: str,
                   mesh: Mesh) -> Callable:
  """``step(variables, global_batch) -> masked sums``, jitted."""
  step = functools.partial(eval_step, apply_fn=model.apply,
                           num_classes=num_classes,
                           normalization=normalization)
  return jax.jit(step,
                 in_shardings=(mesh_lib.replicated(mesh),
                               mesh_lib.batch_sharded(mesh)),
                 out_shardings=mesh_lib.replicated(mesh))
