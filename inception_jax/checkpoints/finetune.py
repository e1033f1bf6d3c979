"""Fine-tuning: a fresh run's variables initialised from another checkpoint.

``--config.init_from=PATH`` names any checkpoint `inception_jax.load` reads: a
training workdir (its newest step, Polyak-averaged weights), one step of it,
an export, or a torchvision checkpoint converted by `inception_jax.convert`.
The trainer calls `init_from` once, on the freshly initialised state of a
new run; a resumed run restores its own checkpoint and never reads PATH
again (it may be gone by then).

Matching is by name and shape, over the parameters and the other model
variables (BatchNorm's statistics):

* equal name and shape: loaded (cast to this model's dtype);
* a classifier head, ``classifier`` or ``aux1``/``aux2``, whose output size
  differs (another class count), or that the checkpoint lacks (trained
  without auxiliary heads): kept as freshly initialised;
* heads the checkpoint has and this model lacks (``aux=False``): ignored;
* anything else, a missing, extra or differently shaped variable: a one-line
  ValueError naming the first one, in the model's order. That means another
  architecture (width, module, norm, variant): build the checkpoint's model.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Dict, List, Optional, Tuple

from flax import traverse_util
import jax
import numpy as np

from inception_jax.checkpoints import loader
from inception_jax.models import googlenet

# The layers whose shape follows the class count; the whole head is
# re-initialised only where its shape does not fit, or where it is missing.
HEADS = ('classifier', 'aux1', 'aux2')


@dataclasses.dataclass
class Report:
  """What `merge` did, by 'collection/a/b/c' path."""
  loaded: List[str]
  reinitialised: List[str]
  ignored: List[str]

  def line(self, path: str) -> str:
    text = f'Initialised {len(self.loaded)} variables from {path}'
    if self.reinitialised:
      heads = sorted({p.split('/')[1] for p in self.reinitialised})
      text += (f'; re-initialised {len(self.reinitialised)} of the heads '
               f'{", ".join(heads)} (another class count, or not in the '
               'checkpoint)')
    if self.ignored:
      text += f'; ignored {len(self.ignored)} head variables this model lacks'
    return text + '.'


def _is_head(key: str) -> bool:
  # 'params/classifier/kernel', 'batch_stats/aux1/conv/bn/mean', ...
  parts = key.split('/')
  return len(parts) > 1 and parts[1] in HEADS


# The network's layers in the order they run, for "the first" mismatch.
_LAYER_ORDER = (('conv1', 'conv2_reduce', 'conv2') +
                tuple(spec.name for spec in googlenet.TABLE1) + HEADS)


def _model_order(key: str):
  """Parameters before other collections, then the layers' order."""
  collection, _, rest = key.partition('/')
  layer = rest.split('/')[0]
  position = (_LAYER_ORDER.index(layer) if layer in _LAYER_ORDER
              else len(_LAYER_ORDER))
  return (collection != 'params', position, key)


def _class_count_only(source: Tuple[int, ...], target: Tuple[int, ...]) -> bool:
  """Shapes that differ in their last (output) dimension only."""
  return len(source) == len(target) and source[:-1] == target[:-1]


def merge(target: Dict[str, Any], source: Dict[str, Any], *,
          where: str) -> Tuple[Dict[str, Any], Report]:
  """`target`'s variables with `source`'s wherever name and shape match.

  Args:
    target: this model's variables, ``{'params': ..., 'batch_stats': ...}``.
    source: the checkpoint's variables, the same layout.
    where: the checkpoint's path, for the error messages.

  Returns:
    The merged variables (source leaves as numpy arrays of the target's
    dtype, target leaves unchanged) and a `Report`.

  Raises:
    ValueError: a non-head variable missing, extra or of another shape.
  """
  flat_t = traverse_util.flatten_dict(target, sep='/')
  flat_s = traverse_util.flatten_dict(source, sep='/')
  merged, report = {}, Report([], [], [])
  hint = ('build the checkpoint\'s model (--config.model.*: width, module, '
          'norm, variant, aux) or use another --config.init_from.')
  for key in sorted(flat_t, key=_model_order):
    value = flat_t[key]
    shape = tuple(np.shape(value))
    if key in flat_s:
      got = tuple(np.shape(flat_s[key]))
      if got == shape:
        merged[key] = np.asarray(flat_s[key]).astype(np.dtype(value.dtype))
        report.loaded.append(key)
        continue
      if _is_head(key) and _class_count_only(got, shape):
        merged[key] = value
        report.reinitialised.append(key)
        continue
      raise ValueError(
          f'init_from {where}: {key} has shape {got} in the checkpoint but '
          f'{shape} in this model; {hint}')
    if _is_head(key):
      merged[key] = value
      report.reinitialised.append(key)
      continue
    raise ValueError(f'init_from {where}: the checkpoint has no {key} (shape '
                     f'{shape}) that this model has; {hint}')
  for key in sorted(flat_s, key=_model_order):
    if key in flat_t:
      continue
    if _is_head(key):
      report.ignored.append(key)
      continue
    raise ValueError(f'init_from {where}: the checkpoint has {key}, which '
                     f'this model lacks; {hint}')
  return traverse_util.unflatten_dict(merged, sep='/'), report


def init_from(state, path: Optional[str]):
  """`state` (a fresh `TrainState`) with the checkpoint's variables merged.

  No `path` (`config.init_from` unset): `state` as it is.

  The raw and Polyak-averaged copies both start from the merged variables,
  as separate buffers (the train step donates both); the optimiser's state
  (zero momentum) does not depend on their values. Merged arrays take the
  sharding of the leaves they replace.
  """
  if not path:
    return state
  restored = loader.load(path)
  merged, report = merge(
      jax.device_get({'params': state.params, **state.model_state}),
      dict(restored.variables), where=restored.path)
  merged = traverse_util.flatten_dict(merged, sep='/')
  reinitialised = set(report.reinitialised)

  def place(fresh):
    flat = traverse_util.flatten_dict(fresh, sep='/')
    placed = {k: v if k in reinitialised
                   else jax.device_put(merged[k], v.sharding)
              for k, v in flat.items()}
    placed = traverse_util.unflatten_dict(placed, sep='/')
    return placed.pop('params'), placed

  params, model_state = place({'params': state.params, **state.model_state})
  ema_params, ema_model_state = place({'params': state.ema_params,
                                       **state.ema_model_state})
  if jax.process_index() == 0:
    print(report.line(restored.path), flush=True)
  return state.replace(params=params, model_state=model_state,
                       ema_params=ema_params, ema_model_state=ema_model_state)
