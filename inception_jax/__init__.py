"""GoogLeNet (Inception v1) in JAX/Flax.

``inception_jax.load(path)`` restores a trained model anywhere (see
`inception_jax.restore`). It is resolved on first use, so that importing the
package stays cheap for code that needs only a submodule.
"""

__all__ = ['load']


def __getattr__(name):
  if name == 'load':
    from inception_jax import restore  # pylint: disable=g-import-not-at-top
    return restore.load
  raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
