"""Optimiser and learning-rate schedules: the paper's SGD recipe in optax.

The paper trains with momentum 0.9 and "decreases the learning rate by 4%
every 8 epochs"; it gives no base learning rate, batch size or weight decay.
Caffe's bvlc_googlenet solver fills those gaps (base_lr 0.01 at batch 32,
weight decay 2e-4), so the base rate is written for a reference batch and
scaled linearly with the actual global batch (Goyal et al. 2017), which lets
the same config run on one CPU or a pod.
"""

from __future__ import annotations

import re
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import ml_collections
import optax

SCHEDULES = ('staircase', 'poly', 'cosine', 'constant')


def scaled_learning_rate(opt: ml_collections.ConfigDict,
                         batch_size: int) -> float:
  """Base learning rate scaled linearly from the reference batch size."""
  return opt.lr * batch_size / opt.reference_batch_size


def create_learning_rate_schedule(opt: ml_collections.ConfigDict, *,
                                  batch_size: int, steps_per_epoch: int,
                                  total_steps: int) -> optax.Schedule:
  """Learning rate as a function of the step.

  Args:
    opt: the `optimizer` config section.
    batch_size: global batch size (scales `opt.lr`).
    steps_per_epoch: converts the epoch-based settings to steps.
    total_steps: length of the run; 'poly' and 'cosine' reach zero there.

  Returns:
    An optax schedule: linear warm-up from 0 over `opt.warmup_epochs`, then
    'staircase' (x `decay_factor` every `decay_every_epochs`, the paper's
    schedule), 'poly' (Caffe's quick_solver: (1 - t/T)^power), 'cosine' or
    'constant'.
  """
  if opt.schedule not in SCHEDULES:
    raise ValueError(f'optimizer.schedule={opt.schedule!r} is not one of '
                     f'{SCHEDULES}.')
  lr = scaled_learning_rate(opt, batch_size)
  warmup_steps = int(round(opt.warmup_epochs * steps_per_epoch))
  decay_steps = max(1, total_steps - warmup_steps)
  if opt.schedule == 'staircase':
    main = optax.exponential_decay(
        init_value=lr,
        transition_steps=max(1, int(round(opt.decay_every_epochs *
                                          steps_per_epoch))),
        decay_rate=opt.decay_factor, staircase=True)
  elif opt.schedule == 'poly':
    main = optax.polynomial_schedule(init_value=lr, end_value=0.0,
                                     power=opt.poly_power,
                                     transition_steps=decay_steps)
  elif opt.schedule == 'cosine':
    main = optax.cosine_decay_schedule(init_value=lr, decay_steps=decay_steps)
  else:
    main = optax.constant_schedule(lr)
  if warmup_steps <= 0:
    return main
  warmup = optax.linear_schedule(0.0, lr, transition_steps=warmup_steps)
  return optax.join_schedules([warmup, main], boundaries=[warmup_steps])


def weight_decay_mask(params: Any) -> Any:
  """True for convolution and dense kernels, False for everything else.

  Caffe's bvlc_googlenet sets decay_mult 0 on every bias, so biases are
  excluded as in the reference. BatchNorm's scale and offset (the modern
  variant, not in the paper) are excluded too: they only rescale normalised
  activations, and decaying them shrinks the network's effective learning
  rate rather than its capacity (the usual practice, e.g. Goyal et al. 2017).
  """
  return jax.tree_util.tree_map_with_path(
      lambda path, _: getattr(path[-1], 'key', None) == 'kernel', params)


def bias_mask(params: Any) -> Any:
  """True for the bias of every convolution and dense layer (a `bias` beside
  a `kernel`), the biases Caffe's lr_mult 2 applies to; False for
  BatchNorm's offsets (a `bias` beside a `scale`), which Caffe's networks
  never had."""
  def mask(tree, layer_bias=False):
    if not isinstance(tree, Mapping):
      return layer_bias
    masked = {k: mask(v, k == 'bias' and 'kernel' in tree)
              for k, v in tree.items()}
    return masked if type(tree) is dict else type(tree)(masked)
  return mask(params)


def param_path(path) -> str:
  """A parameter's key path as 'a/b/c' (what `freeze` is matched against)."""
  return '/'.join(str(getattr(k, 'key', k)) for k in path)


def freeze_labels(params: Any, freeze: str) -> Any:
  """'frozen' where the regex `freeze` is found in the 'a/b/c' path.

  Raises:
    ValueError: the regex is invalid or matches no parameter.
  """
  try:
    pattern = re.compile(freeze)
  except re.error as e:
    raise ValueError(f'freeze={freeze!r} is not a valid regex: {e}.') from None
  labels = jax.tree_util.tree_map_with_path(
      lambda path, _: ('frozen' if pattern.search(param_path(path))
                       else 'trainable'), params)
  if 'frozen' not in jax.tree.leaves(labels):
    first = param_path(jax.tree_util.tree_leaves_with_path(params)[0][0])
    raise ValueError(
        f'freeze={freeze!r} matches no parameter; paths look like {first!r} '
        '(the regex is searched anywhere in them).')
  return labels


def create_optimizer(opt: ml_collections.ConfigDict,
                     schedule: optax.Schedule,
                     freeze: str = '') -> optax.GradientTransformation:
  """SGD with momentum and Caffe-style L2 weight decay.

  The decay is added to the gradient before momentum (Caffe's and
  torch.optim.SGD's L2 regularisation, not decoupled AdamW-style decay), so
  `weight_decay` means what it means in the Caffe solver.

  `freeze`, a regex (see `freeze_labels`), routes the parameters it matches
  to `optax.set_to_zero()`: their update is exactly zero, so they stay
  bit-identical, and they get neither momentum nor weight decay. '' keeps
  the plain chain.
  """
  parts = []
  if opt.weight_decay:
    parts.append(optax.add_decayed_weights(opt.weight_decay,
                                           mask=weight_decay_mask))
  if opt.bias_lr_mult != 1.0:
    # Caffe's lr_mult on biases. SGD with momentum is linear in the
    # gradient, so scaling the bias gradient is scaling its learning rate.
    parts.append(optax.masked(optax.scale(opt.bias_lr_mult), bias_mask))
  parts.append(optax.sgd(schedule, momentum=opt.momentum or None,
                         nesterov=opt.nesterov))
  tx = optax.chain(*parts)
  if not freeze:
    return tx
  return optax.multi_transform(
      {'trainable': tx, 'frozen': optax.set_to_zero()},
      lambda params: freeze_labels(params, freeze))


def polyak_decay_at(step: jax.Array, decay: float) -> jax.Array:
  """Decay of the Polyak (exponential moving) average at `step`.

  Ramped as TensorFlow's ExponentialMovingAverage with `num_updates`:
  min(decay, (1 + step) / (10 + step)), so the average follows the weights
  early in training instead of remembering the random initialisation for
  ~1/(1 - decay) steps; short runs then still get a useful average.
  """
  step = step.astype(jnp.float32)
  return jnp.minimum(decay, (1.0 + step) / (10.0 + step))


def polyak_update(average: Any, new: Any, decay: jax.Array) -> Any:
  """``decay * a + (1 - decay) * n``, written as TensorFlow's EMA does.

  ``a - (1 - decay) * (a - n)`` leaves an average that equals its weights
  bit-identical (frozen parameters stay exactly the loaded ones).
  """
  return jax.tree_util.tree_map(
      lambda a, n: a - (1.0 - decay) * (a - n), average, new)

