"""Layers GoogLeNet needs that Flax does not ship with the right semantics.

* `local_response_norm`: Caffe's across-channel LRN (the paper's stem).
* `max_pool_ceil`: Caffe/PyTorch ``ceil_mode=True`` max pooling. For the
  even feature-map sizes of a 224x224 input it equals ``padding='SAME'``; for
  odd sizes it does not, and ceil mode is what both reference implementations
  use.
* `adaptive_avg_pool`: PyTorch's ``adaptive_avg_pool2d`` (torchvision's aux
  heads), exact for any input and output size.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import linen as nn


def local_response_norm(x: jax.Array, size: int = 5, alpha: float = 1e-4,
                        beta: float = 0.75, k: float = 1.0) -> jax.Array:
  """Caffe ``LRN`` across channels on an NHWC tensor.

  ``y = x / (k + alpha / size * sum_{window} x^2) ** beta`` where the window
  holds ``size`` channels centred on the current one (zero padded). Caffe's
  prototxt ``alpha`` is divided by ``size``, PyTorch's ``LocalResponseNorm``
  does the same, so ``alpha=1e-4`` here is the number in bvlc_googlenet.
  Computed in float32 whatever the input dtype: the power is ill-conditioned
  in bfloat16.
  """
  in_dtype = x.dtype
  x32 = x.astype(jnp.float32)
  sq = jnp.square(x32)
  half = size // 2
  padded = jnp.pad(sq, ((0, 0), (0, 0), (0, 0), (half, size - 1 - half)))
  channels = x.shape[-1]
  window_sum = sum(padded[..., i:i + channels] for i in range(size))
  scale = k + (alpha / size) * window_sum
  # scale ** -beta as exp(-beta * log(scale)): one transcendental pair
  # instead of pow, and scale >= k > 0 always.
  return (x32 * jnp.exp(-beta * jnp.log(scale))).astype(in_dtype)


def ceil_mode_output_size(size: int, window: int, stride: int) -> int:
  """Output length of a ceil-mode pooling window with no padding."""
  return max(1, math.ceil((size - window) / stride) + 1)


def max_pool_ceil(x: jax.Array, window: int, stride: int) -> jax.Array:
  """Max pool, NHWC, with Caffe/PyTorch ``ceil_mode=True`` and no padding.

  The windows that hang over the bottom/right border see only real pixels
  (the overhang is padded with -inf), exactly like ceil mode.
  """
  pads = []
  for size in x.shape[1:3]:
    out = ceil_mode_output_size(size, window, stride)
    pads.append((0, max(0, (out - 1) * stride + window - size)))
  return nn.max_pool(x, (window, window), strides=(stride, stride),
                     padding=pads)


def max_pool_same(x: jax.Array, window: int = 3) -> jax.Array:
  """Stride-1 max pool that keeps the spatial size (the Inception pool branch)."""
  half = window // 2
  return nn.max_pool(x, (window, window), strides=(1, 1),
                     padding=((half, half), (half, half)))


def adaptive_avg_pool(x: jax.Array, output_size: int) -> jax.Array:
  """PyTorch's ``adaptive_avg_pool2d`` on NHWC: bin i spans
  ``[floor(i*n/out), ceil((i+1)*n/out))`` in each spatial dimension."""
  def pool_axis(v, axis):
    n = v.shape[axis]
    if n == output_size:
      return v
    pieces = []
    for i in range(output_size):
      start = (i * n) // output_size
      end = -((-(i + 1) * n) // output_size)
      pieces.append(jnp.mean(jax.lax.slice_in_dim(v, start, end, axis=axis),
                             axis=axis, keepdims=True))
    return jnp.concatenate(pieces, axis=axis)
  return pool_axis(pool_axis(x, 1), 2)
