"""The persistent JAX compilation cache: restarts skip recompiling.

`config.compilation_cache_dir`:

* None (the default): the cache JAX is already told about
  (JAX_COMPILATION_CACHE_DIR), else ``<workdir>/jax_cache`` (local or gs://;
  it lives and dies with the run, so a preempted run's restart finds it).
* a path (local or gs://, e.g. one shared bucket folder for a sweep): there.
* '': off.

Off in multi-process CPU runs: JAX writes the cache from process 0 only,
and its entries are per process, so on a restart process 0 would load its
steps at once while every other process compiles; gloo, the CPU
collectives, stops waiting for a late process after 30 s, and a restart on a
loaded machine failed that way. Every process compiling keeps them in step.
On TPU and GPU pods the cache stays on (a late process only delays the first
step there).

Only what compiles for at least `jax_persistent_cache_min_compile_time_secs`
(JAX's default: 1 s) is stored: the train and evaluation steps, not the small
helpers. JAX treats the cache as trusted code: do not point it at a folder
that others may write to.
"""

from __future__ import annotations

import os
from typing import Optional

from etils import epath
import jax
from jax.experimental.compilation_cache import compilation_cache

SUBDIR = 'jax_cache'


def configure(directory: Optional[str], workdir: str) -> str:
  """Points JAX's persistent cache at the configured folder; returns it."""
  if directory is None:
    directory = (os.environ.get('JAX_COMPILATION_CACHE_DIR') or
                 str(epath.Path(workdir) / SUBDIR))
  if jax.process_count() > 1 and jax.default_backend() == 'cpu':
    directory = ''
  if directory and '://' not in directory:
    directory = os.path.abspath(os.path.expanduser(directory))
  current = jax.config.jax_compilation_cache_dir or ''
  enabled = jax.config.jax_enable_compilation_cache
  if directory == current and enabled == bool(directory):
    return directory
  jax.config.update('jax_enable_compilation_cache', bool(directory))
  if directory:
    compilation_cache.set_cache_dir(directory)
  # The cache is opened once per process, at the first compilation; a later
  # change (another run in the same notebook) must reopen it.
  compilation_cache.reset_cache()
  return directory
