"""Caffe's bvlc_googlenet weights (a ``.caffemodel``) and this project's model.

A ``.caffemodel`` is a serialised protobuf ``NetParameter`` (Caffe's
``src/caffe/proto/caffe.proto``). Only the few fields that carry weights are
read and written here, straight from the protobuf wire format, so neither
Caffe nor a protobuf compiler is needed:

* ``NetParameter``: ``name`` = 1, ``layer`` = 100 (``LayerParameter``) or,
  in files written before 2015, ``layers`` = 2 (``V1LayerParameter``);
* ``LayerParameter``: ``name`` = 1, ``type`` = 2 (a string), ``blobs`` = 7;
  ``V1LayerParameter``: ``name`` = 4, ``type`` = 5 (an enum), ``blobs`` = 6;
* ``BlobProto``: ``shape`` = 7 (``BlobShape``: ``dim`` = 1, packed int64),
  or the older 4-D ``num``/``channels``/``height``/``width`` = 1-4;
  ``data`` = 5 (packed float), ``double_data`` = 8.

Every other field (solver settings, ``param``, layer parameters) is skipped:
the architecture is this project's `googlenet.GoogLeNet` (paper variant,
``norm='lrn'``), whose layers match bvlc_googlenet's one for one.

`from_caffe` maps the layers onto the Flax variables, checked against the
model's own variable tree, so a file of another network fails with the
first layer that does not fit. Layouts: convolutions OIHW -> HWIO, inner
products (out, in) -> (in, out), the auxiliary heads' first inner product
with its inputs reordered from Caffe's (c, h, w) flattening to NHWC's
(h, w, c). conv1's input channels are reversed: Caffe's weights read BGR,
this project's images are RGB, so the checkpoint takes the same RGB input,
0-255 minus the mean (``data.normalization='caffe'``), as every LRN model
here, and Caffe's ``mean_value: 104, 117, 123`` (BGR) is that mean.
`to_caffe` is the inverse (a file the tests and Caffe itself can read).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

import jax
import numpy as np

from inception_jax.models import googlenet

# BVLC's models/bvlc_googlenet/readme.md publishes the file's SHA-1.
BVLC_GOOGLENET_FILE = 'bvlc_googlenet.caffemodel'
BVLC_GOOGLENET_SHA1 = '405fc5acd08a3bb12de8ee5e23a96bec22f08204'
BVLC_GOOGLENET_SIZE = 53533754  # bytes

# Field numbers of caffe.proto.
_NET_NAME, _NET_LAYERS_V1, _NET_LAYER = 1, 2, 100
_LAYER_NAME, _LAYER_TYPE, _LAYER_BLOBS = 1, 2, 7
_V1_NAME, _V1_TYPE, _V1_BLOBS = 4, 5, 6
_BLOB_LEGACY_DIMS = (1, 2, 3, 4)  # num, channels, height, width
_BLOB_DATA, _BLOB_SHAPE, _BLOB_DOUBLE_DATA = 5, 7, 8
_SHAPE_DIM = 1
# V1LayerParameter.LayerType values of the layers GoogLeNet uses.
_V1_TYPES = {3: 'Concat', 4: 'Convolution', 5: 'Data', 6: 'Dropout',
             14: 'InnerProduct', 15: 'LRN', 17: 'Pooling', 18: 'ReLU',
             20: 'Softmax', 21: 'SoftmaxWithLoss', 1: 'Accuracy'}
_V1_TYPE_IDS = {name: i for i, name in _V1_TYPES.items()}

# Flax module -> Caffe layer (bvlc_googlenet's names).
_BRANCHES = {'b1x1': '1x1', 'b3x3_reduce': '3x3_reduce', 'b3x3': '3x3',
             'b5x5_reduce': '5x5_reduce', 'b5x5': '5x5',
             'pool_proj': 'pool_proj'}
_STEM = {'conv1': 'conv1/7x7_s2', 'conv2_reduce': 'conv2/3x3_reduce',
         'conv2': 'conv2/3x3', 'classifier': 'loss3/classifier'}
_AUX = {'aux1': 'loss1', 'aux2': 'loss2'}
_AUX_LAYERS = {'conv': 'conv', 'fc1': 'fc', 'fc2': 'classifier'}
_BLOB_NAMES = ('weights', 'bias')


class CaffeFormatError(ValueError):
  """Bytes that are not a serialised NetParameter."""


@dataclasses.dataclass
class Layer:
  name: str
  type: str
  blobs: List[np.ndarray]


@dataclasses.dataclass
class Net:
  """What a caffemodel holds that matters here.

  Attributes:
    name: the network's name (bvlc_googlenet's is "GoogleNet").
    layers: in file order, with their weight blobs (float32).
    v1: the file uses the pre-2015 ``layers`` field (V1LayerParameter).
  """
  name: str
  layers: List[Layer]
  v1: bool = False

  def with_weights(self) -> Dict[str, Layer]:
    return {layer.name: layer for layer in self.layers if layer.blobs}


# ---------------------------------------------------------------------------
# The protobuf wire format.


def _varint(buf: memoryview, pos: int) -> Tuple[int, int]:
  result = shift = 0
  while True:
    if pos >= len(buf):
      raise CaffeFormatError('truncated varint')
    byte = buf[pos]
    pos += 1
    result |= (byte & 0x7F) << shift
    if not byte & 0x80:
      return result, pos
    shift += 7
    if shift > 63:
      raise CaffeFormatError('varint longer than 10 bytes')


def _fields(buf: memoryview) -> Iterator[Tuple[int, int, Any]]:
  """(field number, wire type, value): an int, or the raw bytes."""
  pos, end = 0, len(buf)
  while pos < end:
    key, pos = _varint(buf, pos)
    field, wire = key >> 3, key & 7
    if field == 0:
      raise CaffeFormatError(f'field number 0 at byte {pos}')
    if wire == 0:
      value, pos = _varint(buf, pos)
    elif wire in (1, 5):
      size = 8 if wire == 1 else 4
      value, pos = buf[pos:pos + size], pos + size
    elif wire == 2:
      size, pos = _varint(buf, pos)
      value, pos = buf[pos:pos + size], pos + size
    else:  # groups (3, 4) are not in caffe.proto
      raise CaffeFormatError(f'wire type {wire} at byte {pos}')
    if pos > end:
      raise CaffeFormatError('a field runs past the end of its message')
    yield field, wire, value


def _text(value: memoryview) -> str:
  try:
    return bytes(value).decode('utf-8')
  except UnicodeDecodeError:
    raise CaffeFormatError('a name is not UTF-8 text') from None


def _packed(value, wire: int, dtype: str) -> np.ndarray:
  """A repeated scalar, packed (wire 2) or as one element (wire 1/5)."""
  if wire not in (1, 2, 5) or len(value) % np.dtype(dtype).itemsize:
    raise CaffeFormatError('a blob\'s data has the wrong wire type or size')
  return np.frombuffer(value, dtype)


def _varints(value, wire: int) -> List[int]:
  if wire == 0:
    return [value]
  out, pos = [], 0
  while pos < len(value):
    v, pos = _varint(value, pos)
    out.append(v)
  return out


def _blob(buf: memoryview) -> np.ndarray:
  legacy = [0, 0, 0, 0]
  shape: Optional[List[int]] = None
  chunks: List[np.ndarray] = []
  for field, wire, value in _fields(buf):
    if field in _BLOB_LEGACY_DIMS and wire == 0:
      legacy[field - 1] = value
    elif field == _BLOB_SHAPE and wire == 2:
      shape = [d for f, w, v in _fields(value) if f == _SHAPE_DIM
               for d in _varints(v, w)]
    elif field == _BLOB_DATA:
      chunks.append(_packed(value, wire, '<f4'))
    elif field == _BLOB_DOUBLE_DATA:
      chunks.append(_packed(value, wire, '<f8').astype(np.float32))
  if shape is None:
    shape = legacy
  data = (np.concatenate(chunks) if chunks else np.zeros(0, np.float32))
  if data.size != int(np.prod(shape)):
    raise CaffeFormatError(f'a blob of shape {tuple(shape)} holds '
                           f'{data.size} values')
  return data.astype(np.float32).reshape(shape)


def _layer(buf: memoryview, v1: bool) -> Layer:
  name_field, type_field, blobs_field = (
      (_V1_NAME, _V1_TYPE, _V1_BLOBS) if v1 else
      (_LAYER_NAME, _LAYER_TYPE, _LAYER_BLOBS))
  name, kind, blobs = '', '', []
  for field, wire, value in _fields(buf):
    if field == name_field and wire == 2:
      name = _text(value)
    elif field == type_field:
      kind = (_V1_TYPES.get(value, f'V1 type {value}') if v1 and wire == 0
              else _text(value) if wire == 2 else kind)
    elif field == blobs_field and wire == 2:
      blobs.append(_blob(value))
  return Layer(name, kind, blobs)


def parse(data: bytes) -> Net:
  """A serialised NetParameter -> `Net`.

  Raises:
    CaffeFormatError: the bytes are not a NetParameter (the wire format
      breaks, or no layer holds weights).
  """
  buf = memoryview(data)
  name, layers, v1 = '', [], False
  for field, wire, value in _fields(buf):
    if field == _NET_NAME and wire == 2:
      name = _text(value)
    elif field == _NET_LAYER and wire == 2:
      layers.append(_layer(value, v1=False))
    elif field == _NET_LAYERS_V1 and wire == 2:
      layers.append(_layer(value, v1=True))
      v1 = True
  if not any(layer.blobs for layer in layers):
    raise CaffeFormatError('no layer holds weights')
  return Net(name, layers, v1)


def _encode_varint(value: int) -> bytes:
  out = bytearray()
  while True:
    byte = value & 0x7F
    value >>= 7
    if value:
      out.append(byte | 0x80)
    else:
      out.append(byte)
      return bytes(out)


def _key(field: int, wire: int) -> bytes:
  return _encode_varint(field << 3 | wire)


def _message(field: int, payload: bytes) -> bytes:
  return _key(field, 2) + _encode_varint(len(payload)) + payload


def _blob_bytes(array: np.ndarray, v1: bool) -> bytes:
  array = np.ascontiguousarray(array, '<f4')
  if v1:  # the 4-D shape of the time, leading axes of size 1
    dims = (1,) * (4 - array.ndim) + array.shape
    shape = b''.join(_key(f, 0) + _encode_varint(d)
                     for f, d in zip(_BLOB_LEGACY_DIMS, dims))
  else:
    shape = _message(_BLOB_SHAPE, _message(
        _SHAPE_DIM, b''.join(_encode_varint(d) for d in array.shape)))
  return shape + _message(_BLOB_DATA, array.tobytes())


def serialize(net: Net) -> bytes:
  """`Net` -> the bytes of a caffemodel (``net.v1``: the V1 format)."""
  out = [_message(_NET_NAME, net.name.encode())]
  for layer in net.layers:
    blobs = b''.join(
        _message(_V1_BLOBS if net.v1 else _LAYER_BLOBS, _blob_bytes(b, net.v1))
        for b in layer.blobs)
    if net.v1:
      body = (_message(_V1_NAME, layer.name.encode()) + _key(_V1_TYPE, 0) +
              _encode_varint(_V1_TYPE_IDS[layer.type]) + blobs)
    else:
      body = (_message(_LAYER_NAME, layer.name.encode()) +
              _message(_LAYER_TYPE, layer.type.encode()) + blobs)
    out.append(_message(_NET_LAYERS_V1 if net.v1 else _NET_LAYER, body))
  return b''.join(out)


# ---------------------------------------------------------------------------
# bvlc_googlenet <-> the paper variant's variables.


def caffe_layer(module_path: Sequence[str]) -> str:
  """The Caffe layer of a Flax module path, e.g. ('inception_3a', 'b1x1',
  'conv') -> 'inception_3a/1x1'."""
  path = list(module_path)
  if len(path) > 1 and path[-1] == 'conv':  # a ConvBlock's nn.Conv
    path.pop()
  if len(path) == 1 and path[0] in _STEM:
    return _STEM[path[0]]
  if len(path) == 2 and path[0] in _AUX and path[1] in _AUX_LAYERS:
    return f'{_AUX[path[0]]}/{_AUX_LAYERS[path[1]]}'
  if len(path) == 2 and path[1] in _BRANCHES:
    return f'{path[0]}/{_BRANCHES[path[1]]}'
  raise ValueError(f'no Caffe counterpart for Flax module {"/".join(path)}.')


def network_order(aux: bool) -> List[str]:
  """bvlc_googlenet's weighted layers in the order of its prototxt."""
  names = [_STEM['conv1'], _STEM['conv2_reduce'], _STEM['conv2']]
  for spec in googlenet.TABLE1:
    names += [f'{spec.name}/{b}' for b in _BRANCHES.values()]
    if aux and spec.name in googlenet.AUX_AFTER:
      head = _AUX[googlenet.AUX_AFTER[spec.name]]
      names += [f'{head}/{layer}' for layer in _AUX_LAYERS.values()]
  return names + [_STEM['classifier']]


def model_kwargs(num_classes: int = 1000, aux: bool = True) -> Dict[str, Any]:
  """`create_model` kwargs of bvlc_googlenet: the paper's network."""
  return googlenet.model_kwargs(googlenet.create_model(
      num_classes=num_classes, module='reduced', aux=aux, norm='lrn',
      variant='paper', width=1.0))


def _expected(kwargs: Mapping[str, Any]):
  model = googlenet.create_model(**kwargs)
  return jax.eval_shape(
      lambda: googlenet.init_variables(model, jax.random.key(0), 224))


def _aux_channels(params) -> int:
  """The channels the auxiliary heads' 1x1 convolution feeds their fc1."""
  if 'aux1' not in params:
    return 0
  return int(np.shape(params['aux1']['conv']['conv']['kernel'])[-1])


def _is_aux_fc1(path: Sequence[str]) -> bool:
  return len(path) == 3 and path[0] in _AUX and path[1] == 'fc1'


def _caffe_shape(flax_shape: Sequence[int]) -> Tuple[int, ...]:
  if len(flax_shape) == 4:
    h, w, i, o = flax_shape
    return (o, i, h, w)
  return tuple(reversed(flax_shape))


def _to_flax(path: Sequence[str], value: np.ndarray, aux_channels: int
             ) -> np.ndarray:
  if value.ndim == 4:
    if path[0] == 'conv1':
      value = value[:, ::-1]  # BGR -> RGB input channels
    return value.transpose(2, 3, 1, 0)
  if value.ndim == 2:
    if _is_aux_fc1(path):  # inputs (c, h, w) -> (h, w, c)
      out, size = value.shape
      side = int(round((size / aux_channels) ** 0.5))
      value = value.reshape(out, aux_channels, side, side)
      value = value.transpose(0, 2, 3, 1).reshape(out, size)
    return value.T
  return value


def _to_caffe(path: Sequence[str], value: np.ndarray, aux_channels: int
              ) -> np.ndarray:
  if value.ndim == 4:
    value = value.transpose(3, 2, 0, 1)
    return value[:, ::-1] if path[0] == 'conv1' else value
  if value.ndim == 2:
    value = value.T
    if _is_aux_fc1(path):  # inputs (h, w, c) -> (c, h, w)
      out, size = value.shape
      side = int(round((size / aux_channels) ** 0.5))
      value = value.reshape(out, side, side, aux_channels)
      value = value.transpose(0, 3, 1, 2).reshape(out, size)
    return value
  return value


def _fit(blob: np.ndarray, want: Tuple[int, ...]) -> Optional[np.ndarray]:
  """`blob` in shape `want`, allowing the V1 era's leading axes of size 1
  (a bias stored as 1x1x1xN, an inner product as 1x1xOUTxIN)."""
  shape = blob.shape
  while len(shape) > len(want) and shape[0] == 1:
    shape = shape[1:]
  return blob.reshape(want) if shape == want else None


def _leaves(expected) -> List[Tuple[Tuple[str, ...], Any]]:
  """(module path + leaf, ShapeDtypeStruct) of every parameter."""
  return [(tuple(k.key for k in key_path), struct)
          for key_path, struct in
          jax.tree_util.tree_flatten_with_path(expected['params'])[0]]


def from_caffe(net: Net, *, source: str = 'the caffemodel'
               ) -> Tuple[Dict[str, Any], Dict[str, Any]]:
  """Maps a bvlc_googlenet caffemodel onto the paper variant's variables.

  The class count follows ``loss3/classifier``; the auxiliary heads are
  loaded when the file has them (the released model does; a deploy-only
  file does not) and the model is built without them otherwise.

  Args:
    net: the parsed file.
    source: how error messages name the file.

  Returns:
    ``(variables, model_kwargs)``: ``{'params': ...}`` of float32 numpy
    arrays, and the `create_model` kwargs they belong to.

  Raises:
    ValueError: one line naming the first layer, in file order, that
      bvlc_googlenet does not have or that has the wrong shape, or the first
      of its layers, in network order, that the file lacks.
  """
  layers = net.with_weights()
  aux = any(name.startswith(tuple(f'{h}/' for h in _AUX.values()))
            for name in layers)
  num_classes = 1000
  classifier = layers.get(_STEM['classifier'])
  if classifier is not None and classifier.blobs:
    shape = [d for d in classifier.blobs[0].shape if d != 1]
    num_classes = shape[0] if len(shape) == 2 else num_classes
  kwargs = model_kwargs(num_classes, aux)
  expected = _expected(kwargs)
  what = (f'bvlc_googlenet ({num_classes} classes'
          f'{", auxiliary heads" if aux else ""})')

  wanted: Dict[str, List[Tuple[Tuple[str, ...], Any]]] = {}
  for path, struct in _leaves(expected):
    wanted.setdefault(caffe_layer(path[:-1]), []).append((path, struct))
  aux_channels = _aux_channels(expected['params'])

  out: Dict[str, Any] = {}
  for layer in net.layers:
    if not layer.blobs:
      continue
    if layer.name not in wanted:
      named = f'; the file names its network {net.name!r}' if net.name else ''
      raise ValueError(
          f"{source} is not bvlc_googlenet: its layer '{layer.name}' "
          f"({layer.type or 'untyped'}) is not one of bvlc_googlenet's "
          f"('{network_order(aux)[0]}', ...){named}.")
    leaves = sorted(wanted[layer.name], key=lambda p: p[0][-1] != 'kernel')
    if len(layer.blobs) != len(leaves):
      raise ValueError(
          f"{source}: layer '{layer.name}' has {len(layer.blobs)} blobs, "
          f'expected {len(leaves)} (weights and bias) for {what}.')
    for index, ((path, struct), blob) in enumerate(zip(leaves, layer.blobs)):
      want = _caffe_shape(struct.shape)
      value = _fit(blob, want)
      if value is None:
        raise ValueError(
            f"{source}: layer '{layer.name}' blob {index} "
            f'({_BLOB_NAMES[index]}) has shape {tuple(blob.shape)}, expected '
            f'{want} for {what}.')
      node = out
      for name in path[:-1]:
        node = node.setdefault(name, {})
      node[path[-1]] = np.ascontiguousarray(
          _to_flax(path, value, aux_channels).astype(struct.dtype))

  for name in network_order(aux):
    if name not in layers:
      raise ValueError(f"{source} has no layer '{name}' of {what}.")
  # model.init's nesting order, whatever the file's order was.
  return jax.tree.map(lambda _, v: v, expected, {'params': out}), kwargs


def to_caffe(variables: Mapping[str, Any], *, name: str = 'GoogleNet',
             v1: bool = False) -> Net:
  """The paper variant's variables as a bvlc_googlenet `Net` (`from_caffe`'s
  inverse; `serialize` writes it)."""
  by_layer: Dict[str, List[Tuple[Tuple[str, ...], np.ndarray]]] = {}
  aux_channels = _aux_channels(variables['params'])
  for key_path, value in jax.tree_util.tree_flatten_with_path(
      variables['params'])[0]:
    path = tuple(k.key for k in key_path)
    by_layer.setdefault(caffe_layer(path[:-1]), []).append(
        (path, np.asarray(value, np.float32)))
  aux = any(n.startswith(tuple(f'{h}/' for h in _AUX.values()))
            for n in by_layer)
  layers = []
  for layer_name in network_order(aux):
    leaves = sorted(by_layer[layer_name], key=lambda p: p[0][-1] != 'kernel')
    blobs = [np.ascontiguousarray(_to_caffe(path, value, aux_channels))
             for path, value in leaves]
    kind = 'Convolution' if blobs[0].ndim == 4 else 'InnerProduct'
    layers.append(Layer(layer_name, kind, blobs))
  return Net(name, layers, v1)


def read(path: str) -> Net:
  """Reads a caffemodel file; one-line `ValueError`s for what is not one."""
  with open(path, 'rb') as f:
    data = f.read()
  head = data[:200].lstrip()
  if head.startswith((b'name:', b'layer', b'layers', b'input', b'#')):
    raise ValueError(
        f'{path} is a text prototxt (the network description), not a '
        'caffemodel; pass the binary weights file, e.g. '
        f'{BVLC_GOOGLENET_FILE}.')
  try:
    return parse(data)
  except CaffeFormatError as e:
    raise ValueError(f'{path} is not a Caffe model (a binary NetParameter, '
                     f'.caffemodel): {e}.') from None
