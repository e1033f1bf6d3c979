"""Analytic multiply-add counts from a function's jaxpr.

Counting from the traced program rather than from a hand-written formula per
layer means the count follows the model as it is, whatever the switches: every
convolution and every matrix product that the forward pass executes is
counted, nothing else. Element-wise work (ReLU, LRN, pooling, BatchNorm) is
not, as in the paper's "ops" column.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import jax
from jax.extend import core as jex_core


def _sub_jaxprs(params: dict[str, Any]):
  for value in params.values():
    values = value if isinstance(value, (tuple, list)) else (value,)
    for v in values:
      if isinstance(v, jex_core.ClosedJaxpr):
        yield v.jaxpr
      elif isinstance(v, jex_core.Jaxpr):
        yield v


def _in_bounds_taps(size, kernel, out, stride, pad_lo, dilation) -> int:
  """Kernel taps, summed over output positions, that read a real pixel."""
  return sum(1 for p in range(out) for j in range(kernel)
             if 0 <= p * stride - pad_lo + j * dilation < size)


def _conv_macs(eqn, exclude_padding: bool) -> int:
  out = eqn.outvars[0].aval.shape
  lhs = eqn.invars[0].aval.shape
  kernel = eqn.invars[1].aval.shape
  lhs_spec, rhs_spec, out_spec = eqn.params['dimension_numbers']
  out_features = kernel[rhs_spec[0]]
  if not exclude_padding:
    # Each output element sums over kernel_h * kernel_w * in/groups inputs.
    return math.prod(out) * (math.prod(kernel) // out_features)
  taps = 1
  for i in range(len(lhs_spec) - 2):
    taps *= _in_bounds_taps(
        lhs[lhs_spec[2 + i]], kernel[rhs_spec[2 + i]], out[out_spec[2 + i]],
        eqn.params['window_strides'][i], eqn.params['padding'][i][0],
        eqn.params['rhs_dilation'][i])
  return out[out_spec[0]] * out_features * kernel[rhs_spec[1]] * taps


def _jaxpr_macs(jaxpr, exclude_padding: bool = False) -> int:
  total = 0
  for eqn in jaxpr.eqns:
    name = eqn.primitive.name
    if name == 'conv_general_dilated':
      total += _conv_macs(eqn, exclude_padding)
    elif name == 'dot_general':
      (lhs_contract, _), _ = eqn.params['dimension_numbers']
      lhs = eqn.invars[0].aval.shape
      total += math.prod(eqn.outvars[0].aval.shape) * math.prod(
          lhs[d] for d in lhs_contract)
    for sub in _sub_jaxprs(eqn.params):
      total += _jaxpr_macs(sub, exclude_padding)
  return total


def count_macs(fn: Callable[..., Any], *args,
               exclude_padding: bool = False) -> int:
  """Multiply-adds of convolutions and matrix products in ``fn(*args)``.

  Arguments may be arrays or ``jax.ShapeDtypeStruct``s: only shapes matter.
  By default a convolution costs kernel size x output size, the convention of
  the paper's "ops" column. With ``exclude_padding`` the kernel taps that fall
  on zero padding are left out, which is how XLA's cost analysis counts.
  """
  closed = jax.make_jaxpr(fn)(*args)
  return _jaxpr_macs(closed.jaxpr, exclude_padding)


def xla_flops(fn: Callable[..., Any], *args) -> float:
  """FLOPs that XLA's cost analysis reports for the compiled ``fn(*args)``."""
  compiled = jax.jit(fn).lower(*args).compile()
  analysis = compiled.cost_analysis()
  if isinstance(analysis, (list, tuple)):
    analysis = analysis[0]
  return float(analysis.get('flops', float('nan')))
