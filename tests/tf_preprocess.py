"""The TensorFlow implementation of the pixel work that `preprocess`
replaced: eager ``tf.image`` calls, one example at a time. The tests hold
the fast path to it, step by step and for whole transforms."""

import numpy as np
import tensorflow as tf

from inception_jax.data import crops
from inception_jax.data import device_colour
from inception_jax.data import normalization
from inception_jax.data import preprocess

PIXEL_MAX = 255.0


def decode(encoded):
  return tf.io.decode_image(encoded, channels=3, expand_animations=False)


def decode_crop(encoded, box):
  top, left, h, w = box
  if preprocess.is_jpeg(encoded):
    return tf.image.decode_and_crop_jpeg(encoded, [top, left, h, w],
                                         channels=3)
  return decode(encoded)[top:top + h, left:left + w]


def encoded_shape(encoded):
  if preprocess.is_jpeg(encoded):
    shape = tf.io.extract_jpeg_shape(encoded).numpy()
  else:
    shape = tf.shape(decode(encoded)).numpy()
  return int(shape[0]), int(shape[1])


def resize(image, shape, method='bilinear', antialias=True):
  """``tf.image.resize`` as float32 (TF ignores ``antialias`` for area and
  nearest)."""
  image = tf.convert_to_tensor(image)
  if tuple(image.shape[-3:-1]) == tuple(shape):
    return tf.cast(image, tf.float32)
  return tf.cast(tf.image.resize(image, shape, method=method,
                                 antialias=antialias), tf.float32)


def crop(image, box):
  top, left, h, w = box
  return image[top:top + h, left:left + w]


COLOUR_STEPS = {
    'brightness': lambda x, d: tf.image.adjust_brightness(x, d * PIXEL_MAX),
    'contrast': tf.image.adjust_contrast,
    'saturation': tf.image.adjust_saturation,
    'hue': tf.image.adjust_hue,
}


def distort_color(image, draws):
  image = tf.clip_by_value(image, 0.0, PIXEL_MAX)
  for name, amount in draws.steps:
    image = tf.clip_by_value(COLOUR_STEPS[name](image, amount), 0.0,
                             PIXEL_MAX)
  if draws.lighting is not None:
    image = image + PIXEL_MAX * (device_colour.PCA_EIGVEC
                                 @ (draws.lighting * device_colour.PCA_EIGVAL))
  return tf.clip_by_value(image, 0.0, PIXEL_MAX)


def pad_and_crop(image, pad_crop):
  if pad_crop is None:
    return image
  h, w = int(image.shape[0]), int(image.shape[1])
  p = pad_crop.pad
  padded = tf.pad(image, [[p, p], [p, p], [0, 0]])
  return crop(padded, (pad_crop.top, pad_crop.left, h, w))


def mirrored(views):
  stacked = tf.stack(list(views))
  return tf.concat([stacked, stacked[:, :, ::-1]], axis=0)


def ten_crops(image, size, fraction):
  image = tf.convert_to_tensor(image)
  shape, boxes = crops.ten_crop_boxes(int(image.shape[0]),
                                      int(image.shape[1]), size, fraction)
  resized = resize(image, shape)
  return mirrored([resize(crop(resized, b), (size, size)) for b in boxes])


def paper_144_crops(image, size):
  image = tf.convert_to_tensor(image)
  views, resized, current = [], None, None
  for c in crops.multi_crop_144_boxes(int(image.shape[0]),
                                      int(image.shape[1]), size):
    if c.scale != current:
      resized, current = resize(image, c.resized), c.scale
    views.append(resize(crop(resized, c.box), (size, size)))
  return mirrored(views)


def train_example(encoded, draws, size, normalization_mode, antialias=True):
  """`transforms.TrainPreprocess.random_map`'s pixels for encoded records,
  as they were computed: ``draws`` from `sampling.draw_train`."""
  image = decode_crop(encoded, draws.box)
  image = resize(image, (size, size), draws.interpolation, antialias)
  image = pad_and_crop(image, draws.pad_after_resize)
  if draws.flip:
    image = image[:, ::-1]
  if draws.colour is not None:
    image = distort_color(image, draws.colour)
  return normalization.normalize(np.asarray(image), normalization_mode)


def eval_example(encoded, size, crops_per_image, fraction, normalization_mode):
  """`transforms.EvalPreprocess.map`'s pixels for encoded records."""
  if crops_per_image == 1:
    box = crops.center_crop_box(*encoded_shape(encoded), fraction)
    image = resize(decode_crop(encoded, box), (size, size))
  elif crops_per_image == 10:
    image = ten_crops(decode(encoded), size, fraction)
  else:
    image = paper_144_crops(decode(encoded), size)
  return normalization.normalize(np.asarray(image), normalization_mode)
