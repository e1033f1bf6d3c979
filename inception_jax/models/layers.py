"""Layers GoogLeNet needs that Flax does not ship with the right semantics.

* `local_response_norm`: Caffe's across-channel LRN (the paper's stem).
* `max_pool_ceil`: Caffe/PyTorch ``ceil_mode=True`` max pooling. For the
  even feature-map sizes of a 224x224 input it equals ``padding='SAME'``; for
  odd sizes it does not, and ceil mode is what both reference implementations
  use.
* `adaptive_avg_pool`: PyTorch's ``adaptive_avg_pool2d`` (torchvision's aux
  heads), exact for any input and output size.
* `conv_general_dilated`: what every ``nn.Conv`` of the model calls; the same
  convolution, written so that XLA's CPU backend differentiates it faster.

`max_pool` and `conv_im2col_grad` have hand-written VJPs; both are exact
reformulations (the tests compare them with ``jax.vjp`` of the plain forms).
Which gradient a layer uses is an explicit argument (``grad=``), set from the
model's ``max_pool_grad`` and ``conv_grad`` attributes; ``'xla'`` selects the
plain formulation and XLA's own gradient, for before/after measurements.
Measured effects are in ``experiments/results/benchmarks.md``.
"""

from __future__ import annotations

import functools
import math
from typing import Tuple

import jax
import jax.numpy as jnp
from flax import linen as nn

# The gradient implementations a layer can be asked for; the first is the
# default.
CONV_GRADS = ('im2col', 'xla')
MAX_POOL_GRADS = ('stencil', 'xla')


def _check_choice(name: str, value: str, choices: Tuple[str, ...]) -> None:
  if value not in choices:
    raise ValueError(f'{name}={value!r} is not one of {choices}.')


# Output pixels per image from which `conv_general_dilated` hands a k x k
# convolution's gradient to `conv_im2col_grad` (56x56 = 3,136 qualifies,
# 28x28 = 784 does not): on the large maps the im2col gradients beat XLA's
# several times over on the CPU, at 28x28 and below the two are within noise
# of each other, so those layers keep XLA's (measured per layer in
# experiments/results/benchmarks.md).
_IM2COL_MIN_PIXELS = 2048


def conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation=None,
                         rhs_dilation=None, dimension_numbers=None,
                         feature_group_count=1, precision=None,
                         preferred_element_type=None, *, grad: str = 'im2col',
                         im2col_min_pixels: int = _IM2COL_MIN_PIXELS):
  """``lax.conv_general_dilated`` with formulations XLA's CPU runs faster.

  Same arithmetic, two rewrites for NHWC/HWIO convolutions:

  * a 1x1, stride-1, unpadded convolution is a matmul over channels; written
    as one (``dot_general``) XLA on the CPU differentiates it faster than the
    convolution (its weight gradient is one matmul instead of a convolution
    whose window is the whole output map).
  * with ``grad='im2col'``, a larger kernel on a large output map
    (``im2col_min_pixels`` output pixels per image or more: at the default
    threshold, the 7x7 stem and the 3x3 conv at 224x224) keeps
    XLA's forward but gets `conv_im2col_grad`'s gradients on the CPU.
    ``grad='xla'`` leaves every convolution's gradient to XLA.

  Everything else goes to ``lax.conv_general_dilated``. Used as
  ``nn.Conv(conv_general_dilated=functools.partial(conv_general_dilated,
  grad=...))``.
  """
  _check_choice('conv_grad', grad, CONV_GRADS)
  specs = dimension_numbers
  nhwc = (specs is not None and lhs.ndim == 4
          and tuple(specs[0]) == (0, 3, 1, 2)
          and tuple(specs[1]) == (3, 2, 0, 1)
          and tuple(specs[2]) == (0, 3, 1, 2))
  trivial_padding = (isinstance(padding, str) or
                     all(tuple(p) == (0, 0) for p in padding))
  ones = lambda v: v is None or all(int(d) == 1 for d in v)  # pylint: disable=g-long-lambda
  plain = (nhwc and ones(lhs_dilation) and ones(rhs_dilation)
           and feature_group_count == 1)
  if (plain and rhs.shape[:2] == (1, 1) and trivial_padding
      and ones(window_strides)):
    return jax.lax.dot_general(
        lhs, rhs[0, 0], (((3,), (0,)), ((), ())), precision=precision,
        preferred_element_type=preferred_element_type)
  if plain and grad == 'im2col':
    strides = tuple(int(s) for s in window_strides)
    if isinstance(padding, str):
      pads = jax.lax.padtype_to_pads(lhs.shape[1:3], rhs.shape[:2], strides,
                                     padding)
    else:
      pads = padding
    pads = tuple((int(lo), int(hi)) for lo, hi in pads)
    ho, wo = _conv_output_size(lhs.shape, rhs.shape, strides, pads)
    if ho * wo >= im2col_min_pixels:
      return conv_im2col_grad(lhs, rhs, strides, pads, precision,
                              preferred_element_type)
  return jax.lax.conv_general_dilated(
      lhs, rhs, window_strides, padding, lhs_dilation=lhs_dilation,
      rhs_dilation=rhs_dilation, dimension_numbers=dimension_numbers,
      feature_group_count=feature_group_count, precision=precision,
      preferred_element_type=preferred_element_type)


_NHWC = ('NHWC', 'HWIO', 'NHWC')


def _conv_output_size(lhs_shape, rhs_shape, strides, pads):
  return tuple(
      (lhs_shape[1 + i] + pads[i][0] + pads[i][1] - rhs_shape[i])
      // strides[i] + 1 for i in range(2))


def _xla_conv(lhs, rhs, strides, pads, precision=None,
              preferred_element_type=None):
  return jax.lax.conv_general_dilated(
      lhs, rhs, strides, pads, dimension_numbers=_NHWC, precision=precision,
      preferred_element_type=preferred_element_type)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4, 5))
def conv_im2col_grad(lhs, rhs, strides, pads, precision=None,
                     preferred_element_type=None):
  """An NHWC/HWIO convolution whose CPU gradients are im2col matmuls.

  The forward pass is ``lax.conv_general_dilated``. On the CPU the backward
  pass goes one image at a time (a ``lax.scan`` over the batch):

  * weight gradient: the image's patch matrix (output pixels x k*k*C_in, the
    k*k shifted strided slices of the padded input side by side) transposed
    times the output gradient (output pixels x C_out), summed over images in
    float32. XLA lowers this gradient as a convolution whose window is the
    whole output map, which Eigen runs at a fraction of matmul speed.
  * input gradient: the output gradient times the kernel matrix gives each
    output pixel's k*k*C_in patch gradient; the k*k taps are put back on the
    padded input grid (interior padding for the stride) and summed.

  One image's patch matrix (7 MB for the 3x3 layer at 56x56) stays in cache
  where the whole batch's (230 MB) would not. Other backends get XLA's own
  gradients (``lax.platform_dependent``): their convolution libraries do not
  need this. With the batch sharded over several CPU devices the result is
  still exact, but GSPMD gathers the batch for the scan, so every device
  computes these two layers' gradients for the whole batch: the speed-up is
  for single-device CPU runs.
  """
  return _xla_conv(lhs, rhs, strides, pads, precision, preferred_element_type)


def _conv_im2col_fwd(lhs, rhs, strides, pads, precision,
                     preferred_element_type):
  out = _xla_conv(lhs, rhs, strides, pads, precision, preferred_element_type)
  return out, (lhs, rhs)


def _patch_matrix(xp, kh, kw, strides, ho, wo):
  """(ho, wo, kh*kw*C) patches of one padded image ``xp`` (hp, wp, C)."""
  c = xp.shape[-1]
  sh, sw = strides
  return jnp.concatenate([
      jax.lax.slice(xp, (i, j, 0), (i + (ho - 1) * sh + 1,
                                    j + (wo - 1) * sw + 1, c), (sh, sw, 1))
      for i in range(kh) for j in range(kw)], axis=-1)


def _im2col_weight_grad(lhs, g, kernel_shape, strides, pads, precision):
  kh, kw, cin, cout = kernel_shape
  ho, wo = g.shape[1:3]
  zero = jnp.zeros((), lhs.dtype)
  xp = jax.lax.pad(lhs, zero, ((0, 0, 0), (*pads[0], 0), (*pads[1], 0),
                               (0, 0, 0)))

  def add_image(acc, image):
    x_i, g_i = image
    patches = _patch_matrix(x_i, kh, kw, strides, ho, wo)
    return acc + jax.lax.dot_general(
        patches, g_i, (((0, 1), (0, 1)), ((), ())), precision=precision,
        preferred_element_type=jnp.float32), None

  acc, _ = jax.lax.scan(add_image, jnp.zeros((kh * kw * cin, cout),
                                             jnp.float32), (xp, g))
  return acc.reshape(kernel_shape)


def _im2col_input_grad(rhs, g, lhs_shape, strides, pads, precision):
  kh, kw, cin, cout = rhs.shape
  _, h, w, _ = lhs_shape
  ho, wo = g.shape[1:3]
  (top, bottom), (left, right) = pads
  hp, wp = h + top + bottom, w + left + right
  sh, sw = strides
  kernel = rhs.reshape(kh * kw, cin, cout)

  def one_image(g_i):
    taps = jax.lax.dot_general(  # (ho, wo, kh*kw, cin)
        g_i, kernel, (((2,), (2,)), ((), ())), precision=precision,
        preferred_element_type=jnp.float32)
    zero = jnp.zeros((), taps.dtype)
    dxp = None
    for t in range(kh * kw):
      i, j = divmod(t, kw)
      placed = jax.lax.pad(taps[:, :, t, :], zero, (
          (i, hp - i - (ho - 1) * sh - 1, sh - 1),
          (j, wp - j - (wo - 1) * sw - 1, sw - 1), (0, 0, 0)))
      dxp = placed if dxp is None else dxp + placed
    # Undo the padding (negative padding crops).
    return jax.lax.pad(dxp, zero, ((-top, -bottom, 0), (-left, -right, 0),
                                   (0, 0, 0)))

  return jax.lax.map(one_image, g)


def _conv_im2col_bwd(strides, pads, precision, preferred_element_type,
                     residuals, g):
  del preferred_element_type
  lhs, rhs = residuals

  xla_vjp = lambda lhs, rhs, g: jax.vjp(  # pylint: disable=g-long-lambda
      lambda x, w: _xla_conv(x, w, strides, pads, precision), lhs, rhs)[1](
          g.astype(jnp.result_type(lhs, rhs)))
  # Two separate switches, so that an unused input gradient (the image's)
  # is dropped whole.
  dx = jax.lax.platform_dependent(
      lhs, rhs, g,
      cpu=lambda lhs, rhs, g: _im2col_input_grad(  # pylint: disable=g-long-lambda
          rhs, g, lhs.shape, strides, pads, precision).astype(lhs.dtype),
      default=lambda lhs, rhs, g: xla_vjp(lhs, rhs, g)[0].astype(lhs.dtype))
  dw = jax.lax.platform_dependent(
      lhs, rhs, g,
      cpu=lambda lhs, rhs, g: _im2col_weight_grad(  # pylint: disable=g-long-lambda
          lhs, g, rhs.shape, strides, pads, precision).astype(rhs.dtype),
      default=lambda lhs, rhs, g: xla_vjp(lhs, rhs, g)[1].astype(rhs.dtype))
  return dx, dw


conv_im2col_grad.defvjp(_conv_im2col_fwd, _conv_im2col_bwd)


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


def max_pool_ceil(x: jax.Array, window: int, stride: int, *,
                  grad: str = 'stencil') -> jax.Array:
  """Max pool, NHWC, with Caffe/PyTorch ``ceil_mode=True`` and no padding.

  The windows that hang over the bottom/right border see only real pixels
  (the overhang is padded with -inf), exactly like ceil mode. ``grad``: see
  `max_pool_with_grad`.
  """
  pads = []
  for size in x.shape[1:3]:
    out = ceil_mode_output_size(size, window, stride)
    pads.append((0, max(0, (out - 1) * stride + window - size)))
  return max_pool_with_grad(grad)(x, window, stride, tuple(pads))


def max_pool_same(x: jax.Array, window: int = 3, *,
                  grad: str = 'stencil') -> jax.Array:
  """Stride-1 max pool that keeps the spatial size (the Inception pool branch)."""
  half = window // 2
  return max_pool_with_grad(grad)(x, window, 1,
                                  ((half, window - 1 - half),) * 2)


def max_pool_with_grad(grad: str):
  """The max pool with the asked-for gradient: 'stencil' is `max_pool` (the
  custom VJP below), 'xla' is `max_pool_reference` (``reduce_window``, whose
  gradient is XLA's ``select_and_scatter``). Same values either way."""
  _check_choice('max_pool_grad', grad, MAX_POOL_GRADS)
  return max_pool if grad == 'stencil' else max_pool_reference


# --- Max pooling with a cheap exact gradient -----------------------------------
#
# XLA differentiates ``reduce_window(max)`` into ``select_and_scatter``, which
# on CPU runs as a slow scalar loop (a large share of a whole GoogLeNet train
# step). `max_pool` computes the same forward and the same gradient as
# ``jax.grad`` of the plain formulation (`max_pool_reference`)
# with ordinary element-wise operations that XLA fuses (equal up to the order
# of the additions where overlapping windows send gradient to one pixel):
#
# * forward: the max of the window x window strided slices of the -inf padded
#   input (the values of ``reduce_window`` exactly: max is exact);
# * under differentiation the forward also records, per output, which window
#   offset (row-major, 0..window^2-1) holds the max: the first offset whose
#   input equals the pooled max (an int8 map the size of the output);
# * backward: a stencil on the padded input grid. The output gradient and the
#   offset map are placed where each window starts (interior padding for the
#   stride); a padded-input pixel then gathers, for each of the window^2
#   offsets d, the gradient of the window that starts d before it if that
#   window's recorded offset is d. One fused read of the gradient's
#   neighbourhood, one write of the input gradient: nothing of input size is
#   materialised per offset (a scatter of window^2 shifted copies would be,
#   once XLA fuses their sum into the consumers of the pool's input).
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


def _window_slices(x, window, stride, pads):
  """The window^2 slices x_pad[:, di::stride, dj::stride, :] (row-major in
  (di, dj)) of the -inf padded input, cut to the output size."""
  _, _, ho, wo = _pool_geometry(x.shape, window, stride, pads)
  xp = _pad_neg_inf(x, pads)
  n, _, _, c = xp.shape
  return [jax.lax.slice(
      xp, (0, di, dj, 0),
      (n, di + (ho - 1) * stride + 1, dj + (wo - 1) * stride + 1, c),
      (1, stride, stride, 1))
          for di in range(window) for dj in range(window)]


def _max_pool_impl(x, window, stride, pads):
  return functools.reduce(jnp.maximum, _window_slices(x, window, stride, pads))


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2, 3))
def max_pool(x: jax.Array, window: int, stride: int,
             pads: Tuple[Tuple[int, int], Tuple[int, int]]) -> jax.Array:
  """Square max pool on NHWC with explicit spatial ``pads`` (-inf padding).

  Same values and same gradient (first maximum of a window takes it all) as
  `max_pool_reference`; see the comment above for ties and NaNs.
  """
  return _max_pool_impl(x, window, stride, pads)


def _max_pool_fwd(x, window, stride, pads):
  slices = _window_slices(x, window, stride, pads)
  y = functools.reduce(jnp.maximum, slices)
  offset_dtype = jnp.int8 if window * window < 127 else jnp.int32
  # First offset (row-major) whose input equals the max; window^2 (no
  # offset) where none does, i.e. a NaN max.
  offset = jnp.full(y.shape, window * window, offset_dtype)
  for t in reversed(range(len(slices))):
    offset = jnp.where(slices[t] == y, jnp.array(t, offset_dtype), offset)
  # x only for its shape (not a valid residual on its own); XLA drops it.
  return y, (offset, x)


def _max_pool_bwd(window, stride, pads, residuals, g):
  offset, x = residuals
  n, _, _, c = x.shape
  (top, bottom), (left, right) = pads
  hp, wp, ho, wo = _pool_geometry(x.shape, window, stride, pads)

  def on_grid(a, fill):
    # a[i, j] -> (window - 1 + stride * i, window - 1 + stride * j) of a
    # (hp + window - 1, wp + window - 1) grid: padded-input pixel q sees the
    # window starting d before it at q + window - 1 - d.
    return jax.lax.pad(a, jnp.array(fill, a.dtype), (
        (0, 0, 0),
        (window - 1, hp - (ho - 1) * stride - 1, stride - 1),
        (window - 1, wp - (wo - 1) * stride - 1, stride - 1),
        (0, 0, 0)))

  g_grid = on_grid(g, 0)
  offset_grid = on_grid(offset, -1)
  zero = jnp.zeros((), g.dtype)
  dxp = None
  for di in range(window):
    for dj in range(window):
      start = (0, window - 1 - di, window - 1 - dj, 0)
      limit = (n, start[1] + hp, start[2] + wp, c)
      mine = jax.lax.slice(offset_grid, start, limit) == di * window + dj
      share = jnp.where(mine, jax.lax.slice(g_grid, start, limit), zero)
      dxp = share if dxp is None else dxp + share
  # Drop the padding (negative padding crops).
  return (jax.lax.pad(dxp, zero, ((0, 0, 0), (-top, -bottom, 0),
                                  (-left, -right, 0), (0, 0, 0))),)


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
