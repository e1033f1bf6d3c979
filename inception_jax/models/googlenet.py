"""GoogLeNet (Inception v1), Szegedy et al. 2014, Table 1 and Figure 3.

One Flax linen module covers the paper's network, its ablations and the
torchvision-compatible variant:

* ``module='reduced'`` is Figure 2(b), ``module='naive'`` Figure 2(a).
* ``aux`` builds the two auxiliary classifiers on 4a and 4d (no parameters at
  all when off).
* ``norm='lrn'`` is the paper's stem (two Caffe LRNs), ``'batchnorm'`` puts
  BatchNorm after every convolution instead (the common modern variant),
  ``'none'`` uses neither.
* ``variant='torchvision'`` reproduces ``torchvision.models.googlenet`` layer
  for layer so its weights load (see `inception_jax.convert`).
* ``max_pool_grad`` and ``conv_grad`` choose how the max pools and the
  convolutions are differentiated (`inception_jax.models.layers`): the
  defaults are the fast exact reformulations, ``'xla'`` is XLA's own
  gradient. Same values and parameters either way; the benchmark's reference
  switches set them.

Linen rather than nnx: the training state is a pytree of plain arrays that
jit, sharding annotations, Orbax and Polyak averaging handle with no glue, and
the flax imagenet example and big_vision, which users know, are linen.

``apply(variables, images, train=...)`` returns ``(logits, aux_logits)``;
``aux_logits`` has one entry per auxiliary head in training mode and is empty
otherwise. Images are NHWC floats.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Optional, Tuple

import jax
import jax.numpy as jnp
from flax import linen as nn

from inception_jax.models import layers

MODULES = ('reduced', 'naive')
NORMS = ('lrn', 'batchnorm', 'none')
VARIANTS = ('paper', 'torchvision')


@dataclasses.dataclass(frozen=True)
class InceptionSpec:
  """One row of Table 1: the channel counts of an Inception module."""
  name: str
  c1x1: int
  c3x3_reduce: int
  c3x3: int
  c5x5_reduce: int
  c5x5: int
  pool_proj: int


# Table 1, in order. A max pool 3x3/2 comes before '4a' and before '5a'.
TABLE1 = (
    InceptionSpec('inception_3a', 64, 96, 128, 16, 32, 32),
    InceptionSpec('inception_3b', 128, 128, 192, 32, 96, 64),
    InceptionSpec('inception_4a', 192, 96, 208, 16, 48, 64),
    InceptionSpec('inception_4b', 160, 112, 224, 24, 64, 64),
    InceptionSpec('inception_4c', 128, 128, 256, 24, 64, 64),
    InceptionSpec('inception_4d', 112, 144, 288, 32, 64, 64),
    InceptionSpec('inception_4e', 256, 160, 320, 32, 128, 128),
    InceptionSpec('inception_5a', 256, 160, 320, 32, 128, 128),
    InceptionSpec('inception_5b', 384, 192, 384, 48, 128, 128),
)
POOL_BEFORE = ('inception_4a', 'inception_5a')
AUX_AFTER = {'inception_4a': 'aux1', 'inception_4d': 'aux2'}

# Caffe's bvlc_googlenet initialisation: "xavier" (uniform, variance 1/fan_in)
# for every weight, 0.2 for the biases of the convolutions and of the
# auxiliary heads' FC-1024, 0 for the classifiers'.
caffe_xavier = nn.initializers.variance_scaling(1.0, 'fan_in', 'uniform')
CONV_BIAS_INIT = nn.initializers.constant(0.2)
# torchvision's GoogLeNet.init_weights: every convolution and linear weight
# from trunc_normal_(std=0.01, a=-2, b=2), whose bounds are absolute (200
# standard deviations), i.e. a plain normal; BatchNorm 1 and 0; its
# convolutions have no bias, and its linear biases are zeroed here.
TORCHVISION_KERNEL_INIT = nn.initializers.normal(0.01)


def kernel_init(init: str):
  return TORCHVISION_KERNEL_INIT if init == 'torchvision' else caffe_xavier


def hidden_bias_init(init: str):
  return (nn.initializers.zeros if init == 'torchvision' else CONV_BIAS_INIT)

# torchvision `transform_input`: ImageNet mean/std normalised input back to the
# [-1, 1] range its TF-derived weights were trained on.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def scaled(channels: int, width: float) -> int:
  """Channel count under a width multiplier (at least one channel)."""
  return max(1, int(round(channels * width)))


class ConvBlock(nn.Module):
  """Convolution, optional BatchNorm, ReLU (the paper has a ReLU everywhere)."""
  features: int
  kernel: int
  stride: int = 1
  padding: Any = 'SAME'
  batchnorm: bool = False
  bn_epsilon: float = 1e-3
  dtype: Any = jnp.float32
  conv_grad: str = 'im2col'
  init: str = 'caffe'  # or 'torchvision' (see kernel_init)

  @nn.compact
  def __call__(self, x, train: bool):
    x = nn.Conv(self.features, (self.kernel, self.kernel),
                strides=(self.stride, self.stride), padding=self.padding,
                use_bias=not self.batchnorm, kernel_init=kernel_init(self.init),
                bias_init=hidden_bias_init(self.init), dtype=self.dtype,
                conv_general_dilated=functools.partial(
                    layers.conv_general_dilated, grad=self.conv_grad),
                name='conv')(x)
    if self.batchnorm:
      # Flax's momentum 0.9 is PyTorch's momentum 0.1.
      x = nn.BatchNorm(use_running_average=not train, momentum=0.9,
                       epsilon=self.bn_epsilon, dtype=self.dtype,
                       name='bn')(x)
    return nn.relu(x)


class Inception(nn.Module):
  """Figure 2: (b) with 1x1 reductions, or (a) the naive module.

  Concatenation order is Caffe's: 1x1, 3x3, 5x5, pool.
  """
  spec: InceptionSpec
  naive: bool = False
  width: float = 1.0
  kernel5: int = 5  # torchvision's "5x5" branch is 3x3
  batchnorm: bool = False
  dtype: Any = jnp.float32
  max_pool_grad: str = 'stencil'
  conv_grad: str = 'im2col'
  init: str = 'caffe'

  @nn.compact
  def __call__(self, x, train: bool):
    s, w = self.spec, self.width
    conv = functools.partial(ConvBlock, batchnorm=self.batchnorm,
                             dtype=self.dtype, conv_grad=self.conv_grad,
                             init=self.init)
    b1 = conv(scaled(s.c1x1, w), 1, name='b1x1')(x, train)
    pooled = layers.max_pool_same(x, 3, grad=self.max_pool_grad)
    if self.naive:
      b3 = conv(scaled(s.c3x3, w), 3, name='b3x3')(x, train)
      b5 = conv(scaled(s.c5x5, w), self.kernel5, name='b5x5')(x, train)
      bp = pooled
    else:
      b3 = conv(scaled(s.c3x3_reduce, w), 1, name='b3x3_reduce')(x, train)
      b3 = conv(scaled(s.c3x3, w), 3, name='b3x3')(b3, train)
      b5 = conv(scaled(s.c5x5_reduce, w), 1, name='b5x5_reduce')(x, train)
      b5 = conv(scaled(s.c5x5, w), self.kernel5, name='b5x5')(b5, train)
      bp = conv(scaled(s.pool_proj, w), 1, name='pool_proj')(pooled, train)
    return jnp.concatenate([b1, b3, b5, bp.astype(b1.dtype)], axis=-1)


class AuxHead(nn.Module):
  """Auxiliary classifier (Section 5 of the paper; torchvision's InceptionAux).

  Paper: average pool 5x5/3 valid (4x4 at 224x224), 1x1 conv 128 + ReLU,
  FC 1024 + ReLU, dropout 70%, linear. On feature maps smaller than 5x5 (inputs
  below 80x80: 4a and 4d are 1/16 of the input) the pooling window shrinks to
  the map, so the head still works on small images; at 224x224 it is the
  paper's head exactly. Biases as Caffe's: 0.2 for the 1x1 convolution and
  the FC-1024, 0 for the classifier.
  torchvision: adaptive average pool to 4x4 instead.
  """
  num_classes: int
  adaptive_pool: bool = False
  width: float = 1.0
  dropout: float = 0.7
  batchnorm: bool = False
  dtype: Any = jnp.float32
  conv_grad: str = 'im2col'
  init: str = 'caffe'

  @nn.compact
  def __call__(self, x, train: bool):
    if self.adaptive_pool:
      x = layers.adaptive_avg_pool(x, 4)
    else:
      window = tuple(min(5, d) for d in x.shape[1:3])
      x = nn.avg_pool(x, window, strides=(3, 3), padding='VALID')
    x = ConvBlock(scaled(128, self.width), 1, batchnorm=self.batchnorm,
                  dtype=self.dtype, conv_grad=self.conv_grad, init=self.init,
                  name='conv')(x, train)
    x = x.reshape((x.shape[0], -1))
    x = nn.Dense(scaled(1024, self.width), kernel_init=kernel_init(self.init),
                 bias_init=hidden_bias_init(self.init), dtype=self.dtype,
                 name='fc1')(x)
    x = nn.relu(x)
    x = nn.Dropout(self.dropout, deterministic=not train)(x)
    return nn.Dense(self.num_classes, kernel_init=kernel_init(self.init),
                    dtype=self.dtype, name='fc2')(x)


class GoogLeNet(nn.Module):
  """GoogLeNet. See the module docstring for the switches.

  Attributes:
    num_classes: size of the classifier.
    module: 'reduced' (Figure 2b) or 'naive' (Figure 2a).
    aux: build the auxiliary heads on 4a and 4d.
    norm: 'lrn' (paper), 'batchnorm' or 'none'; None means the variant's
      own: 'lrn' for the paper's, 'batchnorm' for torchvision's.
    variant: 'paper' or 'torchvision'.
    width: multiplier on every channel count (1.0 is the paper).
    dropout: before the final classifier; None means 0.4 (paper) or 0.2
      (torchvision).
    aux_dropout: inside the auxiliary heads.
    transform_input: torchvision's input remapping; None means on for the
      torchvision variant (its ImageNet weights need it), off otherwise.
    dtype: compute dtype. Parameters are always float32.
    max_pool_grad: 'stencil' (the custom VJP of `layers.max_pool`) or 'xla'
      (the plain ``reduce_window`` pool and XLA's select-and-scatter
      gradient).
    conv_grad: 'im2col' (`layers.conv_im2col_grad`'s CPU gradients for large
      maps) or 'xla' (XLA's own gradient for every convolution).
  """
  num_classes: int = 1000
  module: str = 'reduced'
  aux: bool = True
  norm: Optional[str] = None
  variant: str = 'paper'
  width: float = 1.0
  dropout: Optional[float] = None
  aux_dropout: float = 0.7
  transform_input: Optional[bool] = None
  dtype: Any = jnp.float32
  max_pool_grad: str = 'stencil'
  conv_grad: str = 'im2col'

  def __post_init__(self):
    validate_model_args(module=self.module, norm=self.norm,
                        variant=self.variant, width=self.width,
                        num_classes=self.num_classes,
                        max_pool_grad=self.max_pool_grad,
                        conv_grad=self.conv_grad)
    super().__post_init__()

  @property
  def normalization(self) -> str:
    """The norm actually built: `norm`, or the variant's own."""
    if self.norm is not None:
      return self.norm
    return 'batchnorm' if self.is_torchvision else 'lrn'

  @property
  def is_torchvision(self) -> bool:
    return self.variant == 'torchvision'

  @property
  def dropout_rate(self) -> float:
    if self.dropout is not None:
      return self.dropout
    return 0.2 if self.is_torchvision else 0.4

  @nn.compact
  def __call__(self, images: jax.Array, train: bool = False
               ) -> Tuple[jax.Array, Tuple[jax.Array, ...]]:
    if images.ndim != 4 or images.shape[-1] != 3:
      raise ValueError(
          f'GoogLeNet expects NHWC images with 3 channels, got shape '
          f'{images.shape}; replicate grey images to 3 channels first.')
    if min(images.shape[1:3]) < MIN_IMAGE_SIZE:
      raise ValueError(
          f'GoogLeNet needs images of at least {MIN_IMAGE_SIZE}x'
          f'{MIN_IMAGE_SIZE}, got {images.shape[1]}x{images.shape[2]}; '
          f'resize them (data.image_size).')
    tv = self.is_torchvision
    bn = self.normalization == 'batchnorm'
    lrn = self.normalization == 'lrn'
    w = self.width
    init = 'torchvision' if tv else 'caffe'
    conv = functools.partial(ConvBlock, batchnorm=bn, dtype=self.dtype,
                             conv_grad=self.conv_grad, init=init)
    pool = functools.partial(layers.max_pool_ceil, grad=self.max_pool_grad)
    transform = self.transform_input if self.transform_input is not None else tv

    x = images.astype(self.dtype)
    if transform:
      scale = jnp.array([s / 0.5 for s in IMAGENET_STD], self.dtype)
      shift = jnp.array([(m - 0.5) / 0.5 for m in IMAGENET_MEAN], self.dtype)
      x = x * scale + shift

    # Stem (Figure 3, bottom).
    x = conv(scaled(64, w), 7, stride=2, padding=((3, 3), (3, 3)),
             name='conv1')(x, train)
    x = pool(x, 3, 2)
    self.sow('intermediates', 'pool1', x)
    if lrn:
      x = layers.local_response_norm(x)
    x = conv(scaled(64, w), 1, padding='VALID', name='conv2_reduce')(x, train)
    x = conv(scaled(192, w), 3, name='conv2')(x, train)
    if lrn:
      x = layers.local_response_norm(x)
    x = pool(x, 3, 2)
    self.sow('intermediates', 'pool2', x)

    aux_logits = []
    for spec in TABLE1:
      if spec.name in POOL_BEFORE:
        if spec.name == 'inception_5a' and tv:
          x = pool(x, 2, 2)
        else:
          x = pool(x, 3, 2)
        self.sow('intermediates', 'pool_' + spec.name[-2:], x)
      x = Inception(spec, naive=self.module == 'naive', width=w,
                    kernel5=3 if tv else 5, batchnorm=bn, dtype=self.dtype,
                    max_pool_grad=self.max_pool_grad,
                    conv_grad=self.conv_grad, init=init,
                    name=spec.name)(x, train)
      if self.aux and spec.name in AUX_AFTER:
        head = AuxHead(self.num_classes, adaptive_pool=tv, width=w,
                       dropout=self.aux_dropout, batchnorm=bn,
                       dtype=self.dtype, conv_grad=self.conv_grad,
                       init=init, name=AUX_AFTER[spec.name])
        # Built in both modes so `init` creates its parameters; the output
        # is only returned in training mode, as the paper discards the heads
        # at inference.
        if train or self.is_initializing():
          out = head(x, train)
          if train:
            aux_logits.append(out.astype(jnp.float32))

    x = jnp.mean(x, axis=(1, 2))
    self.sow('intermediates', 'avgpool', x)
    x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
    logits = nn.Dense(self.num_classes, kernel_init=kernel_init(init),
                      dtype=self.dtype, name='classifier')(x)
    return logits.astype(jnp.float32), tuple(aux_logits)


# The smallest input for which every ceil-mode pool still has a window.
MIN_IMAGE_SIZE = 32


def validate_model_args(*, module: str, norm: Optional[str], variant: str,
                        width: float = 1.0, num_classes: int = 1000,
                        max_pool_grad: str = 'stencil',
                        conv_grad: str = 'im2col') -> None:
  """One-line errors for bad ablation switches, before anything compiles."""
  if module not in MODULES:
    raise ValueError(f'model.module={module!r} is not one of {MODULES}.')
  if norm is not None and norm not in NORMS:
    raise ValueError(f'model.norm={norm!r} is not one of {NORMS}.')
  if variant not in VARIANTS:
    raise ValueError(f'model.variant={variant!r} is not one of {VARIANTS}.')
  if variant == 'torchvision' and (module != 'reduced' or
                                   norm not in (None, 'batchnorm')):
    raise ValueError(
        'model.variant=torchvision is torchvision\'s network, which has '
        f'module=reduced and norm=batchnorm; got module={module}, norm={norm}.')
  if not width > 0:
    raise ValueError(f'model.width must be positive, got {width}.')
  if not (isinstance(num_classes, int) and num_classes > 0):
    raise ValueError(f'model.num_classes must be a positive int, got '
                     f'{num_classes!r}.')
  if max_pool_grad not in layers.MAX_POOL_GRADS:
    raise ValueError(f'model.max_pool_grad={max_pool_grad!r} is not one of '
                     f'{layers.MAX_POOL_GRADS}.')
  if conv_grad not in layers.CONV_GRADS:
    raise ValueError(f'model.conv_grad={conv_grad!r} is not one of '
                     f'{layers.CONV_GRADS}.')


# The constructor's keyword arguments: what `config.model` holds and what a
# checkpoint's metadata records under 'model'.
MODEL_ARGS = ('num_classes', 'module', 'aux', 'norm', 'variant', 'width',
              'dropout', 'aux_dropout', 'transform_input', 'dtype',
              'max_pool_grad', 'conv_grad')
DTYPES = ('float32', 'bfloat16', 'float16')


def resolve_dtype(name: Any) -> str:
  """'auto': bfloat16 compute on accelerators, float32 on CPU."""
  if name == 'auto':
    return 'float32' if jax.default_backend() == 'cpu' else 'bfloat16'
  name = jnp.dtype(name).name if not isinstance(name, str) else name
  if name not in DTYPES:
    raise ValueError(f"model.dtype={name!r} is not one of "
                     f"{('auto',) + DTYPES}.")
  return name


def create_model(**kwargs: Any) -> GoogLeNet:
  """Builds the model from its keyword arguments (`MODEL_ARGS`).

  This is the one path from configuration to module: `config.model` (with
  `num_classes` and a dtype name) and a checkpoint's recorded arguments both
  come through here. The dtype may be a name, including 'auto'.

  Raises:
    ValueError: an unknown argument or value, in one line.
  """
  unknown = sorted(set(kwargs) - set(MODEL_ARGS))
  if unknown:
    raise ValueError(f'model.{unknown[0]} is not an argument of GoogLeNet; '
                     f'it takes {", ".join(MODEL_ARGS)}.')
  if 'dtype' in kwargs:
    kwargs['dtype'] = jnp.dtype(resolve_dtype(kwargs['dtype']))
  return GoogLeNet(**kwargs)


def model_from_config(model_cfg: Any, num_classes: int) -> GoogLeNet:
  """`config.model` -> the model; its num_classes 0 means `num_classes`."""
  kwargs = dict(model_cfg)
  configured = kwargs.get('num_classes') or 0
  if configured and configured != num_classes:
    raise ValueError(
        f'model.num_classes={configured} but the data set has {num_classes} '
        'classes; set it to 0 to follow the data set.')
  kwargs['num_classes'] = num_classes
  return create_model(**kwargs)


def model_kwargs(model: GoogLeNet) -> dict:
  """Every constructor argument of `model`, JSON-ready (dtype by name).

  What checkpoints record, so that a later change of a default does not
  change what an old checkpoint means.
  """
  kwargs = {name: getattr(model, name) for name in MODEL_ARGS}
  kwargs['dtype'] = jnp.dtype(kwargs['dtype']).name
  return kwargs


def init_variables(model: GoogLeNet, rng: jax.Array, image_size: int,
                   batch_size: int = 1):
  """Initialises parameters (and batch_stats) for square images."""
  images = jnp.zeros((batch_size, image_size, image_size, 3), jnp.float32)
  return model.init({'params': rng, 'dropout': rng}, images, train=False)


def count_params(tree) -> int:
  return sum(int(x.size) for x in jax.tree_util.tree_leaves(tree))
