"""Compiled loops for the training resize (numba), where NumPy is slow.

A separable resample is, per output row, a weighted sum of a few whole input
rows. NumPy spells that as a gather and a batched product of tiny matrices;
these loops do it in one vectorised pass, about a third of the time for a
224x224 RGB crop (`experiments/results/benchmarks.md`: the JPEG input's
cost per image fell by about 0.3 ms). `preprocess._resize_unfiltered` is
the only caller and imports this module on first use, so a process that never
resizes bicubic (Fashion-MNIST's bilinear grey crops) never loads numba.

Compiled code is cached beside this file (or in numba's user cache when the
package folder is read-only): the first process on a machine compiles it
(a first resize took 1.45 s on a 2-core CPU), later ones, grain's workers
included, import numba and load it (0.54 s; experiments/results/benchmarks.md).
"""
import numba
import numpy as np


# Each output row reads four whole input rows; the inner loop over the row
# is contiguous, so LLVM vectorises it (indexing src[index[y, t], k] inside
# it instead ran five to ten times slower).


@numba.njit(inline='always')
def _taps(src, index, weight, y):
  """Output row y's four input rows and their weights."""
  return (src[index[y, 0]], src[index[y, 1]], src[index[y, 2]],
          src[index[y, 3]], weight[y, 0], weight[y, 1], weight[y, 2],
          weight[y, 3])


@numba.njit(cache=True, nogil=True)
def four_tap_rows(src, index, weight):
  """float32 [out, N]: row y is sum_t weight[y, t] * src[index[y, t]]."""
  out = np.empty((index.shape[0], src.shape[1]), np.float32)
  for y in range(index.shape[0]):
    a0, a1, a2, a3, w0, w1, w2, w3 = _taps(src, index, weight, y)
    row = out[y]
    for k in range(src.shape[1]):
      row[k] = (w0 * np.float32(a0[k]) + w1 * np.float32(a1[k])
                + w2 * np.float32(a2[k]) + w3 * np.float32(a3[k]))
  return out


@numba.njit(cache=True, nogil=True)
def four_tap_rows_uint8(src, index, weight):
  """`four_tap_rows` rounded half to even and saturated to uint8 (as
  OpenCV's cast, and every 8-bit resampler, rounds once at the end)."""
  out = np.empty((index.shape[0], src.shape[1]), np.uint8)
  low, high = np.float32(0), np.float32(255)
  for y in range(index.shape[0]):
    a0, a1, a2, a3, w0, w1, w2, w3 = _taps(src, index, weight, y)
    row = out[y]
    for k in range(src.shape[1]):
      value = np.rint(w0 * np.float32(a0[k]) + w1 * np.float32(a1[k])
                      + w2 * np.float32(a2[k]) + w3 * np.float32(a3[k]))
      row[k] = np.uint8(min(max(value, low), high))
  return out
