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

import functools
import math
from typing import Tuple

import jax
import jax.numpy as jnp
from flax import linen as nn


def conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation=None,
                         rhs_dilation=None, dimension_numbers=None,
                         feature_group_count=1, precision=None,
                         preferred_element_type=None):
  """``lax.conv_general_dilated``, with 1x1 convolutions done as matmuls.

  A 1x1, stride-1, unpadded NHWC convolution is a matmul over channels;
  written as one (``dot_general``) it is the same arithmetic, but XLA on the
  CPU differentiates it faster: a 1x1 layer of Inception (3a) takes 38 ms
  backward as a convolution and 13 ms as a matmul (batch 32), and the whole
  224x224 train step is 1.09x faster. Everything else goes to
  ``lax.conv_general_dilated``. Used as ``nn.Conv(conv_general_dilated=...)``.
  """
  specs = dimension_numbers
  nhwc = (specs is not None and lhs.ndim == 4
          and tuple(specs[0]) == (0, 3, 1, 2)
          and tuple(specs[1]) == (3, 2, 0, 1)
          and tuple(specs[2]) == (0, 3, 1, 2))
  trivial_padding = (isinstance(padding, str) or
                     all(tuple(p) == (0, 0) for p in padding))
  ones = lambda v: v is None or all(int(d) == 1 for d in v)  # pylint: disable=g-long-lambda
  if (nhwc and rhs.shape[:2] == (1, 1) and trivial_padding
      and ones(window_strides) and ones(lhs_dilation) and ones(rhs_dilation)
      and feature_group_count == 1):
    return jax.lax.dot_general(
        lhs, rhs[0, 0], (((3,), (0,)), ((), ())), precision=precision,
        preferred_element_type=preferred_element_type)
  return jax.lax.conv_general_dilated(
      lhs, rhs, window_strides, padding, lhs_dilation=lhs_dilation,
      rhs_dilation=rhs_dilation, dimension_numbers=dimension_numbers,
      feature_group_count=feature_group_count, precision=precision,
      preferred_element_type=preferred_element_type)


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
  return max_pool(x, window, stride, tuple(pads))


def max_pool_same(x: jax.Array, window: int = 3) -> jax.Array:
  """Stride-1 max pool that keeps the spatial size (the Inception pool branch)."""
  half = window // 2
  return max_pool(x, window, 1, ((half, window - 1 - half),) * 2)


# --- Max pooling with a cheap exact gradient -----------------------------------
#
# XLA differentiates ``reduce_window(max)`` into ``select_and_scatter``, which
# on CPU runs as a slow scalar loop (about a fifth of a whole GoogLeNet train
# step). `max_pool` computes the same forward and the same gradient as
# ``jax.grad`` of the plain formulation (`max_pool_reference`)
# with ordinary element-wise operations that XLA fuses (equal up to the order
# of the additions where overlapping windows send gradient to one pixel):
#
# * forward: the max of the window x window strided slices of the -inf padded
#   input (the values of ``reduce_window`` exactly: max is exact);
# * backward: for each window offset in row-major order, the positions where
#   the input equals the pooled max and no earlier offset of the same window
#   was already chosen receive the output gradient; the rest receive 0.
#
# Ties: like XLA's select_and_scatter (select = ``>=``), the whole gradient of
# a window goes to its FIRST maximum in row-major (row, then column) order;
# ties are common after a ReLU (windows of zeros). A pixel in several
# overlapping windows sums what each window gives it, as in XLA. Padding
# positions are -inf and never receive gradient (their share, if a window is
# all -inf, is dropped, as jax's gradient drops it). NaN inputs: a NaN never
# equals the pooled max, so a window with a NaN max passes no gradient
# (XLA's behaviour with NaNs is not specified; do not rely on either).


def _pool_geometry(shape, window, stride, pads):
  hp = shape[1] + pads[0][0] + pads[0][1]
  wp = shape[2] + pads[1][0] + pads[1][1]
  ho = (hp - window) // stride + 1
  wo = (wp - window) // stride + 1
  return hp, wp, ho, wo


def _pad_neg_inf(x, pads):
  low = jnp.array(-jnp.inf, x.dtype)
  return jax.lax.pad(x, low, ((0, 0, 0), (pads[0][0], pads[0][1], 0),
                             (pads[1][0], pads[1][1], 0), (0, 0, 0)))


def _window_slices(xp, window, stride, ho, wo):
  """(di, dj, x[:, di::stride, dj::stride, :] cut to the output size)."""
  n, _, _, c = xp.shape
  for di in range(window):
    for dj in range(window):
      yield di, dj, jax.lax.slice(
          xp, (0, di, dj, 0),
          (n, di + (ho - 1) * stride + 1, dj + (wo - 1) * stride + 1, c),
          (1, stride, stride, 1))


def _max_pool_impl(x, window, stride, pads):
  _, _, ho, wo = _pool_geometry(x.shape, window, stride, pads)
  y = None
  for _, _, xs in _window_slices(_pad_neg_inf(x, pads), window, stride, ho, wo):
    y = xs if y is None else jnp.maximum(y, xs)
  return y


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2, 3))
def max_pool(x: jax.Array, window: int, stride: int,
             pads: Tuple[Tuple[int, int], Tuple[int, int]]) -> jax.Array:
  """Square max pool on NHWC with explicit spatial ``pads`` (-inf padding).

  Same values and same gradient (first maximum of a window takes it all) as
  `max_pool_reference`; see the comment above for ties and NaNs.
  """
  return _max_pool_impl(x, window, stride, pads)


def _max_pool_fwd(x, window, stride, pads):
  y = _max_pool_impl(x, window, stride, pads)
  return y, (x, y)


def _max_pool_bwd(window, stride, pads, residuals, g):
  x, y = residuals
  hp, wp, ho, wo = _pool_geometry(x.shape, window, stride, pads)
  zero = jnp.zeros((), g.dtype)
  taken = None
  dxp = None
  for di, dj, xs in _window_slices(_pad_neg_inf(x, pads), window, stride,
                                   ho, wo):
    hit = xs == y
    if taken is None:
      first, taken = hit, hit
    else:
      first = hit & ~taken
      taken = taken | hit
    share = jnp.where(first, g, zero)
    # Back to the padded input grid: row di + stride * i, column dj + stride * j.
    placed = jax.lax.pad(share, zero, (
        (0, 0, 0),
        (di, hp - di - (ho - 1) * stride - 1, stride - 1),
        (dj, wp - dj - (wo - 1) * stride - 1, stride - 1),
        (0, 0, 0)))
    dxp = placed if dxp is None else dxp + placed
  (top, _), (left, _) = pads
  dx = jax.lax.slice(dxp, (0, top, left, 0),
                     (x.shape[0], top + x.shape[1], left + x.shape[2],
                      x.shape[3]))
  return (dx,)


max_pool.defvjp(_max_pool_fwd, _max_pool_bwd)


def max_pool_reference(x: jax.Array, window: int, stride: int,
                       pads: Tuple[Tuple[int, int], Tuple[int, int]]
                       ) -> jax.Array:
  """The plain formulation (Flax/XLA ``reduce_window``) `max_pool` equals."""
  return nn.max_pool(x, (window, window), strides=(stride, stride),
                     padding=pads)


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
