"""Paths a user types, made absolute once where they enter.

Orbax and the worker processes of the input pipeline need absolute paths, and
a run resumed from another directory must find the same workdir. So every path
that comes from the command line, a config key or a library call goes through
`resolve` at that entrance: ``~`` expanded, made absolute against the current
directory. Remote paths (``gs://...`` and other ``scheme://`` URLs) are kept
as they are.
"""

from __future__ import annotations

import os
from typing import Optional

# The data config's keys that name files or folders.
DATA_PATH_KEYS = ('data_dir', 'manual_dir', 'root', 'fashion_mnist_dir')


def is_remote(path: str) -> bool:
  return '://' in path


def resolve(path: Optional[os.PathLike | str]) -> Optional[str]:
  """``~`` expanded and absolute; remote URLs and None unchanged."""
  if path is None:
    return None
  text = os.fspath(path)
  if not text or is_remote(text):
    return text
  return os.path.abspath(os.path.expanduser(text))


def resolve_config_paths(config) -> None:
  """Resolves a training config's paths (``init_from``, ``data``) in place."""
  if 'init_from' in config and config.init_from:
    config.init_from = resolve(config.init_from)
  for key in DATA_PATH_KEYS:
    if key in config.data and config.data[key]:
      config.data[key] = resolve(config.data[key])
