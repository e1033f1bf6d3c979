"""Where the evaluation crops go: pure geometry, no pixels, no randomness.

Keeping the boxes apart from the pixel work lets the tests check the
evaluation crops exactly, lets the JPEG path decode only the box it will
use, and lets `predict` take the same center crop without TensorFlow. The
random training crops are drawn in `sampling`. A box is ``(top, left,
height, width)`` in integer pixels.
"""

from __future__ import annotations

import dataclasses
from typing import List, Tuple

Box = Tuple[int, int, int, int]

# The paper's test-time scales for 224x224 inputs (shorter side).
PAPER_SCALES = (256, 288, 320, 352)
PAPER_SIZE = 224


def center_crop_box(height: int, width: int, fraction: float = 1.0) -> Box:
  """The centered square whose side is ``fraction`` of the shorter side."""
  side = max(1, int(round(min(height, width) * fraction)))
  return ((height - side) // 2, (width - side) // 2, side, side)


def resized_shape(height: int, width: int, shorter: int) -> Tuple[int, int]:
  """The shape after resizing so the shorter side is ``shorter``."""
  if height <= width:
    return shorter, max(shorter, int(round(width * shorter / height)))
  return max(shorter, int(round(height * shorter / width))), shorter


def five_crop_boxes(height: int, width: int, size: int) -> List[Box]:
  """Top-left, top-right, bottom-left, bottom-right and center squares."""
  size_h, size_w = min(size, height), min(size, width)
  bottom, right = height - size_h, width - size_w
  return [(0, 0, size_h, size_w), (0, right, size_h, size_w),
          (bottom, 0, size_h, size_w), (bottom, right, size_h, size_w),
          (bottom // 2, right // 2, size_h, size_w)]


def ten_crop_boxes(height: int, width: int, size: int,
                   fraction: float = PAPER_SIZE / PAPER_SCALES[0]
                   ) -> Tuple[Tuple[int, int], List[Box]]:
  """The 10-crop scheme's resize target and its 5 boxes (each also mirrored).

  The shorter side is resized to ``size / fraction`` (256 for 224), then the
  4 corner and the center ``size`` squares are taken.
  """
  shape = resized_shape(height, width, int(round(size / fraction)))
  return shape, five_crop_boxes(*shape, size)


@dataclasses.dataclass(frozen=True)
class ScaledCrop:
  """One of the paper's 72 unmirrored test crops.

  ``resized`` is the image shape after resizing its shorter side to the
  scale; ``square`` the box of the left/center/right (or top/center/bottom)
  square in that resized image; ``box`` the crop in the same resized image:
  one of the 5 ``size`` squares inside ``square``, or ``square`` itself,
  which is then resized to ``size``.
  """
  scale: int
  resized: Tuple[int, int]
  square: Box
  box: Box


def paper_scales(size: int) -> List[int]:
  """256, 288, 320 and 352, in proportion when the input is not 224."""
  return [int(round(s * size / PAPER_SIZE)) for s in PAPER_SCALES]


def multi_crop_144_boxes(height: int, width: int,
                         size: int = PAPER_SIZE) -> List[ScaledCrop]:
  """The paper's 144-crop scheme, without the mirroring (72 crops).

  For each of 4 scales of the shorter side, 3 squares (left, center, right
  for landscape; top, center, bottom for portrait), and from each square the
  4 corner and center ``size`` crops plus the whole square: 4 x 3 x 6 = 72.
  Each is also taken mirrored, giving 144.
  """
  crops = []
  for scale in paper_scales(size):
    rh, rw = resized_shape(height, width, scale)
    if rw >= rh:  # Landscape (or square): squares along the width.
      squares = [(0, x, rh, rh) for x in (0, (rw - rh) // 2, rw - rh)]
    else:
      squares = [(y, 0, rw, rw) for y in (0, (rh - rw) // 2, rh - rw)]
    for square in squares:
      top, left, side, _ = square
      for (t, l, h, w) in five_crop_boxes(side, side, size):
        crops.append(ScaledCrop(scale, (rh, rw), square,
                                (top + t, left + l, h, w)))
      crops.append(ScaledCrop(scale, (rh, rw), square, square))
  return crops
