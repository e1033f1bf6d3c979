"""Runs grouped into variants, and the variants' names.

Runs whose configs differ only in bookkeeping, paths or the seed are
repetitions of one variant; a variant is named by the settings in which the
sweep's variants differ.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, Dict, List, Optional, Sequence

from experiments.report import run_dirs

# Keys that do not change what is measured: bookkeeping, paths, how fast
# the input is read, and the seed (runs that differ only in these are
# repetitions of one variant).
IGNORED_KEYS = frozenset({
    'seed', 'multihost', 'peer_timeout_s', 'log_every_steps',
    'checkpoint_every_steps', 'keep_checkpoints', 'eval_every_steps',
    'compilation_cache_dir', 'data.data_dir', 'data.manual_dir', 'data.root',
    'data.fashion_mnist_dir', 'data.worker_count', 'data.read_threads',
    'data.read_buffer_size', 'data.worker_buffer_size',
})
# What a variant is called when nothing differs between variants.
DEFAULT_LABEL_KEYS = ('model.module', 'model.aux', 'model.norm',
                      'model.variant')


@dataclasses.dataclass
class Variant:
  label: str
  settings: Dict[str, Any]
  runs: List[run_dirs.Run]
  model: Dict[str, Any] = dataclasses.field(default_factory=dict)


def flatten(tree: Any, prefix: str = '') -> Dict[str, Any]:
  """A nested config as {'model.module': ..., 'data.image_size': ...}."""
  if not isinstance(tree, dict):
    return {prefix: tree}
  out = {}
  for key, value in tree.items():
    out.update(flatten(value, f'{prefix}{key}.' if isinstance(value, dict)
                       else f'{prefix}{key}'))
  return out


def variant_settings(config: Optional[Dict[str, Any]]) -> Dict[str, Any]:
  return {k: v for k, v in flatten(config or {}).items()
          if k not in IGNORED_KEYS}


def short_key(key: str) -> str:
  """The key as labels show it: the model's keys without `model.`."""
  return key[len('model.'):] if key.startswith('model.') else key


def same_value(a: Any, b: Any) -> bool:
  return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def _paper_order(keys: List[str]) -> List[str]:
  """The paper's switches first, in their usual order."""
  order = {k: i for i, k in enumerate(DEFAULT_LABEL_KEYS)}
  return sorted(keys, key=lambda k: (order.get(k, len(order)), k))


def varying_keys(settings: Sequence[Dict[str, Any]]) -> List[str]:
  """The keys whose values are not the same in all `settings`, the
  paper's switches first."""
  keys = sorted({k for s in settings for k in s})
  return _paper_order([k for k in keys
                       if any(not same_value(s.get(k), settings[0].get(k))
                              for s in settings)])


def variant_labels(settings: Sequence[Dict[str, Any]]) -> List[str]:
  """Names for variants from the settings in which they differ."""
  label_keys = varying_keys(settings) or [
      k for k in DEFAULT_LABEL_KEYS if any(k in s for s in settings)]
  labels = []
  for s in settings:
    parts = [f'{short_key(k)}={s.get(k)}' for k in label_keys]
    labels.append(','.join(parts) if parts else 'default')
  return labels


def group_variants(runs: Sequence[run_dirs.Run]) -> List[Variant]:
  """The runs as variants, in the order each variant's first run comes."""
  groups: Dict[str, List[run_dirs.Run]] = {}
  settings: Dict[str, Dict[str, Any]] = {}
  unknown = []
  for run in runs:
    if run.config is None:
      # Without its config a run cannot be matched with others; it stays
      # visible on its own.
      unknown.append(Variant(f'unknown ({run.name})', {}, [run]))
      continue
    s = variant_settings(run.config)
    key = json.dumps(s, sort_keys=True, default=str)
    groups.setdefault(key, []).append(run)
    settings[key] = s
  keys = list(groups)
  labels = variant_labels([settings[k] for k in keys])
  return [Variant(label, settings[k], groups[k])
          for label, k in zip(labels, keys)] + unknown
