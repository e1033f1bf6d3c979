"""Parameters-only checkpoints: a model's variables plus what rebuilds it.

A training checkpoint holds optimiser state, step counters and whatever the
trainer needs to resume; serving, evaluation and weight conversion need only
the variables and enough description to rebuild the module around them. This
format is that smaller thing (written by `inception_jax.export` and by the
torchvision converter, read by `inception_jax.load`)::

  out_dir/
    model.json   {"format": "inception_jax.params/1", "model": {...},
                  "image_size": 224, "class_names": [...] or null,
                  "extra": {...}}
    variables/   Orbax StandardCheckpointer tree {'params', 'batch_stats'}

``model`` holds exactly the keyword arguments of
`inception_jax.models.create_model` (every one of them, defaults filled in, so
a later change of a default does not change what a checkpoint means), under
the same key as in a training checkpoint's metadata. ``model.json`` is
written last: its presence marks a complete checkpoint.
"""

from __future__ import annotations

import json
from typing import Any, Mapping, Optional, Sequence

import jax
import orbax.checkpoint as ocp
from etils import epath

from inception_jax import paths
from inception_jax.models import googlenet

FORMAT = 'inception_jax.params/1'
META_FILE = 'model.json'
VARIABLES_DIR = 'variables'


def save(out_dir: epath.PathLike, variables: Mapping[str, Any],
         model: googlenet.GoogLeNet, *, image_size: int,
         class_names: Optional[Sequence[str]] = None,
         extra: Optional[Mapping[str, Any]] = None,
         overwrite: bool = False) -> epath.Path:
  """Writes `variables` and the description of their model to `out_dir`.

  Collective under multi-process JAX (Orbax writes from every process);
  ``model.json`` is written by process 0 once the arrays are committed.

  Args:
    out_dir: directory to create (or fill, if empty of a checkpoint).
    variables: ``{'params': ..., 'batch_stats': ...}`` of numpy or JAX
      arrays, any sharding.
    model: the module these variables belong to.
    image_size: the square input size the variables were trained/converted
      for (the model itself accepts others; this is what preprocessing
      should use).
    class_names: one name per output class, or None.
    extra: further JSON-serialisable information (provenance, metrics).
    overwrite: replace an existing checkpoint in `out_dir`.

  Returns:
    The checkpoint directory.

  Raises:
    ValueError: bad metadata (checked before anything is written), or an
      existing checkpoint and ``overwrite=False``.
  """
  kwargs = googlenet.model_kwargs(model)
  if class_names is not None:
    class_names = [str(c) for c in class_names]
    if len(class_names) != kwargs['num_classes']:
      raise ValueError(
          f'{len(class_names)} class names for a model with '
          f'num_classes={kwargs["num_classes"]}.')
  meta = {
      'format': FORMAT,
      'model': kwargs,
      'image_size': int(image_size),
      'class_names': class_names,
      'extra': dict(extra) if extra is not None else {},
  }
  try:
    meta_text = json.dumps(meta, indent=2, sort_keys=True)
  except TypeError as e:
    raise ValueError(f'checkpoint metadata is not JSON-serialisable: {e}'
                     ) from None

  out = epath.Path(paths.resolve(out_dir))
  var_dir = out / VARIABLES_DIR
  meta_path = out / META_FILE
  if not overwrite and (var_dir.exists() or meta_path.exists()):
    raise ValueError(f'{out} already holds a checkpoint; choose another '
                     'directory or pass overwrite=True.')
  out.mkdir(parents=True, exist_ok=True)
  if overwrite and meta_path.exists() and jax.process_index() == 0:
    # Drop the completion marker first, so a failure below cannot leave the
    # old metadata describing new (or half-written) arrays.
    meta_path.unlink()
  with ocp.StandardCheckpointer() as ckptr:
    ckptr.save(var_dir, dict(variables), force=overwrite)
    ckptr.wait_until_finished()
  if jax.process_index() == 0:
    tmp = out / (META_FILE + '.tmp')
    tmp.write_text(meta_text + '\n')
    tmp.replace(meta_path)
  return out


def _not_a_checkpoint(path: epath.Path, why: str) -> ValueError:
  return ValueError(
      f'{path} is not an inception_jax parameters checkpoint ({why}): expected '
      f'{META_FILE} with "format": "{FORMAT}" and an Orbax {VARIABLES_DIR}/ '
      'directory, as written by inception_jax.export.')


def read_meta(path: epath.PathLike) -> dict[str, Any]:
  """Reads and checks ``model.json`` of the checkpoint at `path`."""
  path = epath.Path(paths.resolve(path))
  meta_path = path / META_FILE
  if not path.is_dir():
    raise _not_a_checkpoint(path, 'no such directory')
  if not meta_path.exists():
    raise _not_a_checkpoint(path, f'no {META_FILE}')
  try:
    meta = json.loads(meta_path.read_text())
  except (ValueError, UnicodeDecodeError) as e:
    raise _not_a_checkpoint(path, f'{META_FILE} is not JSON: {e}') from None
  if not isinstance(meta, dict) or meta.get('format') != FORMAT:
    got = meta.get('format') if isinstance(meta, dict) else None
    raise _not_a_checkpoint(path, f'format is {got!r}')
  if not isinstance(meta.get('model'), dict):
    raise _not_a_checkpoint(path, 'no model arguments')
  if not (path / VARIABLES_DIR).is_dir():
    raise _not_a_checkpoint(path, f'no {VARIABLES_DIR}/ directory')
  return meta
