"""Input pipelines: Fashion-MNIST, ImageNet 2012 and image folders via TFDS.

The names below load on first use, so TensorFlow-free pieces of this package
(`crops`, `normalization`) can be imported by `predict` and `load` without
pulling in TensorFlow, TFDS and grain.
"""
import importlib

_EXPORTS = {
    'default_config': 'config',
    'DatasetInfo': 'datasets',
    'get_dataset_info': 'datasets',
    'resolve_splits': 'datasets',
    'EvalIterator': 'pipeline',
    'create_eval_iterator': 'pipeline',
    'create_train_iterator': 'pipeline',
    'shard_bounds': 'pipeline',
}

__all__ = list(_EXPORTS)


def __getattr__(name):
  if name in _EXPORTS:
    module = importlib.import_module(f'{__name__}.{_EXPORTS[name]}')
    return getattr(module, name)
  raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
