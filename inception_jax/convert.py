"""torchvision's and Caffe's GoogLeNet weights to this project's Flax model.

`from_torchvision` maps a ``torchvision.models.googlenet`` state dict (the
``IMAGENET1K_V1`` weights, or any model of that architecture) onto the
variables of ``create_model(variant='torchvision')``, whose layers match
torchvision's one for one. The mapping is checked against the Flax model's own
variable tree (built abstractly with `jax.eval_shape`), so a state dict from a
different architecture fails with the first offending key instead of loading
into the wrong layers.

Layout changes: convolutions OIHW -> HWIO, linear layers (out, in) ->
(in, out), and the auxiliary heads' first linear layer additionally has its
inputs reordered, because torch flattens the 4x4x128 feature map channel
first (c, h, w) and the Flax head flattens NHWC (h, w, c). BatchNorm running
statistics go to the ``batch_stats`` collection; ``num_batches_tracked`` has
no counterpart (Flax's momentum is fixed) and is dropped.

The mapping needs only numpy; PyTorch is imported only by the command line,
to read the ``.pth`` file::

  python -m inception_jax.convert --torchvision=googlenet.pth --out=DIR

writes a parameters-only checkpoint (`inception_jax.checkpoints.params`).

BVLC's ``bvlc_googlenet.caffemodel`` (and any caffemodel of that network,
old ``layers`` files included) becomes a checkpoint of the paper variant
(`inception_jax.caffe`)::

  python -m inception_jax.convert --caffe=bvlc_googlenet.caffemodel --out=DIR

It records the input Caffe's weights need, 0-255 minus the mean (conv1 is
turned to take RGB, so this is Caffe's BGR ``mean_value: 104, 117, 123``),
and BVLC's evaluation crop (224 of 256), which `evaluate`, `predict` and
`export` apply by themselves.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import pickle
import re
from typing import Any, Mapping, Optional, Sequence, Tuple

import jax
import numpy as np

from inception_jax import caffe
from inception_jax import cli
from inception_jax import paths
from inception_jax.checkpoints import params
from inception_jax.models import googlenet

# Flax module names that differ from torchvision's attribute names. torchvision
# calls the stem's 1x1 and 3x3 convolutions conv2 and conv3.
_TOP_LEVEL = {
    'conv1': 'conv1',
    'conv2_reduce': 'conv2',
    'conv2': 'conv3',
    'classifier': 'fc',
    'aux1': 'aux1',
    'aux2': 'aux2',
}
# Inception branches; branch4.0 is the max pool, which has no weights.
_BRANCHES = {
    'b1x1': 'branch1',
    'b3x3_reduce': 'branch2.0',
    'b3x3': 'branch2.1',
    'b5x5_reduce': 'branch3.0',
    'b5x5': 'branch3.1',
    'pool_proj': 'branch4.1',
}
_LEAVES = {
    'scale': 'weight',
    'bias': 'bias',
    'mean': 'running_mean',
    'var': 'running_var',
    'kernel': 'weight',
}
_IGNORED_SUFFIXES = ('num_batches_tracked',)


def _torch_module_name(name: str, top_level: bool) -> str:
  if top_level:
    if name in _TOP_LEVEL:
      return _TOP_LEVEL[name]
    m = re.fullmatch(r'inception_(\d[a-z])', name)
    if m:
      return 'inception' + m.group(1)
  elif name in _BRANCHES:
    return _BRANCHES[name]
  elif name in ('conv', 'bn', 'fc1', 'fc2'):
    return name
  raise ValueError(f'no torchvision counterpart for Flax module {name!r}.')


def torch_key(path: Sequence[str]) -> str:
  """The state-dict key of the Flax variable at `path`.

  Args:
    path: ``(collection, module, ..., leaf)``, e.g.
      ``('batch_stats', 'inception_3a', 'b3x3', 'bn', 'mean')``.
  """
  modules = [_torch_module_name(n, i == 0) for i, n in enumerate(path[1:-1])]
  return '.'.join(modules + [_LEAVES[path[-1]]])


def _is_aux_fc1(path: Sequence[str]) -> bool:
  return (len(path) == 4 and path[1] in ('aux1', 'aux2') and path[2] == 'fc1'
          and path[3] == 'kernel')


def _torch_shape(flax_shape: Sequence[int]) -> Tuple[int, ...]:
  """What torchvision stores for a Flax variable of `flax_shape`.

  The aux heads' fc1 reordering permutes inputs within one axis, so it keeps
  the plain linear-layer shape.
  """
  if len(flax_shape) == 4:
    h, w, i, o = flax_shape
    return (o, i, h, w)
  if len(flax_shape) == 2:
    return tuple(reversed(flax_shape))
  return tuple(flax_shape)


def _to_flax(value: np.ndarray) -> np.ndarray:
  """torch layout -> Flax layout; `value` already has the checked shape.

  Only kernels have more than one axis here: OIHW -> HWIO, (out, in) ->
  (in, out).
  """
  if value.ndim == 4:
    return value.transpose(2, 3, 1, 0)
  if value.ndim == 2:
    return value.T
  return value


def _aux_fc1_to_flax(key: str, value: np.ndarray,
                     channels: int) -> np.ndarray:
  """(out, c*h*w) flattened channel first -> (h*w*c, out) channel last."""
  out_features, in_features = value.shape
  side = int(round((in_features / channels) ** 0.5))
  if channels * side * side != in_features:
    raise ValueError(f"state dict key '{key}': {in_features} inputs are not "
                     f'a square map of {channels} channels.')
  value = value.reshape(out_features, channels, side, side)
  value = value.transpose(0, 2, 3, 1).reshape(out_features, in_features)
  return value.T


def _to_numpy(value: Any) -> np.ndarray:
  """A torch tensor (any device, bfloat16 included) or array-like -> numpy."""
  if hasattr(value, 'detach'):
    value = value.detach().cpu()
    if value.is_floating_point():
      value = value.float()  # numpy has no bfloat16
    return value.numpy()
  return np.asarray(value)


def _strip_data_parallel_prefix(keys: Sequence[str]) -> str:
  """'module.' when every key has it (a DataParallel model's state dict)."""
  prefix = 'module.'
  if keys and all(k.startswith(prefix) for k in keys):
    return prefix
  return ''


def torchvision_model_kwargs(state_dict: Mapping[str, Any], *,
                             num_classes: Optional[int] = None,
                             transform_input: bool = True) -> dict[str, Any]:
  """`create_model` kwargs for the Flax twin of a torchvision state dict.

  ``aux`` follows the presence of the auxiliary heads' keys and
  ``num_classes`` (unless given) the final layer's shape. The state dict
  cannot say whether the torch model remapped its input; torchvision's
  ImageNet weights need ``transform_input=True``, hence the default.
  """
  prefix = _strip_data_parallel_prefix(list(state_dict))
  keys = [k[len(prefix):] for k in state_dict]
  aux = any(k.startswith(('aux1.', 'aux2.')) for k in keys)
  if num_classes is None:
    fc = prefix + 'fc.weight'
    if fc not in state_dict:
      raise ValueError("state dict has no key 'fc.weight', so the number of "
                       'classes is unknown; is this a torchvision googlenet '
                       'state dict?')
    shape = tuple(_to_numpy(state_dict[fc]).shape)
    if len(shape) != 2:
      raise ValueError(f"state dict key 'fc.weight' has shape {shape}, "
                       'expected (num_classes, 1024).')
    num_classes = shape[0]
  return dict(num_classes=int(num_classes), module='reduced', aux=aux,
              norm='batchnorm', variant='torchvision',
              transform_input=transform_input)


def _check_num_classes(state_dict, num_classes: Optional[int]) -> None:
  """A requested class count the final layer does not have, said plainly."""
  fc = _strip_data_parallel_prefix(list(state_dict)) + 'fc.weight'
  if num_classes is None or fc not in state_dict:
    return
  shape = tuple(_to_numpy(state_dict[fc]).shape)
  if shape[:1] != (num_classes,):
    raise ValueError(f"state dict key 'fc.weight' has shape {shape}, expected "
                     f'({num_classes}, 1024) for num_classes={num_classes}.')


def expected_variables(model: googlenet.GoogLeNet, image_size: int = 224):
  """The model's variable tree as ShapeDtypeStructs, without computing it."""
  return jax.eval_shape(
      lambda: googlenet.init_variables(model, jax.random.key(0), image_size))


def from_torchvision(state_dict: Mapping[str, Any], *,
                     num_classes: Optional[int] = None) -> dict[str, Any]:
  """Maps a torchvision googlenet state dict to Flax variables.

  Args:
    state_dict: parameter name -> torch tensor or numpy array, as returned by
      ``model.state_dict()`` of ``torchvision.models.googlenet`` (with or
      without ``aux_logits``). A DataParallel ``module.`` prefix is accepted.
    num_classes: the expected number of classes; None takes it from
      ``fc.weight``.

  Returns:
    ``{'params': ..., 'batch_stats': ...}`` of float32 numpy arrays for
    ``create_model(**torchvision_model_kwargs(state_dict))``.

  Raises:
    ValueError: naming the first key that is missing, unexpected, or has the
      wrong shape.
  """
  kwargs = torchvision_model_kwargs(state_dict, num_classes=num_classes)
  _check_num_classes(state_dict, num_classes)
  model = googlenet.create_model(**kwargs)
  expected = expected_variables(model)
  prefix = _strip_data_parallel_prefix(list(state_dict))
  what = (f'torchvision googlenet with num_classes={kwargs["num_classes"]}, '
          f'aux_logits={kwargs["aux"]}')

  # torch key -> Flax path and abstract value, in Flax's order.
  wanted = {}
  for key_path, struct in jax.tree_util.tree_flatten_with_path(expected)[0]:
    path = tuple(k.key for k in key_path)
    wanted[torch_key(path)] = (path, struct)

  # State-dict order first, so "the first mismatch" is the first one in the
  # file; then whatever it lacks.
  out = {}
  for full_key, raw in state_dict.items():
    key = full_key[len(prefix):]
    if key.endswith(_IGNORED_SUFFIXES):
      continue
    if key not in wanted:
      raise ValueError(f"state dict has unexpected key '{key}' for a {what}.")
    path, struct = wanted[key]
    value = _to_numpy(raw)
    want = _torch_shape(struct.shape)
    if tuple(value.shape) != want:
      raise ValueError(f"state dict key '{key}' has shape "
                       f'{tuple(value.shape)}, expected {want} for a {what}.')
    if _is_aux_fc1(path):
      aux_conv = expected['params'][path[1]]['conv']['conv']['kernel']
      value = _aux_fc1_to_flax(key, value, aux_conv.shape[-1])
    else:
      value = _to_flax(value)
    node = out
    for name in path[:-1]:
      node = node.setdefault(name, {})
    node[path[-1]] = np.ascontiguousarray(value.astype(struct.dtype))

  for key, (path, _) in wanted.items():
    if prefix + key not in state_dict:
      raise ValueError(f"state dict is missing key '{key}' (Flax "
                       f"{'/'.join(path)}) of a {what}.")
  # Same nesting order as model.init, whatever the state dict's order was.
  return jax.tree.map(lambda _, v: v, expected, out)


# ---------------------------------------------------------------------------
# Command line.


def _imagenet_class_names(num_classes: int) -> Optional[list[str]]:
  """torchvision ships the ImageNet category names; no download needed."""
  try:
    from torchvision import models  # pylint: disable=g-import-not-at-top
    names = list(models.GoogLeNet_Weights.IMAGENET1K_V1.meta['categories'])
  except Exception:  # pylint: disable=broad-except
    return None
  return names if len(names) == num_classes else None


def _file_digest(path: str, algorithm: str = 'sha256') -> str:
  h = hashlib.new(algorithm)
  with open(path, 'rb') as f:
    for chunk in iter(lambda: f.read(1 << 20), b''):
      h.update(chunk)
  return h.hexdigest()


def load_torch_state_dict(path: str) -> dict[str, Any]:
  """Reads a ``.pth`` state dict without executing code from it.

  ``weights_only=True``: a ``.pth`` is a pickle, and an untrusted pickle can
  run arbitrary code; only tensors and containers are accepted.

  Raises:
    ValueError: one line, for anything that is not a readable state dict.
  """
  try:
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError:
    raise ValueError('reading a .pth file needs PyTorch (pip install torch).'
                     ) from None
  if not os.path.isfile(path):
    raise ValueError(f'{path}: no such file.')
  try:
    obj = torch.load(path, map_location='cpu', weights_only=True)
  except pickle.UnpicklingError as e:
    # torch's message is a page of advice to set weights_only=False, which is
    # exactly what must not be done with an untrusted file; keep its cause.
    m = re.search(r'WeightsUnpickler error:\s*(.*?)(?:\.\s|\n\n|$)', str(e),
                  re.S)
    detail = ' '.join(m.group(1).split()) if m else cli.one_line(e)
    raise ValueError(
        f'cannot load {path} as a PyTorch state dict: it holds more than '
        f'tensors or is not a PyTorch file ({detail}); save '
        'model.state_dict() with torch.save.') from None
  except Exception as e:  # pylint: disable=broad-except
    raise ValueError(f'cannot load {path} as a PyTorch state dict: '
                     f'{cli.one_line(e)}') from None
  if not isinstance(obj, Mapping) or not all(
      isinstance(k, str) and hasattr(v, 'shape') for k, v in obj.items()):
    raise ValueError(
        f'{path} holds a {type(obj).__name__}, not a state dict (a mapping '
        'of parameter names to tensors); save model.state_dict().')
  return dict(obj)


def convert_file(torchvision_path: str, out_dir: str, *, image_size: int = 224,
                 transform_input: bool = True, overwrite: bool = False) -> str:
  """Converts a torchvision ``.pth`` state dict into a params checkpoint."""
  torchvision_path = paths.resolve(torchvision_path)
  state_dict = load_torch_state_dict(torchvision_path)
  kwargs = torchvision_model_kwargs(state_dict,
                                    transform_input=transform_input)
  variables = from_torchvision(state_dict)
  extra = {
      'source': 'torchvision.models.googlenet',
      'source_file': os.path.basename(torchvision_path),
      'source_sha256': _file_digest(torchvision_path),
  }
  out = params.save(
      paths.resolve(out_dir), variables, googlenet.create_model(**kwargs),
      image_size=image_size,
      class_names=_imagenet_class_names(kwargs['num_classes']), extra=extra,
      overwrite=overwrite)
  return os.fspath(out)


# BVLC's evaluation: a 256x256 resize and its center 224 crop, the mean
# subtracted on the 0-255 scale. Here the crop keeps the aspect ratio (the
# center square, 224/256 of the shorter side), as every evaluation does.
CAFFE_PREPROCESSING = {'image_size': 224, 'crop_fraction': 224 / 256,
                       'normalization': 'caffe'}


@dataclasses.dataclass
class CaffeConversion:
  """What `convert_caffe_file` wrote and found.

  Attributes:
    out: the checkpoint directory.
    sha1: the file's SHA-1.
    bvlc_sha1_matches: whether it is BVLC's published one; None when the
      file has neither the name nor the size of bvlc_googlenet.caffemodel.
    aux: the file had the auxiliary heads (loss1/*, loss2/*).
  """
  out: str
  sha1: str
  bvlc_sha1_matches: Optional[bool]
  aux: bool

  def lines(self, caffe_path: str) -> list[str]:
    lines = []
    if self.bvlc_sha1_matches:
      lines.append(f'SHA-1 {self.sha1} matches BVLC\'s published '
                   f'{caffe.BVLC_GOOGLENET_FILE}.')
    elif self.bvlc_sha1_matches is not None:
      lines.append(
          f'SHA-1 {self.sha1} of {caffe_path} does not match BVLC\'s '
          f'published {caffe.BVLC_GOOGLENET_SHA1} for '
          f'{caffe.BVLC_GOOGLENET_FILE}: another or a damaged file; its '
          'layers fit, so it was converted.')
    if not self.aux:
      lines.append(
          f'no auxiliary heads in {caffe_path}: it has no loss1/* or loss2/* '
          'layers (a deploy-only file), so the checkpoint has none; '
          'fine-tuning with aux=True initialises them fresh.')
    lines.append(f'wrote {self.out}')
    return lines


def convert_caffe_file(caffe_path: str, out_dir: str, *,
                       overwrite: bool = False) -> CaffeConversion:
  """Converts a bvlc_googlenet caffemodel into a params checkpoint.

  Raises:
    ValueError: one line, for a file that is not a caffemodel or holds
      another network (the first layer that does not fit), before anything
      is written.
  """
  caffe_path = paths.resolve(caffe_path)
  if not os.path.isfile(caffe_path):
    raise ValueError(f'{caffe_path}: no such file.')
  net = caffe.read(caffe_path)
  variables, kwargs = caffe.from_caffe(net, source=caffe_path)
  sha1 = _file_digest(caffe_path, 'sha1')
  looks_like_bvlc = (
      os.path.basename(caffe_path) == caffe.BVLC_GOOGLENET_FILE or
      os.path.getsize(caffe_path) == caffe.BVLC_GOOGLENET_SIZE)
  extra = {
      'source': 'caffe bvlc_googlenet',
      'source_file': os.path.basename(caffe_path),
      'source_sha1': sha1,
      'caffe_network': net.name,
      'caffe_layer_format': 'layers (V1)' if net.v1 else 'layer',
      'preprocessing': dict(CAFFE_PREPROCESSING),
      'input': ('RGB, 0-255 minus the mean (123, 117, 104): conv1\'s input '
                "channels are reversed from Caffe's BGR, whose mean_value "
                '104, 117, 123 this is'),
  }
  out = params.save(
      paths.resolve(out_dir), variables, googlenet.create_model(**kwargs),
      image_size=CAFFE_PREPROCESSING['image_size'],
      class_names=_imagenet_class_names(kwargs['num_classes']), extra=extra,
      overwrite=overwrite)
  return CaffeConversion(
      out=os.fspath(out), sha1=sha1,
      bvlc_sha1_matches=(sha1 == caffe.BVLC_GOOGLENET_SHA1
                         if looks_like_bvlc else None),
      aux=kwargs['aux'])


def main(argv: Sequence[str]) -> None:
  del argv
  from absl import flags  # pylint: disable=g-import-not-at-top
  f = flags.FLAGS
  if bool(f.torchvision) == bool(f.caffe):
    raise ValueError('Pass exactly one of --torchvision (a .pth state dict) '
                     'and --caffe (a .caffemodel).')
  if f.caffe:
    result = convert_caffe_file(f.caffe, f.out, overwrite=f.overwrite)
    print('\n'.join(result.lines(f.caffe)))
    return
  out = convert_file(f.torchvision, f.out, image_size=f.image_size,
                     transform_input=f.transform_input, overwrite=f.overwrite)
  print(f'wrote {out}')


def define_flags() -> None:
  from absl import flags  # pylint: disable=g-import-not-at-top
  cli.DEFINE_path('torchvision', None,
                  'torchvision googlenet state dict (.pth).')
  cli.DEFINE_path('caffe', None,
                  "Caffe bvlc_googlenet weights (.caffemodel), BVLC's or "
                  'any of that network.')
  cli.DEFINE_path('out', None, 'checkpoint directory to write.')
  flags.DEFINE_integer('image_size', 224,
                       'input size recorded for preprocessing (--torchvision).',
                       lower_bound=32)
  flags.DEFINE_bool('transform_input', True,
                    "torchvision's input remapping; its ImageNet weights "
                    'need it.')
  flags.DEFINE_bool('overwrite', False, 'replace an existing checkpoint.')
  flags.mark_flags_as_required(['out'])


if __name__ == '__main__':
  cli.run(main, define_flags)
