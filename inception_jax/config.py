"""The training config every config file starts from, and what they share.

A config file (``configs/*.py``; flax's ``configs/default.py`` plus variants)
takes one of these and changes only the keys its recipe changes:

* `default_config`: every key a run reads, with the paper's recipe (Szegedy
  et al. 2014, Section 6, and Caffe's bvlc_googlenet details where the paper
  gives none); configs/imagenet.py adds ImageNet's sizes.
* `small_image_config`: the same network trained on small images (at most
  64 pixels a side), measured on Fashion-MNIST: configs/fashion_mnist.py,
  and configs/image_folder.py for a folder of small images.
* `runlocal`: a smoke run of seconds, the ``:runlocal`` arg of every config.
* `by_image_size`: one config for two recipes, the images' size picking one
  when the data set is prepared (`choose_by_image_size`, called by
  `datasets.resolve_config`), so that loading a config never reads the data.

The args after the colon of ``--config`` are `config_args`'.
"""

from __future__ import annotations

import copy
from typing import Any, Dict, Iterator, Optional, Tuple

from absl import logging
import ml_collections
from ml_collections import config_dict

from inception_jax import config_args
from inception_jax.data import config as data_config


def default_config(
    args: Optional[ml_collections.ConfigDict] = None
) -> ml_collections.ConfigDict:
  """The paper's recipe, every key a run reads.

  Args:
    args: the ablation args (`config_args.ABLATIONS`); None: their defaults.

  Returns:
    The config; its data set (``data.name``) is each config file's to set.
  """
  args = args or config_args.parse(None, config_args.ABLATIONS)
  c = _run_keys()
  c.model = _model_keys(args)
  c.data = data_config.default_config()
  c.data.normalization = input_normalization(args.norm, 'imagenet')
  c.optimizer = _optimizer_keys()
  return c


def _run_keys() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.batch_size = 128  # global, over all devices and processes
  c.eval_batch_size = 256  # global; the last batch is padded and masked
  c.num_epochs = 1.0
  c.total_steps = 0  # when > 0 it wins over num_epochs
  # Bounds on the steps num_epochs gives, applied once the number of
  # training images is known (train.schedule): at least min_steps, so a
  # small data set still converges, and at most max_steps, a bound on the
  # run's time (it wins over min_steps). 0: no bound.
  c.min_steps = 0
  c.max_steps = 0
  c.log_every_steps = 100
  c.eval_every_steps = 0  # 0: evaluate at the end only
  c.eval_raw = False  # also evaluate the raw (not Polyak-averaged) weights
  c.checkpoint_every_steps = 1000
  c.keep_checkpoints = 3
  # N > 0: a jax.profiler trace of N steps, from the second step of the
  # session (the first compiles), into <workdir>/plugins/profile/, where
  # `tensorboard --logdir <workdir>` shows it (its Profile tab, with
  # tensorboard-plugin-profile installed).
  c.profile_steps = 0
  # False: a non-finite loss or gradient stops the run with an error.
  # True: that update is skipped and counted (train/nonfinite_steps).
  c.skip_nonfinite = False
  # Call jax.distributed.initialize() (also done when the environment is a
  # multi-process cluster).
  c.multihost = False
  # With several processes: seconds a process may go without a heartbeat
  # before JAX's coordination service calls it lost and every other process
  # stops (jax.distributed's heartbeat timeout). A lost host stops the rest
  # within about this long; a collective that fails sooner stops them sooner.
  c.peer_timeout_s = 100
  # The persistent compilation cache, so a restart skips recompiling the
  # steps: None means JAX_COMPILATION_CACHE_DIR if set, else
  # <workdir>/jax_cache; a path (local or gs://, e.g. one shared bucket
  # folder for a sweep) puts it there; '' turns it off (compile_cache.py).
  c.compilation_cache_dir = config_dict.placeholder(str)
  # Fine-tuning (see inception_jax/checkpoints/finetune.py). A checkpoint
  # this project reads (a training workdir or step, an export, a converted
  # torchvision checkpoint) whose parameters initialise a fresh run
  # wherever name and shape match; the classifier heads are re-initialised
  # when the class count differs. Read only at a fresh start, never on
  # resume. '': none.
  c.init_from = ''
  # A regex searched (re.search) in every parameter's path, as
  # 'conv1/conv/kernel' or 'inception_3a/b1x1/conv/kernel'; e.g.
  # '^(conv|inception_3|inception_4)' keeps all but the last stage and the
  # heads fixed: the optimiser never updates (nor decays) what it matches.
  # BatchNorm statistics still follow the data. '': train everything.
  c.freeze = ''
  return c


def _model_keys(args: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """The model's constructor arguments (googlenet.MODEL_ARGS), as they are
  passed to it and recorded in every checkpoint."""
  m = ml_collections.ConfigDict()
  m.num_classes = 0  # 0: the data set's number of classes
  m.module = args.module
  m.aux = args.aux
  m.norm = args.norm
  m.variant = args.variant
  m.width = 1.0
  m.dropout = config_dict.placeholder(float)  # None: 0.4 paper, 0.2 tv
  m.aux_dropout = 0.7
  m.transform_input = config_dict.placeholder(bool)
  m.dtype = 'auto'  # float32 on CPU, bfloat16 compute on accelerators
  # How the backward pass computes the max pools' and the large convolutions'
  # gradients: the CPU-friendly custom ones, or 'xla' for XLA's own. The same
  # numbers either way; only the speed differs.
  m.max_pool_grad = 'stencil'
  m.conv_grad = 'im2col'
  return m


def _optimizer_keys() -> ml_collections.ConfigDict:
  o = ml_collections.ConfigDict()
  o.lr = 0.01  # at reference_batch_size; scaled linearly
  o.reference_batch_size = 32
  o.momentum = 0.9
  o.nesterov = False
  o.weight_decay = 2e-4  # L2 on kernels only (see optim.py)
  # Learning-rate multiplier of every bias (Caffe's lr_mult: 2 in
  # bvlc_googlenet).
  o.bias_lr_mult = 1.0
  o.schedule = 'staircase'  # staircase|poly|cosine|constant
  o.warmup_epochs = 0.0
  o.decay_factor = 0.96  # staircase: x0.96 ...
  o.decay_every_epochs = 8.0  # ... every 8 epochs
  o.poly_power = 0.5
  o.label_smoothing = 0.0
  o.aux_weight = 0.3
  o.polyak_decay = 0.9999  # 0 turns the average off
  return o


def input_normalization(norm: str, otherwise: str) -> str:
  """The data normalisation a model's `norm` needs.

  The paper's LRN (Caffe's constants) acts only at Caffe's input scale, 0-255
  minus the mean ('caffe'); at a unit scale it leaves its input unchanged to
  within 1e-4 and the LRN ablation would measure nothing.
  """
  return 'caffe' if norm == 'lrn' else otherwise


def small_image_config(
    args: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """The paper's network trained on small images, in minutes on a CPU.

  Measured on Fashion-MNIST (configs/fashion_mnist.py, which says why each
  change was made): 32x32 input, GoogLeNet's smallest; crops of 60-100% of
  the area (the paper's 8% crops of a 28x28 image are mostly background), no
  colour distortion or random interpolation (meant for colour photos), the
  whole image at evaluation, [-1, 1] inputs unless the LRN needs Caffe's;
  width 0.25; lr 0.1 at batch 128 with Nesterov momentum, weight decay 5e-4,
  half an epoch of warm-up and cosine decay (the paper's 4%-every-8-epochs
  staircase would barely move in a few epochs), Polyak decay 0.998 (about
  the last 500 steps). ``num_epochs`` is each config's.
  """
  c = default_config(args)
  c.data.image_size = 32
  c.data.normalization = input_normalization(args.norm, 'minus_one_one')
  c.data.crop = 'random_resized'
  c.data.distort_color = False
  c.data.random_interpolation = False
  c.data.eval_crop_fraction = 1.0
  c.model.width = 0.25
  c.eval_batch_size = 500
  c.checkpoint_every_steps = 500
  c.keep_checkpoints = 2
  c.optimizer.lr = 0.1
  c.optimizer.reference_batch_size = 128
  c.optimizer.nesterov = True
  c.optimizer.weight_decay = 5e-4
  c.optimizer.schedule = 'cosine'
  c.optimizer.warmup_epochs = 0.5
  c.optimizer.polyak_decay = 0.998
  return c


def runlocal(c: ml_collections.ConfigDict) -> None:
  """Shrinks a config, in place, to a smoke run of seconds on a laptop CPU."""
  c.model.width = 0.0625
  c.data.image_size = 32
  c.batch_size = 16
  c.eval_batch_size = 64
  c.total_steps = 6
  c.log_every_steps = 2
  c.eval_every_steps = 0
  c.checkpoint_every_steps = 3
  c.data.worker_count = 0


# --- One config for two recipes, picked by the images' size. ----------------

def _flat(c: ml_collections.ConfigDict,
          prefix: str = '') -> Iterator[Tuple[str, Any]]:
  for key, value in c.items():
    if isinstance(value, ml_collections.ConfigDict):
      yield from _flat(value, f'{prefix}{key}.')
    else:
      yield prefix + key, value


def _nested(flat: Dict[str, Any]) -> ml_collections.ConfigDict:
  out = ml_collections.ConfigDict()
  for key, value in flat.items():
    *parents, leaf = key.split('.')
    node = out
    for parent in parents:
      if parent not in node:
        node[parent] = ml_collections.ConfigDict()
      node = node[parent]
    node[leaf] = value
  return out


def _placeholder_for(*values: Any) -> config_dict.FieldReference:
  kinds = {type(v) for v in values if v is not None}
  kind = float if kinds == {int, float} else kinds.pop()
  return config_dict.placeholder(kind)


def by_image_size(*, small: ml_collections.ConfigDict,
                  photo: ml_collections.ConfigDict,
                  small_max_side: int) -> ml_collections.ConfigDict:
  """One config for both recipes, the images' size picking one later.

  Keys on which ``small`` and ``photo`` agree keep their value; the others
  are left None (typed, so ``--config.<key>=`` still overrides them), and
  both recipes' values are kept under ``by_image_size`` with the rule:
  `choose_by_image_size` fills what is still None with ``small``'s values
  when the median shorter side of the training images is at most
  ``small_max_side`` pixels, with ``photo``'s otherwise.
  """
  small_keys, photo_keys = dict(_flat(small)), dict(_flat(photo))
  if small_keys.keys() != photo_keys.keys():
    raise ValueError('by_image_size needs two configs with the same keys.')
  differ = [k for k in photo_keys if small_keys[k] != photo_keys[k]]
  c = copy.deepcopy(photo)
  c.unlock()
  for key in differ:
    *parents, leaf = key.split('.')
    node = c
    for parent in parents:
      node = node[parent]
    node[leaf] = _placeholder_for(small_keys[key], photo_keys[key])
  c.by_image_size = ml_collections.ConfigDict({
      'small_max_side': small_max_side,
      'small': _nested({k: small_keys[k] for k in differ}),
      'photo': _nested({k: photo_keys[k] for k in differ}),
  })
  return c


def choose_by_image_size(config: ml_collections.ConfigDict,
                         side: Optional[float]) -> ml_collections.ConfigDict:
  """``config`` with its `by_image_size` choice made for images of ``side``.

  ``side``: the median shorter side of the training images, in pixels (None:
  unknown, which picks the photo recipe); `datasets.resolve_config` measures
  it when the data set is prepared. Keys given a value since
  `by_image_size` (``--config.<key>=`` overrides) keep it. A config without
  the choice comes back as it is.
  """
  if 'by_image_size' not in config:
    return config
  choice = config.by_image_size
  small = side is not None and side <= choice.small_max_side
  logging.info('%s: median shorter side %s px, so the recipe for %s (small: '
               'at most %d px).', config.data.root, side,
               'small images' if small else 'photos', choice.small_max_side)
  current = dict(_flat(config))
  config = copy.deepcopy(config)
  with config.unlocked():
    config.update_from_flattened_dict(
        {k: v for k, v in _flat(choice.small if small else choice.photo)
         if current[k] is None})
    del config['by_image_size']
  return config
