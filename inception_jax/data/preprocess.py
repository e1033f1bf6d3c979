"""Pixel work for one example on the host: decode, crop, pad, resize, flip.

Nothing here is random: the training transform draws every choice first
(`sampling.draw_train`) and passes the outcome in. Pixels stay uint8 from
the decoder to the batch (a resize that computes in float is rounded back);
the photometric distortions and the normalisation run on the device, in the
jitted step (`device_colour`, `normalization.on_device`).

Every step is one call into a compiled library or a few whole-array NumPy
operations, because per-example work runs once per image on the host's
CPUs, which an accelerator can outrun:

- JPEG: TensorFlow's fused decode-and-crop (libjpeg-turbo; only the rows and
  columns of the kept box go through the inverse DCT), one eager call, or
  one graph call for a whole training batch (`decode_crops`). Its
  pixels are the ones TFDS and `tf.image.decode_jpeg` give. With the
  antialiased filters, a crop at least four times the output on each side
  is decoded at 1/2, 1/4 or 1/8 scale in the DCT domain first
  (`dct_ratio`).
- Resizing with the four interpolations the paper draws from, each the same
  filter as ``tf.image.resize`` with its ``antialias`` flag (which changes
  bilinear and bicubic only): uint8 grey and RGB stay 8-bit (within a grey
  level of TF's float output, bicubic clipped to [0, 255] as every 8-bit
  resampler does), other arrays are resampled in float32.
  Training crops (``data.antialias``, default False) take TF's default,
  ``antialias=False``, as TF-slim's inception_preprocessing and flax's
  examples/imagenet resize: half-pixel bilinear through OpenCV, and
  ``resize_bicubic``'s Keys cubic (a = -0.5, taps outside the image
  dropped) in two separable passes with TF's weights, no low-pass when
  shrinking. Evaluation and `predict` always antialias (PIL's resampler,
  equal to TF's ``antialias=True``): they resize once per image, and
  torchvision's evaluation, which converted checkpoints expect, resizes
  through PIL's antialiased filters. Area averaging is exact (OpenCV when
  shrinking) and nearest takes TF's half-pixel centres, with either flag.

TensorFlow is imported only to decode, so `predict` can share the resize
without it. The tests hold the TensorFlow implementation this replaces and
check every step and the whole transform against it.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Optional, Sequence, Tuple

import cv2
import numpy as np
from PIL import Image

from inception_jax.data import crops
from inception_jax.data import sampling

# One thread per call: the pipeline already runs one example per core (grain
# workers), and OpenCV's own pool would only add CPU time per image.
cv2.setNumThreads(1)

# The top of the pixel scale between decoding and normalisation.
PIXEL_MAX = 255.0

_JPEG_MAGIC = b'\xff\xd8\xff'

_PIL_FILTERS = {'bilinear': Image.BILINEAR, 'bicubic': Image.BICUBIC,
                'nearest': Image.NEAREST}


@functools.lru_cache(maxsize=None)
def _tf():
  """TensorFlow, imported on the first decode and kept off the GPU."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  # TensorFlow only decodes on the host; with a GPU build installed it would
  # otherwise reserve accelerator memory that JAX needs.
  try:
    tf.config.set_visible_devices([], 'GPU')
  except RuntimeError:  # Devices already initialised by someone else.
    pass
  # One image at a time per process (grain workers give the parallelism):
  # TF's pools would only hand the batch decode's ops between threads.
  try:
    tf.config.threading.set_inter_op_parallelism_threads(1)
    tf.config.threading.set_intra_op_parallelism_threads(1)
  except RuntimeError:  # The runtime already started: its pools stay.
    pass
  return tf


def is_jpeg(encoded: bytes) -> bool:
  return encoded[:3] == _JPEG_MAGIC


# Start-of-frame markers (baseline, extended, progressive, lossless,
# arithmetic): the frame header after them holds the image's size.
_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
# Markers that stand alone, without a length.
_BARE_MARKERS = frozenset(range(0xD0, 0xDA)) | {0x01}


def jpeg_shape(encoded: bytes) -> Optional[tuple[int, int]]:
  """Height and width from a JPEG's frame header, or None if not found.

  A walk over the marker segments before the image data: no decoding, and
  a few microseconds where TensorFlow's eager ``extract_jpeg_shape`` costs
  an op dispatch.
  """
  pos, end = 2, len(encoded)
  while pos + 4 <= end:
    if encoded[pos] != 0xFF:
      return None
    marker = encoded[pos + 1]
    if marker == 0xFF:  # Fill byte.
      pos += 1
      continue
    if marker in _BARE_MARKERS:
      pos += 2
      continue
    if marker in _SOF_MARKERS:
      if pos + 9 > end:
        return None
      height = int.from_bytes(encoded[pos + 5:pos + 7], 'big')
      width = int.from_bytes(encoded[pos + 7:pos + 9], 'big')
      return (height, width) if height and width else None
    if marker == 0xDA:  # Start of scan: no frame header before it.
      return None
    pos += 2 + int.from_bytes(encoded[pos + 2:pos + 4], 'big')
  return None


def encoded_shape(encoded: bytes) -> tuple[int, int]:
  """Height and width of an encoded image, read from the header if JPEG."""
  shape = jpeg_shape(encoded) if is_jpeg(encoded) else None
  if shape is None:  # Let TensorFlow's decoder judge (and report) the file.
    shape = decode(encoded).shape[:2]
  return int(shape[0]), int(shape[1])


def decode(encoded: bytes) -> np.ndarray:
  """Decodes a JPEG/PNG/... into uint8 [H, W, 3]."""
  return _tf().io.decode_image(encoded, channels=3,
                               expand_animations=False).numpy()


def decode_crop(encoded: bytes, box: crops.Box) -> np.ndarray:
  """Decodes only ``box`` of a JPEG; other formats decode, then slice."""
  top, left, h, w = box
  if is_jpeg(encoded):
    # An int32 array converts to a tensor faster than a list.
    return _tf().io.decode_and_crop_jpeg(
        encoded, np.array(box, np.int32), channels=3).numpy()
  return decode(encoded)[top:top + h, left:left + w]


@functools.lru_cache(maxsize=None)
def _batch_decoder():
  """One graph call that decodes a box of each JPEG of a batch: no eager
  dispatch and tensor conversion per image. The same op as `decode_crop`,
  so the same pixels.

  The graph is unrolled, one op per image, traced once per number of boxes
  (a run without `data.antialias` has one, the local batch size; with it, the
  crops large enough for a DCT-scaled decode leave the batch call, so a few
  counts): against a while_loop that writes a TensorArray,
  it spares the loop's control ops and the copy that joins the images into
  one tensor (about 0.03 ms per image of the benchmark's 224 px crops)."""
  tf = _tf()

  @tf.function(reduce_retracing=False)
  def decode_all(contents, boxes):
    return [tf.io.decode_and_crop_jpeg(contents[i], boxes[i], channels=3)
            for i in range(contents.shape[0])]

  return decode_all


def decode_crops(encoded: Sequence[bytes],
                 boxes: Sequence[crops.Box]) -> list[np.ndarray]:
  """``[decode_crop(e, b) for e, b in zip(encoded, boxes)]`` for JPEGs, in
  one TensorFlow call."""
  if not encoded:
    return []
  images = _batch_decoder()(np.array(encoded, dtype=object),
                            np.array(boxes, np.int32).reshape(-1, 4))
  return [image.numpy() for image in images]


# The JPEG decoder's DCT-domain downscales (libjpeg-turbo through TF).
_DCT_RATIOS = (2, 4, 8)
# Interpolations that low-pass when shrinking, so a decoder's downscale in
# front of them changes little; area and nearest keep the full decode.
_DCT_METHODS = ('bilinear', 'bicubic')


def dct_ratio(box: crops.Box, shape: Sequence[int], method: str, *,
              antialias: bool = True) -> int:
  """How much a JPEG crop may shrink while it is decoded (1: not at all).

  The largest of 2, 4, 8 that leaves the crop at least twice ``shape`` on
  each side, for the antialiased interpolations only: the resize after it
  still averages over two or more decoded pixels, so the result stays
  within a few grey levels of a full decode (the tests hold the bound) at a
  fraction of the cost for large photos. Without antialiasing the resize
  reads 2 or 4 pixels per axis at any scale, and the decoder's downscale
  would be a low-pass the filter does not have: 1.
  """
  _, _, h, w = box
  ratio = 1
  if antialias and method in _DCT_METHODS:
    for r in _DCT_RATIOS:
      if h >= 2 * r * shape[0] and w >= 2 * r * shape[1]:
        ratio = r
  return ratio


def decode_crop_resized(encoded: bytes, box: crops.Box, shape: Sequence[int],
                        method: str = 'bilinear', *,
                        antialias: bool = True) -> np.ndarray:
  """``resample(decode_crop(encoded, box), shape, method, antialias=...)``,
  a large JPEG crop decoded at 1/2, 1/4 or 1/8 scale first when
  antialiasing (`dct_ratio`).

  The decoder only downscales whole pixels of the scaled image, so the
  decoded part is rounded outwards and the resize takes the crop's exact
  edges within it (PIL's sub-pixel ``box``): the crop does not move.
  """
  full = jpeg_shape(encoded) if is_jpeg(encoded) else None
  ratio = (dct_ratio(box, shape, method, antialias=antialias)
           if full is not None else 1)
  if ratio == 1:
    return resample(decode_crop(encoded, box), shape, method,
                    antialias=antialias)
  top, left, h, w = box
  # libjpeg's scaled output rounds up.
  scaled_h, scaled_w = -(-full[0] // ratio), -(-full[1] // ratio)
  t0, l0 = top // ratio, left // ratio
  t1 = min(scaled_h, -(-(top + h) // ratio))
  l1 = min(scaled_w, -(-(left + w) // ratio))
  part = _tf().io.decode_and_crop_jpeg(
      encoded, np.array([t0, l0, t1 - t0, l1 - l0], np.int32), channels=3,
      ratio=ratio).numpy()
  edges = (left / ratio - l0, top / ratio - t0, (left + w) / ratio - l0,
           (top + h) / ratio - t0)
  return np.asarray(Image.fromarray(part, 'RGB').resize(
      (int(shape[1]), int(shape[0])), _PIL_FILTERS[method], box=edges))


@dataclasses.dataclass(frozen=True)
class EncodedImages:
  """Records that hold encoded image bytes (JPEG, sometimes PNG).

  TFDS leaves them encoded; the shape comes from the header alone and a
  JPEG decodes only the box that is kept. A box must lie inside the image,
  so a pad-and-crop happens after resizing, at the model's size.
  """
  encoded = True
  pad_after_resize = True

  def shape(self, record: bytes) -> Tuple[int, int]:
    return encoded_shape(record)

  def decode(self, record: bytes,
             box: Optional[crops.Box] = None) -> np.ndarray:
    """uint8 [H, W, 3] of ``box`` (the whole image when None)."""
    return decode(record) if box is None else decode_crop(record, box)

  def decode_resized(self, record: bytes, box: crops.Box,
                     shape: Sequence[int], method: str, *,
                     antialias: bool = True) -> np.ndarray:
    """``box`` resized to ``shape`` (`resample`'s types and filters)."""
    return decode_crop_resized(record, box, shape, method,
                               antialias=antialias)


@dataclasses.dataclass(frozen=True)
class DecodedArrays:
  """Records that TFDS decodes to uint8 arrays (Fashion-MNIST's 28x28x1).

  They are small, so a pad-and-crop happens on the stored pixels.
  """
  encoded = False
  pad_after_resize = False

  def shape(self, record) -> Tuple[int, int]:
    shape = np.shape(record)
    return int(shape[0]), int(shape[1])

  def decode(self, record, box: Optional[crops.Box] = None) -> np.ndarray:
    """uint8 [H, W, C] of ``box`` (the whole image when None)."""
    image = np.asarray(record)
    return image if box is None else crop(image, box)

  def decode_resized(self, record, box: crops.Box, shape: Sequence[int],
                     method: str, *, antialias: bool = True) -> np.ndarray:
    """``box`` resized to ``shape`` (`resample`'s types and filters)."""
    return resample(self.decode(record, box), shape, method,
                    antialias=antialias)


# PIL's 8-bit modes by channel count: grey and RGB.
_PIL_MODES = {1: 'L', 3: 'RGB'}


def _is_8bit(image: np.ndarray) -> bool:
  return (image.dtype == np.uint8 and image.ndim == 3
          and image.shape[2] in _PIL_MODES)


def resize(image, shape: Sequence[int], method: str = 'bilinear', *,
           antialias: bool = True) -> np.ndarray:
  """Resizes [H, W, C] to ``shape`` as float32 on [0, 255].

  The filter is ``tf.image.resize``'s for ``method`` and ``antialias``
  (which changes only bilinear and bicubic, and only when shrinking; the
  default, True, is what evaluation and `predict` use). Grey and RGB uint8
  images go through 8-bit resamplers, within a grey level of TensorFlow's
  float result (the tests hold the bounds), and a grey image gives exactly
  the channels of the same image decoded to RGB, so the decoded cache and
  the encoded records agree; any other array is resampled in float32, equal
  to TF's to 1e-3.
  """
  return resample(np.asarray(image), shape, method,
                  antialias=antialias).astype(np.float32, copy=False)


def resample(image: np.ndarray, shape: Sequence[int],
             method: str = 'bilinear', *, antialias: bool = True
             ) -> np.ndarray:
  """`resize` that keeps grey and RGB uint8 as uint8, the rest float32.

  Flipping and cropping 8-bit pixels, and converting once at the end,
  costs a fraction of the same on floats.
  """
  height, width = int(shape[0]), int(shape[1])
  if image.shape[:2] == (height, width):
    return image
  if method == 'area':
    return _resize_area(image.astype(np.float32), height, width)
  if method not in _PIL_FILTERS:
    raise ValueError(f'Unknown interpolation {method!r}; expected one of '
                     f'{", ".join(sampling.INTERPOLATIONS)}.')
  if method == 'nearest':
    # PIL's nearest rounds ties its own way; this is TF's, exactly.
    out = _resize_nearest(image, height, width)
    return out if _is_8bit(image) else out.astype(np.float32, copy=False)
  if not antialias:
    return _resize_unfiltered(image, height, width, method)
  if _is_8bit(image):
    channels = image.shape[2]
    image = np.ascontiguousarray(image)
    if (method == 'bilinear' and height >= image.shape[0]
        and width >= image.shape[1]):
      # Enlarging, antialiasing changes nothing: TF's filter is plain
      # half-pixel bilinear, which OpenCV does several times faster than
      # PIL (and within a grey level of TF as well).
      out = cv2.resize(image, (width, height),
                       interpolation=cv2.INTER_LINEAR)
    else:
      out = np.asarray(Image.fromarray(
          image[..., 0] if channels == 1 else image, _PIL_MODES[channels])
                       .resize((width, height), _PIL_FILTERS[method]))
    return out.reshape(height, width, channels)
  # Float channels: no rounding to 8 bits, no clipping (as TF's output).
  image = image.astype(np.float32, copy=False)
  channels = [
      np.asarray(Image.fromarray(np.ascontiguousarray(image[..., c]), 'F')
                 .resize((width, height), _PIL_FILTERS[method]))
      for c in range(image.shape[-1])]
  return np.stack(channels, axis=-1)


def _resize_unfiltered(image: np.ndarray, height: int, width: int,
                       method: str) -> np.ndarray:
  """TF's ``antialias=False`` bilinear or bicubic: the kernel keeps its
  width when shrinking, so every output pixel reads 2 or 4 input pixels per
  axis whatever the scale.

  8-bit RGB and grey bilinear is OpenCV's INTER_LINEAR (the same half-pixel
  filter in fixed point: within a grey level of TF). Bicubic, and floats,
  are two separable passes with TF's own weights (`_tf_taps`), the axis
  that shrinks most first (the smaller intermediate), in compiled loops
  (`kernels`); uint8 is rounded and clipped once at the end, as 8-bit
  resamplers do, floats are left as TF leaves them.
  """
  eight_bit = _is_8bit(image)
  if eight_bit and method == 'bilinear':
    out = cv2.resize(np.ascontiguousarray(image), (width, height),
                     interpolation=cv2.INTER_LINEAR)
    return out.reshape(height, width, image.shape[2])
  # pylint: disable-next=g-import-not-at-top
  from inception_jax.data import kernels  # numba: only where it is used.
  if not eight_bit:
    image = image.astype(np.float32, copy=False)

  def pass_along_rows(x: np.ndarray, taps, last: bool) -> np.ndarray:
    """Each output row a weighted sum of four whole rows of ``x``."""
    kernel = (kernels.four_tap_rows_uint8 if last and eight_bit
              else kernels.four_tap_rows)
    out = kernel(np.ascontiguousarray(x).reshape(x.shape[0], -1), *taps)
    return out.reshape(taps[0].shape[:1] + x.shape[1:])

  in_h, in_w = image.shape[:2]
  rows = _tf_taps(method, in_h, height) if in_h != height else None
  cols = _tf_taps(method, in_w, width) if in_w != width else None
  # A pass along columns transposes first and back after, which costs less
  # than gathering columns.
  if cols is None:
    return pass_along_rows(image, rows, last=True)
  if rows is None:
    return _transposed(pass_along_rows(_transposed(image), cols, last=True))
  if width * in_h <= height * in_w:  # Width shrinks more: it goes first.
    return pass_along_rows(
        _transposed(pass_along_rows(_transposed(image), cols, last=False)),
        rows, last=True)
  return _transposed(pass_along_rows(
      _transposed(pass_along_rows(image, rows, last=False)), cols, last=True))


# TF's resize_bicubic samples Keys' cubic (a = -0.5) from a table of 1024
# steps per pixel (image/resize_bicubic_op.cc); the same table gives the
# same weights.
_CUBIC_TABLE_SIZE = 1024
_KEYS_A = -0.5


@functools.lru_cache(maxsize=None)
def _keys_cubic_table() -> Tuple[np.ndarray, np.ndarray]:
  """The weights of the two nearer and the two farther taps, by offset."""
  x = (np.arange(_CUBIC_TABLE_SIZE + 1) / _CUBIC_TABLE_SIZE).astype(
      np.float32).astype(np.float64)
  a = _KEYS_A
  near = ((a + 2) * x - (a + 3)) * x * x + 1
  x = x + 1.0
  far = ((a * x - 5 * a) * x + 8 * a) * x - 4 * a
  return _frozen(near.astype(np.float32), far.astype(np.float32))


@functools.lru_cache(maxsize=None)
def _tf_taps(method: str, size_in: int, size_out: int
             ) -> Tuple[np.ndarray, np.ndarray]:
  """Input indices and weights [size_out, 4] of TF's half-pixel
  ``resize_bilinear`` (2 taps) or ``resize_bicubic`` (4 taps) along one
  axis, computed in float32 as TF does (the source position's rounding
  shows at 1e-2 of a grey level on large images).

  Bicubic drops the taps that fall outside the image and renormalises the
  rest (TF's rule since half-pixel centres; OpenCV repeats the edge pixel
  instead, and its a = -0.75).
  """
  scale = np.float32(size_in) / np.float32(size_out)
  centres = ((np.arange(size_out, dtype=np.float32) + np.float32(0.5))
             * scale - np.float32(0.5))
  floor = np.floor(centres)
  fraction = centres - floor
  floor = floor.astype(np.int64)
  if method == 'bilinear':  # Two taps, and two of weight 0 for the kernel.
    index = np.stack([floor, floor + 1, floor + 1, floor + 1], axis=1)
    zero = np.zeros_like(fraction)
    weight = np.stack([1 - fraction, fraction, zero, zero], axis=1)
    return _frozen(np.clip(index, 0, size_in - 1), weight.astype(np.float32))
  offset = np.rint(fraction * np.float32(_CUBIC_TABLE_SIZE)).astype(np.int64)
  near, far = _keys_cubic_table()
  weight = np.stack([far[offset], near[offset],
                     near[_CUBIC_TABLE_SIZE - offset],
                     far[_CUBIC_TABLE_SIZE - offset]], axis=1)
  index = floor[:, None] + np.arange(-1, 3)
  weight[(index < 0) | (index >= size_in)] = 0.0
  weight *= (np.float32(1.0) / weight.sum(axis=1, dtype=np.float32))[:, None]
  return _frozen(np.clip(index, 0, size_in - 1), weight)


def _frozen(*arrays: np.ndarray) -> Tuple[np.ndarray, ...]:
  """Read-only, so that no caller can change what the cache hands out."""
  for a in arrays:
    a.setflags(write=False)
  return arrays


def _transposed(image: np.ndarray) -> np.ndarray:
  """[W, H, C] of [H, W, C], contiguous (OpenCV's is several times faster
  than NumPy's copy, up to its four channels)."""
  if image.shape[2] > 4:
    return np.ascontiguousarray(image.transpose(1, 0, 2))
  out = cv2.transpose(np.ascontiguousarray(image))
  return out.reshape(image.shape[1], image.shape[0], image.shape[2])


def _nearest_index(size_in: int, size_out: int) -> np.ndarray:
  """TF's half-pixel centres: the input pixel under each output centre,
  computed in float32 as TF does, so that ties fall the same way."""
  scale = np.float32(size_in) / np.float32(size_out)
  centres = (np.arange(size_out, dtype=np.float32) + np.float32(0.5)) * scale
  return np.minimum(np.floor(centres).astype(np.int64), size_in - 1)


def _resize_nearest(image: np.ndarray, height: int, width: int):
  rows = _nearest_index(image.shape[0], height)
  cols = _nearest_index(image.shape[1], width)
  return np.take(np.take(image, rows, axis=0), cols, axis=1)


def _resize_area(image: np.ndarray, height: int, width: int) -> np.ndarray:
  """Area averaging (TF's ``method='area'``) of float32 [H, W, C].

  The weights are separable, so each axis is done on its own. OpenCV's
  INTER_AREA is the exact average when shrinking; when growing it blends
  differently from TF, so that axis is the two-tap average below.
  """
  channels = image.shape[-1]

  def cv_area(x, h, w):
    out = cv2.resize(x, (w, h), interpolation=cv2.INTER_AREA)
    return out.reshape(h, w, channels)  # OpenCV drops a single channel.

  in_h, in_w = image.shape[:2]
  if height <= in_h and width <= in_w:
    return cv_area(image, height, width)
  if width <= in_w:
    image = cv_area(image, in_h, width)
  else:
    image = _enlarge_area(image, width, axis=1)
  if height <= in_h:
    return cv_area(image, height, image.shape[1])
  return _enlarge_area(image, height, axis=0)


def _enlarge_area(image: np.ndarray, size: int, axis: int) -> np.ndarray:
  """Area averaging along ``axis`` to a larger ``size``: each output pixel
  covers under one input pixel, so it straddles at most two."""
  size_in = image.shape[axis]
  scale = size_in / size
  start = np.arange(size) * scale
  end = start + scale
  first = np.floor(start).astype(np.int64)
  second = np.minimum(first + 1, size_in - 1)
  w_second = (np.maximum(end - (first + 1), 0.0) / scale).astype(np.float32)
  w_first = 1.0 - w_second
  shape = [1, 1, 1]
  shape[axis] = size
  a = np.take(image, first, axis=axis)
  a *= w_first.reshape(shape)
  a += np.take(image, second, axis=axis) * w_second.reshape(shape)
  return a


def flip_left_right(image: np.ndarray) -> np.ndarray:
  """The horizontal mirror of [H, W, C], contiguous (a reversed view would
  make every later step several times slower)."""
  image = np.ascontiguousarray(image)
  if image.shape[-1] > 4:  # OpenCV's limit.
    return np.ascontiguousarray(image[:, ::-1])
  return cv2.flip(image, 1).reshape(image.shape)


def crop(image, box: crops.Box):
  top, left, h, w = box
  return image[top:top + h, left:left + w]


def pad_and_crop(image, pad_crop: Optional[sampling.PadCrop]):
  """Zero-pads and crops back to the image's size, as drawn (None: as is)."""
  if pad_crop is None:
    return image
  image = np.asarray(image)
  h, w = image.shape[:2]
  p = pad_crop.pad
  padded = np.pad(image, [[p, p], [p, p], [0, 0]])
  return crop(padded, (pad_crop.top, pad_crop.left, h, w))


def to_rgb(image) -> np.ndarray:
  """Grey [H, W, 1] replicated to [H, W, 3]; RGB as it is."""
  image = np.asarray(image)
  return np.repeat(image, 3, axis=-1) if image.shape[-1] == 1 else image


def to_uint8(image) -> np.ndarray:
  """The 8-bit pixels a batch carries to the device: uint8 as it is, float
  (area resizing computes in float) rounded and clipped to [0, 255]."""
  image = np.asarray(image)
  if image.dtype == np.uint8:
    return image
  return np.clip(np.rint(image), 0, PIXEL_MAX).astype(np.uint8)


def mirrored(views: Sequence[np.ndarray]) -> np.ndarray:
  """Stacks the views (as uint8) followed by their horizontal mirrors."""
  stacked = to_uint8(np.stack(list(views)))
  return np.concatenate([stacked, stacked[:, :, ::-1]], axis=0)


def ten_crops(image, size: int, fraction: float) -> np.ndarray:
  """[10, size, size, C]: 4 corners + center, then the same mirrored.

  Evaluation's resize: antialiased bilinear, whatever ``data.antialias``
  says for training.
  """
  image = np.asarray(image)
  shape, boxes = crops.ten_crop_boxes(int(image.shape[0]),
                                      int(image.shape[1]), size, fraction)
  resized = resample(image, shape, 'bilinear')
  return mirrored([resample(crop(resized, b), (size, size), 'bilinear')
                   for b in boxes])


def paper_144_crops(image, size: int) -> np.ndarray:
  """[144, size, size, C] in the order of `crops.multi_crop_144_boxes`,
  then the same 72 mirrored, resized with antialiased bilinear as
  `ten_crops`."""
  image = np.asarray(image)
  views, resized, current = [], None, None
  for c in crops.multi_crop_144_boxes(int(image.shape[0]),
                                      int(image.shape[1]), size):
    if c.scale != current:
      resized, current = resample(image, c.resized, 'bilinear'), c.scale
    views.append(resample(np.ascontiguousarray(crop(resized, c.box)),
                           (size, size), 'bilinear'))
  return mirrored(views)
