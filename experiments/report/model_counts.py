"""Parameters and multiply-adds of a variant's model.

The counts come from `inception_jax.summary.summarize` for the run's model at
its input size and at 224x224 (the paper's size).
"""

from __future__ import annotations

import json
from typing import Any, Callable, Dict, List, Optional

from experiments.report import grouping

KNOWN_NUM_CLASSES = {'fashion_mnist': 10, 'imagenet2012': 1000}
PAPER_IMAGE_SIZE = 224

SummarizeFn = Callable[[Dict[str, Any], int], Dict[str, int]]


def model_kwargs(config: Dict[str, Any]) -> Optional[Dict[str, Any]]:
  """The model's constructor arguments from a run's config.json, or None
  if its class count is unknown."""
  model = config.get('model', {})
  data = config.get('data', {})
  num_classes = model.get('num_classes') or KNOWN_NUM_CLASSES.get(
      data.get('name'))
  if not num_classes:
    return None
  # config.model holds the model's constructor arguments; counts do not
  # depend on the compute dtype.
  return dict(model, num_classes=int(num_classes), dtype='float32')


def summarize_model(kwargs: Dict[str, Any], image_size: int
                    ) -> Dict[str, int]:
  """Parameters and inference multiply-adds of one model at one size."""
  # Imported here: building the model pulls in JAX and Flax, which a report
  # run with --flops=False does without.
  from inception_jax import summary  # pylint: disable=g-import-not-at-top
  # pylint: disable-next=g-import-not-at-top
  from inception_jax.models import googlenet
  s = summary.summarize(googlenet.create_model(**kwargs), image_size)
  return {'params': s.total_params_no_aux, 'params_with_aux': s.total_params,
          'macs': s.total_macs}


def _counts(label: str, kwargs: Dict[str, Any], size: int,
            summarize_fn: SummarizeFn, cache: Dict[str, Dict[str, int]],
            problems: List[str]) -> Optional[Dict[str, int]]:
  """summarize_fn(kwargs, size), once per model and size."""
  key = json.dumps([kwargs, size], sort_keys=True)
  if key not in cache:
    try:
      cache[key] = summarize_fn(kwargs, size)
    except Exception as e:  # pylint: disable=broad-except
      problems.append(f'{label}: summary at {size}x{size} failed: {e}')
      return None
  return cache[key]


def model_columns(variant: grouping.Variant,
                  summarize_fn: Optional[SummarizeFn],
                  cache: Dict[str, Dict[str, int]],
                  problems: List[str]) -> Dict[str, Any]:
  """The variant's input size, parameters and multiply-adds (None where
  unknown; all but the size when summarize_fn is None)."""
  config = next((r.config for r in variant.runs if r.config), None)
  out: Dict[str, Any] = {'image_size': None, 'params': None,
                         'params_with_aux': None, 'macs': None,
                         'macs_224': None}
  if config is None:
    return out
  image_size = config.get('data', {}).get('image_size')
  out['image_size'] = image_size
  if summarize_fn is None:
    return out
  kwargs = model_kwargs(config)
  if kwargs is None or not image_size:
    problems.append(f'{variant.label}: number of classes or image size '
                    f'unknown; no parameter or multiply-add count')
    return out
  for size, suffix in ((int(image_size), ''), (PAPER_IMAGE_SIZE, '_224')):
    counts = _counts(variant.label, kwargs, size, summarize_fn, cache,
                     problems)
    if counts is None:
      continue
    out['macs' + suffix] = counts['macs']
    if not suffix:
      out['params'] = counts['params']
      out['params_with_aux'] = counts['params_with_aux']
  return out
