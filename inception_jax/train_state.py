"""The training state: everything a resumed run needs, as one pytree.

Plain arrays only (no functions, no optimiser object), so that jit can donate
it, a NamedSharding can be attached to every leaf and Orbax can save it as a
tree. The model and the optimiser's update rule live outside, in the train
step's closure.

The model's variables other than its parameters (BatchNorm's running
statistics, under ``'batch_stats'``) are one dict of collections,
`model_state`, that is simply empty for models without any: the step, the
evaluation and the checkpoint treat every model the same way, as in
``model.apply({'params': params, **model_state}, ...)``.
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
    model_state: the model's other variable collections, by name
      (``{'batch_stats': ...}`` for BatchNorm; ``{}`` for the LRN and 'none'
      models).
    opt_state: optax state (momentum buffers).
    ema_params: Polyak average of `params`, used for evaluation and export.
    ema_model_state: the same average of `model_state`.
    rng: raw uint32 PRNG key; the dropout key of step t is
      fold_in(rng, t), so a resumed run draws the same masks.
    nonfinite_steps: updates skipped because the loss or gradient was not
      finite (only possible with `skip_nonfinite`).
  """
  step: jax.Array
  params: Any
  model_state: Any
  opt_state: Any
  ema_params: Any
  ema_model_state: Any
  rng: jax.Array
  nonfinite_steps: jax.Array

  @classmethod
  def create(cls, *, variables: Any, opt_state: Any,
             rng: jax.Array) -> 'TrainState':
    variables = dict(variables)
    params = variables.pop('params')
    return cls(step=jnp.zeros((), jnp.int32), params=params,
               model_state=variables, opt_state=opt_state,
               ema_params=params, ema_model_state=variables, rng=rng,
               nonfinite_steps=jnp.zeros((), jnp.int32))

  def eval_variables(self, polyak: bool = True) -> dict:
    """Variables for `model.apply` at inference time."""
    if polyak:
      return {'params': self.ema_params, **self.ema_model_state}
    return {'params': self.params, **self.model_state}

