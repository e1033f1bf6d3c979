"""GoogLeNet on ImageNet 2012 with the paper's recipe (Szegedy et al. 2014).

Command (one host with 8 accelerators; add --config.multihost=True on a pod):

  python -m inception_jax.main --config=configs/imagenet.py \
      --workdir=gs://BUCKET/googlenet --config.data.manual_dir=DIR

DIR holds ILSVRC2012_img_train.tar and ILSVRC2012_img_val.tar (TFDS prepares
them on the first run). Hardware, run time and accuracy: not measured. For
comparison, Caffe's bvlc_googlenet reached 68.7% top-1 / 88.9% top-5 with one
center crop (trained with its quick_solver, `:` see `poly` below).

From the paper: SGD with momentum 0.9; the learning rate x0.96 every 8
epochs; Polyak averaging for the final model; auxiliary losses weighted 0.3
(dropout 70% inside the heads); dropout 40% before the classifier; LRN in the
stem; 224x224 crops of 8%-100% of the area with aspect ratio 3/4-4/3,
photometric distortions and random interpolation (the data config's
defaults).

Left open by the paper, and what this config uses:
* Base learning rate, batch size, weight decay: Caffe's bvlc_googlenet
  solver, lr 0.01 at batch 32 and weight decay 2e-4 (kernels only: Caffe has
  decay_mult 0 on biases). The global batch is 256 (32 per device on 8
  devices, Caffe's batch per GPU) and the rate scales linearly, to 0.08.
* Warm-up: 1 epoch, linear from 0 (not in the paper or Caffe; it guards the
  8x scaled rate in the first steps and is negligible afterwards).
* Length: 250 epochs, Caffe's solver.prototxt for this staircase (max_iter
  10M at batch 32); the rate ends at 0.96^31 = 28% of its start.
  `--config.optimizer.schedule=poly --config.num_epochs=60` is Caffe's
  quick_solver (poly, power 0.5) that produced the released weights.
* Polyak decay 0.9999 (about the last 10,000 steps, 2 epochs at batch 256).
* Label smoothing: none (it came with Inception v3).
* Mixed precision: bfloat16 compute with float32 parameters on accelerators
  (model.dtype='auto'); float32 on CPU.

Args: `:module=naive|reduced,aux=True|False,norm=lrn|batchnorm|none,
variant=paper|torchvision,runlocal`.
"""

import os
import sys

import ml_collections

# `configs.common` imports from any working directory.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from configs import common  # pylint: disable=g-import-not-at-top,wrong-import-position

IMAGENET_TRAIN_IMAGES = 1_281_167


def get_config(arg=None) -> ml_collections.ConfigDict:
  args = common.parse_arg(arg, switches=('runlocal',))
  c = common.base_config(args)

  c.data.name = 'imagenet2012'
  c.data.image_size = 224
  c.data.crop = 'inception'
  # Caffe's input for the paper's LRN model (0-255 minus the mean pixel: the
  # scale the LRN constants assume); mean/std for the others, which is what
  # torchvision's weights (with transform_input) expect.
  c.data.normalization = common.input_normalization(args.norm, 'imagenet')
  c.data.eval_crops = 1
  c.data.worker_count = 16

  c.model.width = 1.0
  c.model.dtype = 'auto'

  c.batch_size = 256
  c.eval_batch_size = 1024
  c.num_epochs = 250.0
  steps_per_epoch = IMAGENET_TRAIN_IMAGES // c.batch_size
  c.log_every_steps = 500
  c.eval_every_steps = 5 * steps_per_epoch
  c.checkpoint_every_steps = 2000
  c.keep_checkpoints = 3

  c.optimizer.lr = 0.01
  c.optimizer.reference_batch_size = 32
  c.optimizer.momentum = 0.9
  c.optimizer.nesterov = False
  c.optimizer.weight_decay = 2e-4
  c.optimizer.schedule = 'staircase'
  c.optimizer.decay_factor = 0.96
  c.optimizer.decay_every_epochs = 8.0
  c.optimizer.warmup_epochs = 1.0
  c.optimizer.aux_weight = 0.3
  c.optimizer.label_smoothing = 0.0
  c.optimizer.polyak_decay = 0.9999

  if args.runlocal:
    common.apply_runlocal(c)
    c.data.train_split = 'train[:256]'
    c.data.eval_split = 'validation[:64]'
  return c
