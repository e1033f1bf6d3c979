"""Pieces shared by the configs: the ablation args and the common keys.

Every config takes big_vision-style args after a colon,
``--config=configs/<name>.py:module=naive,aux=False,norm=batchnorm,runlocal``,
and every key can then be overridden with ``--config.<key>=<value>``.
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Tuple

import ml_collections
from ml_collections import config_dict

from inception_jax.data import config as data_config

# Ablation args: name -> (valid values, default). The first three are the
# paper's switches (Figure 2, auxiliary heads, LRN), `variant` selects
# torchvision's network.
ABLATIONS: Dict[str, Tuple[Tuple[Any, ...], Any]] = {
    'module': (('reduced', 'naive'), 'reduced'),
    'aux': ((True, False), True),
    'norm': (('lrn', 'batchnorm', 'none'), 'lrn'),
    'variant': (('paper', 'torchvision'), 'paper'),
}


def _parse_value(text: str) -> Any:
  lowered = text.lower()
  if lowered in ('true', 'false'):
    return lowered == 'true'
  return text


def parse_arg(arg: Optional[str], *, switches: Tuple[str, ...] = ('runlocal',),
              options: Optional[Dict[str, Tuple[Tuple[Any, ...], Any]]] = None,
              **defaults: Any) -> ml_collections.ConfigDict:
  """Parses 'key=value,flag' into the ablation settings and switches.

  Args:
    arg: the text after ':' in --config, or None.
    switches: boolean args of this config (present means True).
    options: this config's own valued args, name -> (valid values, default).
    **defaults: this config's defaults for ablation args.

  Returns:
    A ConfigDict with every ablation key (defaulted) and every switch.

  Raises:
    ValueError: an unknown arg or value, listing the valid ones.
  """
  choices = dict(ABLATIONS, **(options or {}))
  out = {name: default for name, (_, default) in choices.items()}
  out.update(defaults)
  out.update({name: False for name in switches})
  given = set()
  for part in (arg or '').split(','):
    part = part.strip()
    if not part:
      continue
    name, sep, value = part.partition('=')
    name = name.strip()
    if name in switches:
      out[name] = True if not sep else _parse_value(value.strip()) is True
      continue
    if name not in choices:
      raise ValueError(
          f'unknown config arg {name!r}; valid args are '
          f'{", ".join(list(choices) + list(switches))}.')
    valid = choices[name][0]
    parsed = _parse_value(value.strip())
    if not sep or parsed not in valid:
      raise ValueError(
          f'config arg {name}={value.strip()!r} is not one of '
          f'{"|".join(str(v) for v in valid)}.')
    out[name] = parsed
    given.add(name)
  if out['variant'] == 'torchvision' and 'norm' not in given:
    out['norm'] = 'batchnorm'  # torchvision's network has BatchNorm
  return ml_collections.ConfigDict(out)


def base_config(args: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """Every key a training config has, with neutral defaults."""
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.batch_size = 128  # global, over all devices and processes
  c.eval_batch_size = 256  # global; the last batch is padded and masked
  c.num_epochs = 1.0
  c.total_steps = 0  # when > 0 it wins over num_epochs
  c.log_every_steps = 100
  c.eval_every_steps = 0  # 0: evaluate at the end only
  c.eval_raw = False  # also evaluate the raw (not Polyak-averaged) weights
  c.checkpoint_every_steps = 1000
  c.keep_checkpoints = 3
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
  # Fine-tuning (see inception_jax/finetune.py). A checkpoint this project
  # reads (a training workdir or step, an export, a converted torchvision
  # checkpoint) whose parameters initialise a fresh run wherever name and
  # shape match; the classifier heads are re-initialised when the class
  # count differs. Read only at a fresh start, never on resume. '': none.
  c.init_from = ''
  # A regex searched (re.search) in every parameter's path, as
  # 'conv1/conv/kernel' or 'inception_3a/b1x1/conv/kernel'; e.g.
  # '^(conv|inception_3|inception_4)' keeps all but the last stage and the
  # heads fixed: the optimiser never updates (nor decays) what it matches.
  # BatchNorm statistics still follow the data. '': train everything.
  c.freeze = ''

  # The model's constructor arguments (googlenet.MODEL_ARGS), as they are
  # passed to it and recorded in every checkpoint.
  c.model = ml_collections.ConfigDict()
  c.model.num_classes = 0  # 0: the data set's number of classes
  c.model.module = args.module
  c.model.aux = args.aux
  c.model.norm = args.norm
  c.model.variant = args.variant
  c.model.width = 1.0
  c.model.dropout = config_dict.placeholder(float)  # None: 0.4 paper, 0.2 tv
  c.model.aux_dropout = 0.7
  c.model.transform_input = config_dict.placeholder(bool)
  c.model.dtype = 'auto'  # float32 on CPU, bfloat16 compute on accelerators
  # How the backward pass computes the max pools' and the large convolutions'
  # gradients: the CPU-friendly custom ones, or 'xla' for XLA's own. The same
  # numbers either way; only the speed differs.
  c.model.max_pool_grad = 'stencil'
  c.model.conv_grad = 'im2col'

  c.data = data_config.default_config()

  c.optimizer = ml_collections.ConfigDict()
  c.optimizer.lr = 0.01  # at reference_batch_size; scaled linearly
  c.optimizer.reference_batch_size = 32
  c.optimizer.momentum = 0.9
  c.optimizer.nesterov = False
  c.optimizer.weight_decay = 2e-4  # L2 on kernels only (see optim.py)
  # Learning-rate multiplier of every bias (Caffe's lr_mult: 2 in
  # bvlc_googlenet).
  c.optimizer.bias_lr_mult = 1.0
  c.optimizer.schedule = 'staircase'  # staircase|poly|cosine|constant
  c.optimizer.warmup_epochs = 0.0
  c.optimizer.decay_factor = 0.96  # staircase: x0.96 ...
  c.optimizer.decay_every_epochs = 8.0  # ... every 8 epochs
  c.optimizer.poly_power = 0.5
  c.optimizer.label_smoothing = 0.0
  c.optimizer.aux_weight = 0.3
  c.optimizer.polyak_decay = 0.9999  # 0 turns the average off
  return c


def input_normalization(norm: str, otherwise: str) -> str:
  """The data normalisation a model's `norm` needs.

  The paper's LRN (Caffe's constants) acts only at Caffe's input scale, 0-255
  minus the mean ('caffe'); at a unit scale it leaves its input unchanged to
  within 1e-4 and the LRN ablation would measure nothing.
  """
  return 'caffe' if norm == 'lrn' else otherwise


def apply_runlocal(c: ml_collections.ConfigDict) -> None:
  """Shrinks a config to a smoke run of seconds on a laptop CPU."""
  c.model.width = 0.0625
  c.data.image_size = 32
  c.batch_size = 16
  c.eval_batch_size = 64
  c.total_steps = 6
  c.log_every_steps = 2
  c.eval_every_steps = 0
  c.checkpoint_every_steps = 3
  c.data.worker_count = 0
