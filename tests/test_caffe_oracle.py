"""BVLC's bvlc_googlenet in OpenCV's Caffe engine against the imported model.

The oracle owes nothing to this project's layer mapping: a caffemodel whose
layers and blob shapes come from BVLC's deploy.prototxt itself (and, for the
auxiliary heads, from train_val.prototxt), filled with random weights, is run
by OpenCV's Caffe importer (``cv2.dnn.readNetFromCaffe``) on Caffe's input:
BGR pixels on 0-255 minus ``mean_value: 104, 117, 123``, as BVLC's
train_val.prototxt sets it. The same file goes through
``inception_jax.convert --caffe`` into the paper variant, fed the same
pixels with the normalisation its checkpoint records. The logits agree to
1e-4 (relative L2) at 224x224 and at 231x240; an LRN alpha not divided by
the window, floor-mode pools, "SAME" padding for conv1, another concat order
or Caffe's BGR order left in conv1 each change them by more than 1e-2
(`test_a_wrong_convention_is_caught`).

BVLC's prototxts are read in place from ``<repo>/../shared/reference/
bvlc_googlenet``, never copied into the project; where they are absent
these tests skip.
"""

import functools
import os
import re

from flax import linen as nn
import jax
import numpy as np
import pytest

from inception_jax import caffe
from inception_jax import convert
from inception_jax import predict
from inception_jax.checkpoints import loader
from inception_jax.data import normalization
from inception_jax.models import googlenet
from inception_jax.models import layers
from tests.helpers import REPO

import cv2  # pylint: disable=g-import-not-at-top,wrong-import-order

REFERENCE = os.path.normpath(
    os.path.join(REPO, '..', 'shared', 'reference', 'bvlc_googlenet'))
pytestmark = pytest.mark.skipif(
    not os.path.isfile(os.path.join(REFERENCE, 'deploy.prototxt')),
    reason=f"BVLC's bvlc_googlenet prototxts are not in {REFERENCE}")


def setup_module():
  # Not a skip: requirements.txt pins the OpenCV that has the importer, so
  # an environment without it is wrong, and the oracle must not pass quietly.
  if not hasattr(getattr(cv2, 'dnn', None), 'readNetFromCaffe'):
    pytest.fail(f'OpenCV {cv2.__version__} has no Caffe importer (OpenCV 5 '
                'removed it): install requirements.txt, which pins '
                'opencv-python-headless 4.x.', pytrace=False)


TOL = 1e-4  # relative L2, float32 through ~60 layers in two engines
WRONG = 100 * TOL
CAFFE_MEAN_BGR = (104, 117, 123)  # train_val.prototxt's mean_value
SIZES = {'224x224': (224, 224, 2), '231x240': (231, 240, 1)}


def rel_l2(a, b):
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  return float(np.linalg.norm(a - b) / np.linalg.norm(b))


# --- What the prototxt says, read without this project's code. --------------

def layer_blocks(text):
  """The text of every top-level ``layer { ... }`` block, in order."""
  blocks, depth, start = [], 0, 0
  for m in re.finditer(r'[{}]', text):
    if m.group() == '{':
      if depth == 0:
        start = text.rfind('layer', 0, m.start())
      depth += 1
    else:
      depth -= 1
      if depth == 0:
        blocks.append(text[start:m.end()])
  return blocks


def field(block, key, default=None, cast=int):
  m = re.search(rf'\b{key}:\s*"?([^"\s]+)"?', block)
  return cast(m.group(1)) if m else default


def name_of(block):
  return field(block, 'name', cast=str)


def weight_shapes(blocks, shapes):
  """{layer: [weights shape, bias shape]} of every weighted layer, following
  each blob's (C, H, W) through the layers as Caffe does (ceil-mode pools);
  `shapes` (blob -> (C, H, W)) holds the inputs and is filled in."""
  out = {}
  for block in blocks:
    kind = field(block, 'type', cast=str)
    bottoms = re.findall(r'\bbottom:\s*"([^"]+)"', block)
    top = re.findall(r'\btop:\s*"([^"]+)"', block)[0]
    if kind == 'Input':
      continue
    c, h, w = shapes[bottoms[0]]
    k, s, p = (field(block, 'kernel_size'), field(block, 'stride', 1),
               field(block, 'pad', 0))
    if kind == 'Convolution':
      n = field(block, 'num_output')
      out[name_of(block)] = [(n, c, k, k), (n,)]
      shapes[top] = (n, (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1)
    elif kind == 'Pooling':
      def pooled(d, k=k, s=s, p=p):
        size = -(-(d + 2 * p - k) // s) + 1
        return size - 1 if p and (size - 1) * s >= d + p else size
      shapes[top] = (c, pooled(h), pooled(w))
    elif kind == 'Concat':
      shapes[top] = (sum(shapes[b][0] for b in bottoms), h, w)
    elif kind == 'InnerProduct':
      n = field(block, 'num_output')
      out[name_of(block)] = [(n, c * h * w), (n,)]
      shapes[top] = (n, 1, 1)
    else:  # ReLU, LRN, Dropout, Softmax keep the shape
      shapes[top] = (c, h, w)
  return out


def aux_blocks(train_val, head):
  """train_val.prototxt's layers of one auxiliary head (loss1 or loss2),
  without its loss and accuracy layers."""
  return [b for b in layer_blocks(train_val)
          if name_of(b).startswith(head + '/') and
          field(b, 'type', cast=str) not in ('SoftmaxWithLoss', 'Accuracy')]


def input_block(top, shape):
  dims = ' '.join(f'dim: {d}' for d in shape)
  return (f'layer {{ name: "input" type: "Input" top: "{top}" '
          f'input_param {{ shape {{ {dims} }} }} }}\n')


def smooth_images(rng, count, height, width):
  """uint8 RGB images with structure at several scales, like photos."""
  images = []
  for _ in range(count):
    coarse = rng.uniform(0, 255, (7, 8, 3)).astype(np.float32)
    image = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)
    image += rng.normal(0, 20, image.shape)
    images.append(np.clip(image, 0, 255).astype(np.uint8))
  return np.stack(images)


# --- The oracle: random weights, one file, two engines. ----------------------

@pytest.fixture(scope='module')
def oracle(tmp_path_factory):
  directory = tmp_path_factory.mktemp('bvlc')
  deploy = open(os.path.join(REFERENCE, 'deploy.prototxt')).read()
  train_val = open(os.path.join(REFERENCE, 'train_val.prototxt')).read()
  shapes = {'data': (3, 224, 224)}
  wanted = weight_shapes(layer_blocks(deploy), shapes)
  heads = {'loss1': 'inception_4a/output', 'loss2': 'inception_4d/output'}
  for head in heads:
    wanted.update(weight_shapes(aux_blocks(train_val, head), shapes))
  rng = np.random.default_rng(0)
  weights = {}
  for name, (w_shape, b_shape) in wanted.items():
    fan_in = int(np.prod(w_shape[1:]))
    weights[name] = [
        (rng.standard_normal(w_shape) * np.sqrt(2 / fan_in)).astype(np.float32),
        rng.uniform(-0.1, 0.1, b_shape).astype(np.float32)]
  files = {}
  for v1 in (False, True):
    net = caffe.Net('GoogleNet', [
        caffe.Layer(name, 'Convolution' if len(blobs[0].shape) == 4 else
                    'InnerProduct', blobs) for name, blobs in weights.items()],
                    v1=v1)
    files[v1] = str(directory / f'random_{"v1" if v1 else "layer"}.caffemodel')
    with open(files[v1], 'wb') as f:
      f.write(caffe.serialize(net))

  checkpoint = convert.convert_caffe_file(files[False], str(directory / 'ckpt'))
  restored = loader.load(checkpoint.out)
  model = restored.model

  @jax.jit
  def logits(variables, images):
    return model.apply(variables, images, train=False)[0]

  return dict(
      directory=directory, deploy=deploy, train_val=train_val, files=files,
      heads=heads, shapes=shapes, restored=restored, logits=logits,
      normalization=predict.preprocessing_of(restored).normalization)


def opencv_logits(prototxt_text, caffemodel, images_rgb, directory,
                  output='loss3/classifier'):
  """Caffe's forward pass in OpenCV, on Caffe's input: BGR minus the mean."""
  path = directory / f'net_{abs(hash(prototxt_text))}.prototxt'
  path.write_text(prototxt_text)
  net = cv2.dnn.readNetFromCaffe(str(path), caffemodel)
  h, w = images_rgb.shape[1:3]
  net.setInput(cv2.dnn.blobFromImages(
      [image[..., ::-1] for image in images_rgb], 1.0, (w, h), CAFFE_MEAN_BGR,
      swapRB=False, crop=False))
  return net.forward(output)


@pytest.fixture(scope='module')
def at_224(oracle):
  height, width, count = SIZES['224x224']
  images = smooth_images(np.random.default_rng(1), count, height, width)
  reference = opencv_logits(oracle['deploy'], oracle['files'][False], images,
                            oracle['directory'])
  ours = normalization.normalize(images, oracle['normalization'])
  return dict(images=images, reference=reference, ours=ours)


def test_the_checkpoint_records_caffes_input(oracle):
  assert oracle['normalization'] == 'caffe'
  assert oracle['restored'].model.norm == 'lrn'
  assert oracle['restored'].model.aux


@pytest.mark.parametrize('size', list(SIZES))
def test_logits_match_opencv(oracle, at_224, size):
  if size == '224x224':
    images, reference = at_224['ours'], at_224['reference']
  else:
    height, width, count = SIZES[size]
    pixels = smooth_images(np.random.default_rng(2), count, height, width)
    reference = opencv_logits(oracle['deploy'], oracle['files'][False],
                              pixels, oracle['directory'])
    images = normalization.normalize(pixels, oracle['normalization'])
  ours = oracle['logits'](oracle['restored'].variables, images)
  error = rel_l2(ours, reference)
  print(f'{size}: relative L2 {error:.2e} over {reference.shape} logits')
  assert error <= TOL


def test_the_v1_file_is_the_same_network(oracle, at_224):
  v1 = opencv_logits(oracle['deploy'], oracle['files'][True],
                     at_224['images'], oracle['directory'])
  np.testing.assert_allclose(v1, at_224['reference'], rtol=0, atol=1e-4)
  variables, _ = caffe.from_caffe(caffe.read(oracle['files'][True]))
  jax.tree.map(np.testing.assert_array_equal, variables,
               oracle['restored'].variables)


@pytest.mark.parametrize('head', ['loss1', 'loss2'])
def test_aux_heads_match_opencv(oracle, head):
  """train_val.prototxt's head on a 4a/4d-shaped input, in both engines."""
  bottom = oracle['heads'][head]
  shape = (2,) + oracle['shapes'][bottom]
  text = input_block(bottom, shape) + ''.join(
      aux_blocks(oracle['train_val'], head))
  features = np.random.default_rng(3).uniform(0, 50, shape).astype(np.float32)
  path = oracle['directory'] / f'{head}.prototxt'
  path.write_text(text)
  net = cv2.dnn.readNetFromCaffe(str(path), oracle['files'][False])
  net.setInput(features)
  reference = net.forward(f'{head}/classifier')
  name = {'loss1': 'aux1', 'loss2': 'aux2'}[head]
  ours = googlenet.AuxHead(num_classes=1000).apply(
      {'params': oracle['restored'].variables['params'][name]},
      features.transpose(0, 2, 3, 1), train=False)
  error = rel_l2(ours, reference)
  print(f'{head}: relative L2 {error:.2e}')
  assert error <= TOL


# --- What the comparison catches. ---------------------------------------------

def _floor_mode_max_pool(x, window, stride, *, grad='stencil'):
  del grad
  return nn.max_pool(x, (window, window), (stride, stride), 'VALID')


def _same_padded_conv1(conv):
  def wrapped(lhs, rhs, window_strides, padding, *args, **kwargs):
    if not isinstance(padding, str) and [tuple(p) for p in padding] == [
        (3, 3), (3, 3)]:
      padding = ((2, 3), (2, 3))  # "SAME" for a 7x7/2 convolution at 224
    return conv(lhs, rhs, window_strides, padding, *args, **kwargs)
  return wrapped


def _edit(variables, path, fn):
  variables = jax.tree.map(np.asarray, variables)
  node = variables['params']
  for name in path[:-1]:
    node = node[name]
  node[path[-1]] = fn(node[path[-1]])
  return variables


def _swap_first_two_concat_inputs(deploy):
  start = deploy.index('name: "inception_3a/output"')
  end = deploy.index('}', start)
  block = deploy[start:end]
  first, second = ('bottom: "inception_3a/1x1"', 'bottom: "inception_3a/3x3"')
  swapped = block.replace(first, '@').replace(second, first).replace(
      '@', second)
  return deploy[:start] + swapped + deploy[end:]


@pytest.mark.parametrize('wrong', [
    'bgr_conv1', 'transposed_kernel', 'lrn_alpha_not_divided',
    'floor_mode_pools', 'same_padding_conv1', 'concat_order'])
def test_a_wrong_convention_is_caught(oracle, at_224, monkeypatch, wrong):
  variables = oracle['restored'].variables
  model = oracle['restored'].model
  reference = at_224['reference']
  if wrong == 'bgr_conv1':  # Caffe's BGR kernel fed RGB pixels
    variables = _edit(variables, ('conv1', 'conv', 'kernel'),
                      lambda k: k[:, :, ::-1])
  elif wrong == 'transposed_kernel':
    variables = _edit(variables, ('inception_3a', 'b5x5', 'conv', 'kernel'),
                      lambda k: k.transpose(1, 0, 2, 3))
  elif wrong == 'lrn_alpha_not_divided':
    monkeypatch.setattr(layers, 'local_response_norm', functools.partial(
        layers.local_response_norm, alpha=5 * 1e-4))
  elif wrong == 'floor_mode_pools':
    monkeypatch.setattr(layers, 'max_pool_ceil', _floor_mode_max_pool)
  elif wrong == 'same_padding_conv1':
    monkeypatch.setattr(layers, 'conv_general_dilated',
                        _same_padded_conv1(layers.conv_general_dilated))
  elif wrong == 'concat_order':  # ours against a Caffe whose 3a concat differs
    reference = opencv_logits(_swap_first_two_concat_inputs(oracle['deploy']),
                              oracle['files'][False], at_224['images'],
                              oracle['directory'])
  # A fresh trace, so a patched layer is used.
  ours = jax.jit(lambda v, x: model.apply(v, x, train=False)[0])(
      variables, at_224['ours'])
  error = rel_l2(ours, reference)
  print(f'{wrong}: relative L2 {error:.2e}')
  assert error > WRONG
