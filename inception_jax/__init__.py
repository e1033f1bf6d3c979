"""GoogLeNet (Inception v1) in JAX/Flax.

``inception_jax.load(path)`` restores a trained model anywhere (see
`inception_jax.checkpoints.loader`). It is resolved on first use, so that importing the
package stays cheap for code that needs only a submodule.
"""

__all__ = ['load']


def __getattr__(name):
  if name == 'load':
    from inception_jax.checkpoints import loader  # pylint: disable=g-import-not-at-top
    return loader.load
  raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
