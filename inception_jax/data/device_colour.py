"""Howard's photometric distortions inside the jitted step, per example.

The draws stay on the host (`sampling.sample_colour`, a function of the seed
and the stream position, so a resumed run sees the same ones); `encode` turns
one example's `sampling.ColourDraws` into a fixed-size float32 vector that
travels with the uint8 batch, and `distort` applies the batch's vectors to
its pixels: the steps in each example's own order, a clip to [0, 255] after
each, then AlexNet's PCA lighting noise and a last clip (the order and the
clips are TF-slim's ``distort_color`` and AlexNet's).

Layout of one example's vector (`PARAMS_SIZE` float32 values; all zeros, as
`identity` gives and ``encode(None)`` returns, changes nothing):

  ======  ===================================================================
  [0:4]   ``ORDER``: the steps' indices into `STEPS`, in the order they apply
  [4:8]   ``AMOUNT``: their amounts, as in `ColourDraws` (brightness: a delta
          as a fraction of 255; contrast, saturation: factors; hue: a turn
          as a fraction of the circle)
  [8:12]  ``PRESENT``: 1 where a step is drawn, 0 at unused positions
  [12:15] ``ALPHA``: the lighting noise's PCA coefficients
  [15]    ``LIGHTING``: 1 when there is lighting noise, else 0
  ======  ===================================================================

The operations are `tf.image`'s, written here in a few lines of jax.numpy:
``adjust_brightness`` adds, ``adjust_contrast`` scales each channel about its
own mean, ``adjust_saturation`` scales HSV saturation (clamped to [0, 1]) and
``adjust_hue`` turns HSV hue, both keeping the value max(R, G, B). dm-pix
defines the four the same way (and matches TF on [0, 255] too), but it would
bring three new packages (dm-pix, chex, toolz) into the locks for a few
formulas, promises its HSV steps on [0, 1] only, and has no step that does
saturation and hue at once, which the sequence below relies on. Here both
HSV steps are one closed form with no branch on the data: the channels'
spread (max - min) is scaled for saturation, the hue is moved around the
hexagon, and each channel is rebuilt from the max, the new spread and the
hue.

Every example can take its steps in a different order, so the work cannot
follow one example's order. Saturation and hue commute (one scales the
saturation, the other the hue, both keep the value; the clip between them
changes nothing), so adjacent ones are one step; then every order of the two
additive steps (A: brightness, contrast) and the two HSV steps (V), and of any
subset of them, fits the fixed sequence V A V A V, each example using the
slots its order needs.
`distort` computes every slot for the whole batch: three HSV passes and two
additive ones, where taking each of four positions as either kind would cost
four of each.
"""

from __future__ import annotations

from typing import Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from inception_jax.data import sampling

STEPS = ('brightness', 'contrast', 'saturation', 'hue')
_STEP_INDEX = {name: i for i, name in enumerate(STEPS)}
ORDER = slice(0, 4)
AMOUNT = slice(4, 8)
PRESENT = slice(8, 12)
ALPHA = slice(12, 15)
LIGHTING = 15
PARAMS_SIZE = 16

_PIXEL_MAX = 255.0
# AlexNet's PCA of ImageNet RGB pixels (on [0, 1]), for the lighting noise.
PCA_EIGVAL = np.array([0.2175, 0.0188, 0.0045], np.float32)
PCA_EIGVEC = np.array([[-0.5675, 0.7192, 0.4009],
                       [-0.5808, -0.0045, -0.8140],
                       [-0.5836, -0.6948, 0.4203]], np.float32)
# Slots of the fixed sequence V A V A V (module docstring).
_SLOTS = 5


def encode(draws: Optional[sampling.ColourDraws]) -> np.ndarray:
  """One example's draws as float32 [PARAMS_SIZE] (None: the identity)."""
  params = np.zeros(PARAMS_SIZE, np.float32)
  if draws is None:
    return params
  names = [name for name, _ in draws.steps]
  if any(name not in _STEP_INDEX for name in names):
    raise ValueError(f'Unknown colour step in {names}; expected {STEPS}.')
  if len(set(names)) != len(names):
    raise ValueError(f'Colour steps {names} repeat one; each may appear '
                     'once.')
  for position, (name, amount) in enumerate(draws.steps):
    params[ORDER.start + position] = _STEP_INDEX[name]
    params[AMOUNT.start + position] = amount
    params[PRESENT.start + position] = 1.0
  if draws.lighting is not None:
    params[ALPHA] = np.asarray(draws.lighting, np.float32).reshape(3)
    params[LIGHTING] = 1.0
  return params


def encode_batch(
    draws: Sequence[Optional[sampling.ColourDraws]]) -> np.ndarray:
  """float32 [len(draws), PARAMS_SIZE], one `encode` row per example."""
  return np.stack([encode(d) for d in draws]) if draws else identity(0)


def identity(batch_size: int) -> np.ndarray:
  """float32 [batch_size, PARAMS_SIZE] that leave every example as it is."""
  return np.zeros((batch_size, PARAMS_SIZE), np.float32)


def _per_example(amount, images: jax.Array) -> jax.Array:
  """``amount`` (a scalar or one per leading index of ``images``) shaped to
  broadcast against [..., H, W, C]."""
  amount = jnp.asarray(amount, jnp.float32)
  return amount.reshape(amount.shape + (1,) * (images.ndim - amount.ndim))


def adjust_brightness(images: jax.Array, delta) -> jax.Array:
  """Adds ``delta`` of the [0, 255] range (per example, or one for all)."""
  return images + _per_example(delta, images) * _PIXEL_MAX


def adjust_contrast(images: jax.Array, factor) -> jax.Array:
  """``tf.image.adjust_contrast``: each channel about its own mean."""
  mean = jnp.mean(images, axis=(-3, -2), keepdims=True)
  return (images - mean) * _per_example(factor, images) + mean


def adjust_saturation(images: jax.Array, factor) -> jax.Array:
  """``tf.image.adjust_saturation`` (saturation scaled, clamped to 1)."""
  return _adjust_hsv(images, factor, 0.0)


def adjust_hue(images: jax.Array, delta) -> jax.Array:
  """``tf.image.adjust_hue``: hue turned by ``delta`` of the circle."""
  return _adjust_hsv(images, 1.0, delta)


def _adjust_hsv(images: jax.Array, saturation, hue) -> jax.Array:
  """Saturation scaled by ``saturation`` and hue turned by ``hue``, on
  non-negative RGB [..., H, W, 3], as TF's HSV kernels do it.

  HSV keeps value = max; saturation is spread / max for the spread
  max - min, and hue is the position on the hexagon, in [0, 6) here.
  Scaling saturation by s (clamped to 1) makes the new spread
  min(s * spread, max); each channel is then max - spread' plus spread'
  times that channel's profile at the (turned) hue, the piecewise-linear
  functions of HSV-to-RGB.
  """
  red, green, blue = images[..., 0], images[..., 1], images[..., 2]
  value = jnp.maximum(jnp.maximum(red, green), blue)
  spread = value - jnp.minimum(jnp.minimum(red, green), blue)
  inverse = 1.0 / jnp.where(spread > 0, spread, 1.0)
  hexagon = jnp.where(
      value == red, (green - blue) * inverse,
      jnp.where(value == green, (blue - red) * inverse + 2.0,
                (red - green) * inverse + 4.0))
  hue = _per_example(hue, value)
  hexagon = jnp.mod(hexagon + 6.0 * hue, 6.0)
  spread = jnp.clip(spread * _per_example(saturation, value), 0.0, value)
  floor = value - spread
  profiles = (jnp.abs(hexagon - 3.0) - 1.0, 2.0 - jnp.abs(hexagon - 2.0),
              2.0 - jnp.abs(hexagon - 4.0))
  return jnp.stack([floor + spread * jnp.clip(p, 0.0, 1.0) for p in profiles],
                   axis=-1)


def _slot_of_each_step(is_hsv: jax.Array, present: jax.Array) -> jax.Array:
  """The slot of V A V A V (0..4; -1: absent) each position's step takes.

  A greedy walk over the four positions: an additive step takes the next
  odd slot, an HSV step the next even one, or the one the HSV step before
  it took when nothing came between.
  """
  next_free = jnp.zeros(present.shape[:-1], jnp.int32)
  after_hsv = jnp.zeros(present.shape[:-1], bool)
  slots = []
  for position in range(present.shape[-1]):
    hsv, here = is_hsv[..., position], present[..., position]
    parity = next_free % 2
    slot = jnp.where(hsv, jnp.where(after_hsv, next_free - 1,
                                    next_free + parity),
                     next_free + 1 - parity)
    slot = jnp.where(here, slot, -1)
    next_free = jnp.where(here, slot + 1, next_free)
    after_hsv = jnp.where(here, hsv, after_hsv)
    slots.append(slot)
  return jnp.stack(slots, axis=-1)


def _slot_amount(params: jax.Array, in_slot: jax.Array, step: str,
                 default: float):
  """The amount of ``step`` in the slot (``in_slot`` marks the positions in
  it), or ``default`` where the slot has none, and whether it has one. At
  most one position matches, so the sum is the amount itself."""
  match = in_slot & (params[..., ORDER] == _STEP_INDEX[step])
  found = jnp.any(match, axis=-1)
  amount = jnp.sum(jnp.where(match, params[..., AMOUNT], 0.0), axis=-1)
  return jnp.where(found, amount, default), found


def _hsv_slot(x: jax.Array, params: jax.Array,
              in_slot: jax.Array) -> jax.Array:
  """A V slot: saturation and hue, or neither (then x exactly)."""
  saturation, _ = _slot_amount(params, in_slot, 'saturation', 1.0)
  hue, _ = _slot_amount(params, in_slot, 'hue', 0.0)
  used = _per_example(jnp.any(in_slot, axis=-1), x)
  return jnp.where(used, _adjust_hsv(x, saturation, hue), x)


def _additive_slot(x: jax.Array, params: jax.Array,
                   in_slot: jax.Array) -> jax.Array:
  """An A slot: brightness as x + d, contrast as (x - mean) * c + mean,
  each in TF's form; with neither, (x - 0) * 1 + 0 + 0 is x exactly."""
  factor, has_contrast = _slot_amount(params, in_slot, 'contrast', 1.0)
  delta, _ = _slot_amount(params, in_slot, 'brightness', 0.0)
  centre = jnp.mean(x, axis=(-3, -2), keepdims=True) * _per_example(
      has_contrast, x)
  return ((x - centre) * _per_example(factor, x) + centre
          + _per_example(delta * _PIXEL_MAX, x))


def distort(images: jax.Array, params: jax.Array) -> jax.Array:
  """The colour distortions each example's ``params`` (`encode`) say.

  ``images`` are [..., H, W, 3], uint8 or float on [0, 255], with
  ``params`` [..., PARAMS_SIZE] over the same leading axes (none for a single
  image). The result is float32, clipped to [0, 255]; where ``params`` are
  the identity it equals the clipped input exactly.
  """
  params = jnp.asarray(params, jnp.float32)
  x = jnp.clip(jnp.asarray(images).astype(jnp.float32), 0.0, _PIXEL_MAX)
  present = params[..., PRESENT] > 0
  order = params[..., ORDER]
  is_hsv = ((order == _STEP_INDEX['saturation'])
            | (order == _STEP_INDEX['hue']))
  slots = _slot_of_each_step(is_hsv, present)
  for slot in range(_SLOTS):
    step = _hsv_slot if slot % 2 == 0 else _additive_slot
    x = jnp.clip(step(x, params, slots == slot), 0.0, _PIXEL_MAX)
    # One pass over the batch per slot. Left to itself, XLA may fuse a
    # slot's element-wise work into the next slot's, and the HSV step reads
    # three channels of each pixel, so it can end up redoing it per channel
    # (as a variant of this loop did on CPU).
    x = jax.lax.optimization_barrier(x)
  # AlexNet's PCA noise, 255 * eigvec @ (alpha * eigval), as elementwise
  # products: a matrix product could run at reduced precision on TPUs.
  weights = params[..., ALPHA] * PCA_EIGVAL * params[..., LIGHTING:]
  shift = jnp.sum(PCA_EIGVEC * weights[..., None, :], axis=-1) * _PIXEL_MAX
  return jnp.clip(x + shift[..., None, None, :], 0.0, _PIXEL_MAX)
