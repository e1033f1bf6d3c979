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
``min_steps=`` (below), ``init_from=PATH`` (fine-tuning, below),
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
  scratch this needs thousands of images per class; with fewer, fine-tune.

How long: ``num_epochs`` becomes steps once the data set is prepared and
its number of training images is known (`inception_jax.train.schedule`), at
least ``min_steps`` and at most ``max_steps`` (0: no bound; ``total_steps``
> 0 wins over all three). A small folder's few epochs are too few steps to
converge: 10 epochs of 1,500 images at batch 128 are 110 steps. The run's
first lines say how many steps and why, e.g. ``schedule: 2,000 steps =
181.8 epochs of 11 steps (1,500 images, batch 128): min_steps=2000, since
num_epochs=10 gives 110; --config.min_steps=0 trains num_epochs alone``.

* ``small``: ``min_steps`` 2000, ``max_steps`` 8000. Measured with
  experiments/small_folder.py (2026-12-07, 2 shared CPU cores; Fashion-MNIST
  folders, test top-1 on 1,000 held-out images a class): on 5 classes of
  300 images, 76.28% after the 10 epochs alone (110 steps), 81.16% at 250
  steps, 84.02% at 500, 85.54% at 1000, 87.28% at 2000 (still rising; the
  most a run of about 5 minutes there allowed); logistic regression on the
  pixels 85.64%, a small CNN 89.06%. On 5 classes of 60 images: 20.12%
  after 10 epochs (20 steps), 81.96% at 2000
  (experiments/results/small_folder.json). The bound: 8000 steps at the
  slowest median step time of those runs, 0.21 s under a load average of 5
  (experiments/results/small_folder_first_run.json), train in 28 minutes
  on a CPU; 10 epochs reach it from about 102,000 images.
* ``photo``: ``min_steps`` 500 (32,000 images at batch 64, 10 epochs of a
  3,200-image folder), no bound. A choice, not measured: no photos or
  pretrained weights on this project's machines. At the 11 training
  images/s measured for the full network at 224 on this CPU
  (experiments/results/benchmarks.md) 500 steps take about 49 minutes: for
  photos use an accelerator.

Fine-tuning, the default for a photo folder of fewer than thousands of
images a class: ``init_from=PATH`` starts from a converted torchvision
checkpoint (``python -m inception_jax.convert --torchvision=...``, see the
README) with the photo recipe whatever the images' size, torchvision's
network (``variant=torchvision``, unless given), about a twelfth of the
rate from scratch (0.002 at batch 64) and 10 epochs (at least
``min_steps``). Another source (a Caffe conversion:
``variant=paper,norm=lrn``; a run of the small recipe:
``--config.init_from=``) needs its own network's args.

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
from inception_jax.data import config as data_config

ARGS = {
    # variant None: torchvision's with init_from (converted torchvision
    # weights are the documented source), the paper's otherwise.
    **config_args.ablations(norm='batchnorm', variant=None),
    'root': config_args.Arg(None, type=str),  # FOLDER
    'size': config_args.Arg(None, type=int),  # data.image_size
    'epochs': config_args.Arg(None, type=float),  # num_epochs
    'min_steps': config_args.Arg(None, type=int),  # the recipe's otherwise
    'init_from': config_args.Arg(None, type=str),  # fine-tune from PATH
    'recipe': config_args.Arg('auto', choices=('auto', 'small', 'photo')),
    'runlocal': config_args.Arg(False),  # a smoke run of seconds
}
# Images whose median shorter side is at most this many pixels are small.
SMALL_MAX_SIDE = 64
# The schedule's bounds (train.schedule), in steps; the docstring says how
# each was chosen.
SMALL_MIN_STEPS = 2000
SMALL_MAX_STEPS = 8000
PHOTO_MIN_STEPS = 500


def get_config(arg=None):
  args = config_args.parse(arg, ARGS)
  if args.init_from and args.recipe == 'small':
    raise ValueError(
        'config arg init_from fine-tunes converted ImageNet weights with the '
        'photo recipe; drop recipe=small, or pass a small-image source as '
        '--config.init_from=PATH.')
  if args.variant is None:
    args.variant = 'torchvision' if args.init_from else 'paper'
  recipes = {'small': _small(args), 'photo': _photo(args)}
  for c in recipes.values():
    c.data.name = 'image_folder'
    c.data.root = args.root
    c.checkpoint_every_steps = 500
    c.keep_checkpoints = 2
    if args.size is not None:
      c.data.image_size = args.size
    if args.epochs is not None:
      c.num_epochs = args.epochs
    if args.min_steps is not None:
      c.min_steps = args.min_steps
    if args.runlocal:
      config_lib.runlocal(c)
  if args.init_from:
    return recipes['photo']
  if args.recipe == 'auto':
    return config_lib.by_image_size(small_max_side=SMALL_MAX_SIDE, **recipes)
  return recipes[args.recipe]


def _small(args):
  c = config_lib.small_image_config(args)
  c.num_epochs = 10.0
  c.min_steps = SMALL_MIN_STEPS
  c.max_steps = SMALL_MAX_STEPS
  return c


def _photo(args):
  c = config_lib.default_config(args)
  c.batch_size = 64
  c.num_epochs = 30.0
  c.optimizer.lr = 0.1
  c.optimizer.reference_batch_size = 256
  c.optimizer.nesterov = True
  c.optimizer.schedule = 'cosine'
  c.optimizer.weight_decay = 1e-4
  c.optimizer.warmup_epochs = 1.0
  c.optimizer.polyak_decay = 0.999
  c.min_steps = PHOTO_MIN_STEPS
  # Decoding photos is the input's work: what the host can give (printed at
  # start-up).
  c.data.worker_count = data_config.AUTO_WORKERS
  if args.init_from:
    # The README's fine-tuning command's values: pretrained features move
    # at about a twelfth of the rate from scratch, for a third the epochs.
    c.init_from = args.init_from
    c.num_epochs = 10.0
    c.optimizer.lr = 0.008  # 0.002 at batch 64
  return c
