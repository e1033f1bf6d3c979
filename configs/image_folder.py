"""GoogLeNet on your own images: ``FOLDER/<split>/<class>/*``.

  python -m inception_jax.main \\
      --config=configs/image_folder.py:root=FOLDER[,size=S][,epochs=E] \\
      --workdir=runs/mine

FOLDER holds ``train/`` and ``val/`` (or ``test/``), one sub-folder per
class; the class count and names are the sub-folders' (``model.num_classes``
0: the data's). Any key can still be overridden (``--config.<key>=...``).
A missing or malformed folder is reported when the run starts, in one line
naming the expected layout.

Args (`ARGS`): ``root=FOLDER``, ``size=`` (input side), ``epochs=``,
``recipe=auto|small|photo``, ``runlocal`` and the ablation args of every
config (``module=``, ``aux=``, ``norm=``, ``variant=``).

Two recipes; with ``recipe=auto`` (the default) the images' size picks one
when the data set is prepared, not when this config loads (it reads no
file): the small one when the median shorter side of up to 32 training
images is at most 64 pixels, the photo one otherwise (or when none opens).
Until then the keys on which the two differ are None, with both recipes'
values and the rule under ``by_image_size``
(`inception_jax.config.by_image_size`; `datasets.resolve_config` measures
and picks); the run's ``config.json`` holds the picked values. Args and
overrides win over either recipe.

* ``small`` (e.g. Fashion-MNIST's 28x28 or CIFAR's 32x32): the recipe
  measured on Fashion-MNIST (`inception_jax.config.small_image_config`, as
  configs/fashion_mnist.py): input ``size`` 32 (GoogLeNet's smallest), the
  light crop (random resized crops keeping 60-100% of the area: the paper's
  8% crops of a tiny image are mostly background), flips, no colour
  distortion, evaluation on the whole image, [-1, 1] inputs, width 0.25,
  BatchNorm, batch 128, 10 epochs, lr 0.1 at batch 128 with Nesterov
  momentum, half an epoch of warm-up and cosine decay, Polyak decay 0.998.
* ``photo``: the paper's augmentation (8%-100% crops, aspect 3/4-4/3, random
  interpolation, Howard's colour distortions, flips) at ``size`` 224, the
  usual 87.5% center crop for evaluation, ImageNet normalisation, the full
  width with BatchNorm, batch 64, 30 epochs, lr 0.025 at batch 64 (0.1 at
  256), one epoch of warm-up, cosine decay, Polyak decay 0.999. From
  scratch this needs thousands of images per class; with fewer, fine-tune
  (``--config.init_from=``, see the README).

Small images are decoded once, into a cache beside the prepared records
(``data.cache_decoded='auto'``: when the decoded pixels fit 2 GiB), so
training reads uint8 arrays as Fashion-MNIST's native records do. Measured
with Fashion-MNIST written as 70,000 PNGs (experiments/fashion_mnist_png.py)
against configs/fashion_mnist.py at the same model, settings and 5 epochs
(``:root=FOLDER,epochs=5``), 2026-11-30 on 2 shared CPU cores: 87.94% test
top-1 against 88.38%, with less CPU per training image than the native run
(1.33 against 1.60 ms), and the input pipeline alone at 2.26x the native
one's images/s (0.29x when decoding per step; commit 6ec9c27);
experiments/results/image_folder_vs_native.md.
"""

from inception_jax import config as config_lib
from inception_jax import config_args

ARGS = {
    **config_args.ablations(norm='batchnorm'),
    'root': config_args.Arg(None, type=str),  # FOLDER
    'size': config_args.Arg(None, type=int),  # data.image_size
    'epochs': config_args.Arg(None, type=float),  # num_epochs
    'recipe': config_args.Arg('auto', choices=('auto', 'small', 'photo')),
    'runlocal': config_args.Arg(False),  # a smoke run of seconds
}
# Images whose median shorter side is at most this many pixels are small.
SMALL_MAX_SIDE = 64


def get_config(arg=None):
  args = config_args.parse(arg, ARGS)
  recipes = {'small': _small(args), 'photo': _photo(args)}
  for c in recipes.values():
    c.data.name = 'image_folder'
    c.data.root = args.root
    c.optimizer.lr = 0.1
    c.optimizer.nesterov = True
    c.optimizer.schedule = 'cosine'
    c.checkpoint_every_steps = 500
    c.keep_checkpoints = 2
    if args.size is not None:
      c.data.image_size = args.size
    if args.epochs is not None:
      c.num_epochs = args.epochs
    if args.runlocal:
      config_lib.runlocal(c)
  if args.recipe == 'auto':
    return config_lib.by_image_size(small_max_side=SMALL_MAX_SIDE, **recipes)
  return recipes[args.recipe]


def _small(args):
  c = config_lib.small_image_config(args)
  c.num_epochs = 10.0
  return c


def _photo(args):
  c = config_lib.default_config(args)
  c.batch_size = 64
  c.num_epochs = 30.0
  c.optimizer.reference_batch_size = 256
  c.optimizer.weight_decay = 1e-4
  c.optimizer.warmup_epochs = 1.0
  c.optimizer.polyak_decay = 0.999
  return c
