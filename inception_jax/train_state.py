"""The training state: everything a resumed run needs, as one pytree.

Plain arrays only (no functions, no optimiser object), so that jit can donate
it, a NamedSharding can be attached to every leaf and Orbax can save it as a
tree. The model and the optimiser's update rule live outside, in the train
step's closure.
"""

from __future__ import annotations

from typing import Any

import flax
import jax
import jax.numpy as jnp


@flax.struct.dataclass
class TrainState:
  """Parameters, optimiser state and Polyak averages of one run.

  Attributes:
    step: number of optimiser steps taken (= training batches consumed).
    params: model parameters (float32).
    batch_stats: BatchNorm running statistics; {} for the LRN and 'none'
      models.
    opt_state: optax state (momentum buffers).
    ema_params: Polyak average of `params`, used for evaluation and export.
    ema_batch_stats: the same average of `batch_stats`.
    rng: raw uint32 PRNG key; the dropout key of step t is
      fold_in(rng, t), so a resumed run draws the same masks.
    nonfinite_steps: updates skipped because the loss or gradient was not
      finite (only possible with `skip_nonfinite`).
  """
  step: jax.Array
  params: Any
  batch_stats: Any
  opt_state: Any
  ema_params: Any
  ema_batch_stats: Any
  rng: jax.Array
  nonfinite_steps: jax.Array

  @classmethod
  def create(cls, *, variables: Any, opt_state: Any,
             rng: jax.Array) -> 'TrainState':
    params = variables['params']
    batch_stats = variables.get('batch_stats', {})
    return cls(step=jnp.zeros((), jnp.int32), params=params,
               batch_stats=batch_stats, opt_state=opt_state,
               ema_params=params, ema_batch_stats=batch_stats, rng=rng,
               nonfinite_steps=jnp.zeros((), jnp.int32))

  def eval_variables(self, polyak: bool = True) -> dict:
    """Variables for `model.apply` at inference time."""
    params = self.ema_params if polyak else self.params
    stats = self.ema_batch_stats if polyak else self.batch_stats
    variables = {'params': params}
    if stats:
      variables['batch_stats'] = stats
    return variables
