"""Evaluation of one split: a step jitted once, fed padded and masked batches.

The trainer and `python -m inception_jax.evaluate` both evaluate through an
`Evaluator`: the evaluation step is compiled once with the mesh's shardings
(the padded last batch has the same shape, and both sets of weights reuse
it), and every example of the split counts exactly once whatever the batch
size and the number of devices and processes.
"""

from __future__ import annotations

from typing import Any, Dict, Optional

import jax
import jax.numpy as jnp
from jax.sharding import Mesh

from inception_jax import mesh as mesh_lib
from inception_jax import steps
from inception_jax.data import pipeline


class Evaluator:
  """``evaluate(variables) -> {'loss', 'top1', 'top5', 'num_examples'}``.

  Args:
    model: the module (its `num_classes` sizes the loss).
    data_cfg: the ``data`` config (which split, crops, preprocessing).
    mesh: devices to evaluate on; the batch is split over its 'data' axis.
    batch_size: global images per step, a multiple of the device count.
    crops: 1, 10 or 144 crops per image (softmax averaged over them);
      None: ``data_cfg.eval_crops``.
    split: TFDS split; None: the data set's evaluation split.
  """

  def __init__(self, model, data_cfg, *, mesh: Mesh, batch_size: int,
               crops: Optional[int] = None, split: Optional[str] = None):
    mesh_lib.check_divisible(batch_size, mesh, 'eval_batch_size')
    self.data_cfg = data_cfg
    self.batch_size = batch_size
    self.crops = crops or data_cfg.eval_crops
    self.split = split
    self.mesh = mesh
    self.step = steps.make_eval_step(model, model.num_classes,
                                     data_cfg.normalization, mesh)

  def evaluate(self, variables: Any) -> Dict[str, float]:
    """One pass over the split; `variables` are replicated onto the mesh."""
    variables = jax.device_put(variables, mesh_lib.replicated(self.mesh))
    sharding = mesh_lib.batch_sharded(self.mesh)
    batches = pipeline.create_eval_iterator(
        self.data_cfg, global_batch_size=self.batch_size, crops=self.crops,
        split=self.split)
    totals = None
    for batch in batches:
      sums = self.step(variables, mesh_lib.to_global(batch, sharding))
      totals = sums if totals is None else jax.tree_util.tree_map(
          jnp.add, totals, sums)
    totals = jax.device_get(totals)
    n = int(totals['num_examples'])
    return {'loss': float(totals['loss']) / max(n, 1),
            'top1': int(totals['top1']) / max(n, 1),
            'top5': int(totals['top5']) / max(n, 1),
            'num_examples': n}

  def evaluate_state(self, state, raw: bool = False) -> Dict[str, float]:
    """'eval/*' of a `TrainState`'s Polyak average; 'eval_raw/*' too if raw."""
    scalars = {}
    for prefix, polyak in [('eval', True)] + ([('eval_raw', False)]
                                              if raw else []):
      result = self.evaluate(state.eval_variables(polyak))
      scalars.update({f'{prefix}/{k}': v for k, v in result.items()})
    return scalars
