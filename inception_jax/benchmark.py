r"""Training and inference throughput of GoogLeNet, optionally against torchvision.

    python -m inception_jax.benchmark --image_size=224 --batch_size=32 \
        --dtype=float32 --peer=torchvision

On whatever backend JAX has, measures for our model:

* training images/s: the train step that `train.py` builds and runs
  (`steps.make_train_step` on `mesh.create_mesh()`, the state donated):
  forward in training mode with the auxiliary heads, softmax cross-entropy +
  ``aux_weight`` x each auxiliary loss, backward, and the optimiser of the
  training configs' defaults (``config.default_config``: SGD momentum 0.9
  with L2 weight decay on the kernels, the learning-rate schedule), the Polyak
  average and the finite-update guard;
* inference images/s: the evaluation step of the trainer and `evaluate.py`
  (`steps.make_eval_step`: forward without auxiliary heads, masked loss and
  top-1/top-5 sums) on the Polyak-averaged weights;
* compile time of the train step (lower + compile, wall clock);
* peak memory: the device's ``peak_bytes_in_use`` where ``memory_stats`` has
  it (GPU/TPU); on CPU the growth of the process's peak resident set during
  the phase (``/proc/self/status`` VmHWM, reset per phase through
  ``/proc/self/clear_refs``; ``resource.getrusage`` max RSS if that is not
  available). The output says which (``memory_source``);
* MFU: analytic FLOPs of a train step over the measured matmul peak of the
  same device. FLOPs convention: multiply-adds of every convolution and
  matrix product of the training forward pass (aux heads included), counted
  from the jaxpr by `inception_jax.flops.count_macs`, x 3 for forward +
  backward (the backward costs two forward passes: input and weight
  gradients), x 2 FLOPs per multiply-add. Inference MFU uses 1 x forward.
  The peak is the best time of a large square ``jnp.dot`` in the same dtype.

Timing: ``--warmup`` untimed steps (compilation included), then ``--repeats``
timed runs of ``--steps`` steps each, every run ended by
``block_until_ready``; the figure is the median run. With ``--peer=torchvision``
torchvision's ``googlenet(weights=None, aux_logits=True, init_weights=False)``
runs in the same process with its best ordinary settings (channels_last on
CPU; bf16 autocast, channels_last and ``torch.compile`` on GPU), trained by
`TorchTrainStep`: the same loss, optimiser (SGD momentum, the same coupled L2
decay on the same weights), Polyak average and finite guard as ours. The timed
runs of the two frameworks alternate, so both see the same machine load. The
like-for-like comparison is our ``variant=torchvision`` (the same network as
torchvision's) against torchvision; ``--also_paper=True`` measures the paper
variant (LRN, true 5x5) too and prints its figures alongside.

``--max_pool=xla`` and ``--conv_grad=xla`` measure the model with XLA's own
max-pool and convolution gradients (the model attributes ``max_pool_grad``
and ``conv_grad``), for before/after figures.

The last line printed is one JSON object with every figure, including
``train_ratio`` and ``infer_ratio`` (ours / torchvision images/s). From
Python, `run(Settings(...))` returns that object.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import json
import os
import platform
import resource
import statistics
import sys
import time
from typing import Any, Dict, List, Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from inception_jax import config as config_lib
from inception_jax import flops as flops_lib
from inception_jax import mesh as mesh_lib
from inception_jax import optim
from inception_jax import steps as steps_lib
from inception_jax.models import googlenet

# The benchmark's own random data; the model's and the step's seed.
SEED = 0
# --max_pool values -> the model's max_pool_grad.
MAX_POOL_GRAD = {'custom': 'stencil', 'xla': 'xla'}


@dataclasses.dataclass(frozen=True)
class Settings:
  """What to measure; the command's flags, one for one."""
  image_size: int = 224
  batch_size: int = 32
  dtype: str = 'float32'
  peer: str = 'none'
  module: str = 'reduced'
  aux: bool = True
  # None: batchnorm for variant=torchvision, lrn for the paper.
  norm: Optional[str] = None
  # None: torchvision when peer='torchvision' (like for like), else paper.
  variant: Optional[str] = None
  also_paper: bool = False
  width: float = 1.0
  num_classes: int = 1000
  repeats: int = 5
  steps: int = 2
  warmup: int = 2
  matmul_size: Optional[int] = None
  max_pool: str = 'custom'
  conv_grad: str = 'im2col'
  skip_infer: bool = False
  torch_compile: Optional[bool] = None


def define_flags() -> None:
  from absl import flags  # pylint: disable=g-import-not-at-top
  d = Settings()
  flags.DEFINE_integer('image_size', d.image_size, 'Square input side.')
  flags.DEFINE_integer('batch_size', d.batch_size, 'Global batch size.')
  flags.DEFINE_enum('dtype', d.dtype, ['float32', 'bfloat16'],
                    'Compute dtype (ours) / autocast (torchvision).')
  flags.DEFINE_enum('peer', d.peer, ['none', 'torchvision'],
                    'Also measure this peer, runs alternating with ours.')
  flags.DEFINE_enum('module', d.module, list(googlenet.MODULES),
                    'Inception module.')
  flags.DEFINE_bool('aux', d.aux, 'Build and train the auxiliary heads.')
  flags.DEFINE_enum('norm', d.norm, list(googlenet.NORMS),
                    'Default: batchnorm for variant=torchvision, lrn for the '
                    'paper.')
  flags.DEFINE_enum('variant', d.variant, list(googlenet.VARIANTS),
                    'Default: torchvision when --peer=torchvision (like for '
                    'like), else paper.')
  flags.DEFINE_bool('also_paper', d.also_paper,
                    'With --peer: also measure the paper variant.')
  flags.DEFINE_float('width', d.width, 'Channel width multiplier (ours).')
  flags.DEFINE_integer('num_classes', d.num_classes, 'Classifier size.')
  flags.DEFINE_integer('repeats', d.repeats, 'Timed runs per measurement.')
  flags.DEFINE_integer('steps', d.steps, 'Steps per timed run.')
  flags.DEFINE_integer('warmup', d.warmup, 'Untimed steps before the runs.')
  flags.DEFINE_integer('matmul_size', d.matmul_size,
                       'Side of the square matmul timed for the peak; '
                       'default 2048 on CPU, 8192 on accelerators.')
  flags.DEFINE_enum('max_pool', d.max_pool, list(MAX_POOL_GRAD),
                    "'xla': the model's max_pool_grad='xla' (plain "
                    "reduce_window pool, whose gradient is XLA's "
                    'select_and_scatter), for before/after figures.')
  flags.DEFINE_enum('conv_grad', d.conv_grad, ['im2col', 'xla'],
                    "'xla': the model's conv_grad='xla' (XLA's own gradients "
                    'for every convolution, also the large-map ones that '
                    'otherwise get im2col gradients on the CPU).')
  flags.DEFINE_bool('skip_infer', d.skip_infer,
                    'Measure training only.')
  flags.DEFINE_bool('torch_compile', d.torch_compile,
                    'torch.compile the peer; default: on for CUDA, off on '
                    'CPU.')


# --- Memory ------------------------------------------------------------------

class PeakMemory:
  """Peak memory growth over a phase, from the best source available."""

  def __init__(self, device):
    self.device = device
    stats = None
    try:
      stats = device.memory_stats()
    except Exception:  # pylint: disable=broad-except
      stats = None
    if stats and 'peak_bytes_in_use' in stats:
      self.source = 'device memory_stats peak_bytes_in_use'
    elif os.path.exists('/proc/self/clear_refs'):
      self.source = 'process VmHWM growth (clear_refs reset per phase)'
    else:
      self.source = 'process ru_maxrss growth (getrusage, not reset)'
    self._start = 0

  @staticmethod
  def _status_kb(key: str) -> int:
    with open('/proc/self/status') as f:
      for line in f:
        if line.startswith(key + ':'):
          return int(line.split()[1])
    raise KeyError(key)

  def start(self) -> None:
    if self.source.startswith('device'):
      self._start = 0  # JAX's peak since process start (not reset per phase)
    elif self.source.startswith('process VmHWM'):
      try:
        with open('/proc/self/clear_refs', 'w') as f:
          f.write('5')
      except OSError:
        self.source = 'process ru_maxrss growth (getrusage, not reset)'
        self._start = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        return
      self._start = self._status_kb('VmRSS') * 1024
    else:
      self._start = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

  def stop(self) -> int:
    if self.source.startswith('device'):
      return int(self.device.memory_stats()['peak_bytes_in_use'])
    if self.source.startswith('process VmHWM'):
      return max(0, self._status_kb('VmHWM') * 1024 - self._start)
    return max(0, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
               - self._start)


# --- Matmul peak --------------------------------------------------------------

def matmul_peak_flops(dtype, n: int = 2048, repeats: int = 5) -> float:
  """Best FLOP/s of an n x n x n ``jnp.dot`` in ``dtype`` on the default device."""
  key = jax.random.PRNGKey(0)
  a = jax.random.normal(key, (n, n), dtype)
  b = jax.random.normal(jax.random.fold_in(key, 1), (n, n), dtype)
  dot = jax.jit(jnp.dot)
  dot(a, b).block_until_ready()
  best = float('inf')
  for _ in range(repeats):
    t = time.perf_counter()
    dot(a, b).block_until_ready()
    best = min(best, time.perf_counter() - t)
  return 2.0 * n ** 3 / best


# --- Ours ---------------------------------------------------------------------

def training_optimizer_config():
  """The optimiser section every training config starts from."""
  return config_lib.default_config().optimizer


class JaxBench:
  """The trainer's train and evaluation steps on fixed random data."""

  def __init__(self, *, image_size, batch_size, dtype, module, aux, norm,
               variant, width, num_classes, transform_input=None,
               max_pool_grad='stencil', conv_grad='im2col', mesh=None,
               total_steps=1):
    self.batch_size = batch_size
    self.num_classes = num_classes
    self.model = googlenet.create_model(
        num_classes=num_classes, module=module, aux=aux, norm=norm,
        variant=variant, width=width, dtype=dtype,
        transform_input=transform_input, max_pool_grad=max_pool_grad,
        conv_grad=conv_grad)
    self.label = (f'ours ({variant}, {self.model.normalization}, {module}, '
                  f'aux={aux}, width={width})')
    self.mesh = mesh_lib.create_mesh() if mesh is None else mesh
    mesh_lib.check_divisible(batch_size, self.mesh, 'batch_size')
    # As train.py builds them. The schedule's values do not change the
    # step's cost; one epoch of one step keeps them defined.
    opt = training_optimizer_config()
    # The input the trainer feeds: uint8 pixels, normalised in the step.
    normalization = 'caffe' if self.model.normalization == 'lrn' else 'imagenet'
    tx, self._train = steps_lib.make_update(
        self.model, opt, num_classes=num_classes, normalization=normalization,
        batch_size=batch_size, steps_per_epoch=1,
        total_steps=max(1, total_steps), mesh=self.mesh)
    self.state = steps_lib.create_train_state(
        self.model, tx, seed=SEED, image_size=image_size, mesh=self.mesh)
    self._eval = steps_lib.make_eval_step(self.model, num_classes,
                                          normalization, self.mesh)
    rng = np.random.RandomState(SEED + 2)
    images = rng.randint(0, 256, (batch_size, image_size, image_size, 3),
                         dtype=np.uint8)
    labels = rng.randint(0, num_classes, (batch_size,)).astype(np.int32)
    sharding = mesh_lib.batch_sharded(self.mesh)
    self.batch = mesh_lib.to_global({'image': images, 'label': labels},
                                    sharding)
    # An evaluation batch as the evaluator feeds it: padded and masked (here
    # every example is real).
    self.eval_batch = mesh_lib.to_global(
        {'image': images, 'label': labels,
         'mask': np.ones((batch_size,), np.bool_)}, sharding)
    self.compile_s = None
    self.eval_compile_s = None

  def compile(self):
    t = time.perf_counter()
    self._train = self._train.lower(self.state, self.batch).compile()
    self.compile_s = time.perf_counter() - t
    t = time.perf_counter()
    self._eval = self._eval.lower(self.state.eval_variables(),
                                  self.eval_batch).compile()
    self.eval_compile_s = time.perf_counter() - t

  def train(self, steps: int):
    metrics = None
    for _ in range(steps):
      self.state, metrics = self._train(self.state, self.batch)
    jax.block_until_ready((self.state, metrics))

  def infer(self, steps: int):
    out = None
    variables = self.state.eval_variables()
    for _ in range(steps):
      out = self._eval(variables, self.eval_batch)
    jax.block_until_ready(out)

  def forward_macs(self) -> Dict[str, int]:
    """Multiply-adds of the training forward (aux heads included) and of the
    inference forward, per batch."""
    s = self.state
    images = self.batch['image'].astype(np.float32)  # As the step feeds it.

    def train_forward(params, model_state, x, rng):
      (logits, aux), _ = self.model.apply(
          {'params': params, **model_state}, x, train=True,
          rngs={'dropout': rng}, mutable=list(model_state))
      return logits, aux

    def infer_forward(variables, x):
      return self.model.apply(variables, x, train=False)

    train = flops_lib.count_macs(train_forward, s.params, s.model_state,
                                 images, s.rng)
    infer = flops_lib.count_macs(infer_forward, s.eval_variables(), images)
    return {'train_forward_macs': train, 'infer_forward_macs': infer}


# --- torchvision --------------------------------------------------------------

# What `TorchTrainStep` does (the result's 'torch_train_step').
TORCH_TRAIN_STEP = (
    'benchmark.TorchTrainStep, optimizer of inception_jax/config.default_config: CE + '
    'aux_weight x each aux CE, SGD momentum with the same coupled L2 decay on '
    'conv/linear weights, Polyak average of parameters and BatchNorm '
    'statistics, finite guard; learning rate constant at the base rate')


def torch_param_groups(model, opt, lr: float) -> List[Dict[str, Any]]:
  """torch.optim parameter groups that decay what `optim.create_optimizer`
  decays (convolution and linear weights: `optim.weight_decay_mask`'s
  kernels) and give biases `opt.bias_lr_mult` x the rate."""
  import torch  # pylint: disable=import-outside-toplevel
  kernels = {id(m.weight) for m in model.modules()
             if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))}
  groups: Dict[Any, list] = {}
  for name, p in model.named_parameters():
    decay = opt.weight_decay if id(p) in kernels else 0.0
    lr_mult = opt.bias_lr_mult if name.endswith('bias') else 1.0
    groups.setdefault((decay, lr_mult), []).append(p)
  return [{'params': ps, 'weight_decay': decay, 'lr': lr * lr_mult}
          for (decay, lr_mult), ps in groups.items()]


class TorchTrainStep:
  """`steps.train_step`'s work in torch, so that the ratio is like for like.

  A call: forward in training mode, softmax cross-entropy + ``aux_weight`` x
  each auxiliary head's, backward and the gradients' global norm; then, if
  the loss and that norm are finite, torch.optim.SGD with momentum and the
  config's weight decay, then the Polyak average of the parameters and the
  floating buffers (BatchNorm statistics) with `optim.polyak_decay_at`'s
  ramp; if not, the BatchNorm statistics the forward moved are put back and
  `nonfinite_steps` counts the step. optax's `add_decayed_weights` before
  `sgd` adds the decay to the gradient before momentum: the coupled L2 of
  torch's ``weight_decay``. The learning rate stays at the schedule's base
  rate; its value does not change the step's cost.
  """

  def __init__(self, model, opt, *, lr: float, forward=None,
               autocast=contextlib.nullcontext):
    """`model`'s training forward (or `forward`) returns (logits, *aux)."""
    import torch  # pylint: disable=import-outside-toplevel
    self.torch = torch
    self.model = model
    self.forward = forward or model
    self.autocast = autocast
    self.aux_weight = opt.aux_weight
    self.label_smoothing = opt.label_smoothing
    self.polyak_decay = opt.polyak_decay
    self.optimizer = torch.optim.SGD(
        torch_param_groups(model, opt, lr), lr=lr,
        momentum=opt.momentum, nesterov=opt.nesterov)
    self.statistics = [b for b in model.buffers() if b.is_floating_point()]
    # What the Polyak average follows, and the average (as TrainState's
    # ema_params and ema_model_state), in that order.
    self.averaged = list(model.parameters()) + self.statistics
    with torch.no_grad():
      self.ema = [t.detach().clone() for t in self.averaged]
      self._statistics_before = [b.clone() for b in self.statistics]
    self.step = 0
    self.nonfinite_steps = 0

  def _losses(self, images, labels):
    cross_entropy = self.torch.nn.functional.cross_entropy
    with self.autocast():
      logits, *aux = self.forward(images)
      main_loss, *aux_losses = [
          cross_entropy(x.float(), labels,
                        label_smoothing=self.label_smoothing)
          for x in (logits, *aux)]
    return logits, main_loss + self.aux_weight * sum(aux_losses)

  def __call__(self, images, labels) -> Dict[str, Any]:
    torch = self.torch
    self.model.train()
    self.optimizer.zero_grad(set_to_none=True)
    with torch.no_grad():
      torch._foreach_copy_(self._statistics_before, self.statistics)
    logits, loss = self._losses(images, labels)
    loss.backward()
    grad_norm = torch.nn.utils.get_total_norm(
        [p.grad for p in self.model.parameters() if p.grad is not None])
    # One read on the host a step, as torch.amp.GradScaler's own skip.
    if bool(torch.isfinite(loss) & torch.isfinite(grad_norm)):
      self.optimizer.step()
      decay = min(self.polyak_decay, (1 + self.step) / (10 + self.step))
      with torch.no_grad():
        torch._foreach_lerp_(self.ema, self.averaged, 1.0 - decay)
    else:
      with torch.no_grad():
        torch._foreach_copy_(self.statistics, self._statistics_before)
      self.nonfinite_steps += 1
    self.step += 1
    top = logits.detach().topk(min(5, logits.shape[-1])).indices
    hits = top == labels[:, None]
    return {'loss': loss.detach(), 'grad_norm': grad_norm,
            'top1': hits[:, 0].float().mean(),
            'top5': hits.any(-1).float().mean()}


class TorchBench:
  """torchvision's googlenet with its best ordinary settings on this device,
  trained by `TorchTrainStep` with the training configs' optimiser."""

  def __init__(self, *, image_size, batch_size, dtype, num_classes,
               compile_model: Optional[bool]):
    import torch  # pylint: disable=import-outside-toplevel
    import torchvision  # pylint: disable=import-outside-toplevel
    self.torch = torch
    self.device = torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    cuda = self.device.type == 'cuda'
    self.compiled = cuda if compile_model is None else compile_model
    torch.manual_seed(SEED)
    model = torchvision.models.googlenet(weights=None, aux_logits=True,
                                         init_weights=False,
                                         num_classes=num_classes)
    model = model.to(self.device, memory_format=torch.channels_last)
    self.model = model
    self.images = torch.randn(batch_size, 3, image_size, image_size,
                              device=self.device).contiguous(
                                  memory_format=torch.channels_last)
    self.labels = torch.randint(0, num_classes, (batch_size,),
                                device=self.device)
    # bf16 autocast on GPU (its best ordinary setting); on CPU only when
    # bfloat16 was asked for, float32 otherwise (as ours).
    self.autocast = cuda or dtype == 'bfloat16'
    self.settings = ('channels_last'
                     + (', bf16 autocast' if self.autocast else '')
                     + (', torch.compile' if self.compiled else '')
                     + f', {torch.get_num_threads()} threads')
    self._fwd = torch.compile(model) if self.compiled else model
    opt = training_optimizer_config()
    self._train_step = TorchTrainStep(
        model, opt, lr=optim.scaled_learning_rate(opt, batch_size),
        forward=self._fwd, autocast=self._autocast)
    self.compile_s = None

  def _autocast(self):
    return self.torch.autocast(self.device.type, dtype=self.torch.bfloat16,
                               enabled=self.autocast)

  def _sync(self):
    if self.device.type == 'cuda':
      self.torch.cuda.synchronize()

  def compile(self):
    t = time.perf_counter()
    self._train_step(self.images, self.labels)
    self._sync()
    self.compile_s = time.perf_counter() - t  # first step (compile if any)

  def train(self, steps: int):
    metrics = None
    for _ in range(steps):
      metrics = self._train_step(self.images, self.labels)
    if metrics is not None:
      float(metrics['loss'])
    self._sync()

  def infer(self, steps: int):
    self.model.eval()
    out = None
    with self.torch.inference_mode(), self._autocast():
      for _ in range(steps):
        out = self._fwd(self.images)
    if out is not None:
      float(out.float().sum())
    self._sync()


# --- Driver -------------------------------------------------------------------

def _time_runs(benches, method: str, *, repeats: int, steps: int,
               batch_size: int) -> Dict[str, list]:
  """Alternates timed runs of each bench; images/s per run."""
  runs = {name: [] for name in benches}
  for _ in range(repeats):
    for name, bench in benches.items():
      t = time.perf_counter()
      getattr(bench, method)(steps)
      runs[name].append(batch_size * steps / (time.perf_counter() - t))
  return runs


def _variants(opts: Settings) -> Tuple[str, List[str]]:
  """The variant the ratio compares with torchvision, and every one measured."""
  variant = opts.variant or ('torchvision' if opts.peer == 'torchvision'
                             else 'paper')
  variants = [variant]
  if opts.peer == 'torchvision' and opts.also_paper and variant != 'paper':
    variants.append('paper')
  return variant, variants


def _header(opts: Settings) -> Dict[str, Any]:
  """The machine, the versions and the settings a figure belongs to."""
  return {
      'date': datetime.datetime.now().isoformat(timespec='seconds'),
      'backend': jax.default_backend(),
      'device': jax.devices()[0].device_kind,
      'num_cpus': os.cpu_count(),
      'load_average': os.getloadavg() if hasattr(os, 'getloadavg') else None,
      'platform': platform.platform(),
      'jax': jax.__version__,
      'xla_flags': os.environ.get('XLA_FLAGS', ''),
      'image_size': opts.image_size, 'batch_size': opts.batch_size,
      'dtype': opts.dtype, 'module': opts.module, 'aux': opts.aux,
      'width': opts.width, 'repeats': opts.repeats, 'steps': opts.steps,
      'warmup': opts.warmup, 'max_pool': opts.max_pool,
      'conv_grad': opts.conv_grad,
      'train_step': ('steps.make_train_step, optimizer of '
                     'inception_jax/config.py (weight decay, Polyak average, '
                     'finite guard)'),
      'optimizer': training_optimizer_config().to_dict(),
      'flops_convention': ('3 x forward multiply-adds (convs + matmuls of the '
                           'training forward, aux heads included, from the '
                           'jaxpr) x 2 FLOPs/MAC; inference 1 x forward'),
  }


def _prepare_ours(opts: Settings, variant: str, memory: PeakMemory
                  ) -> JaxBench:
  """Builds, compiles and warms up one variant; its peak memory recorded."""
  norm = opts.norm
  if variant == 'torchvision':
    norm = 'batchnorm'
  elif norm is None:
    norm = 'lrn'
  # Against torchvision: googlenet(weights=None)'s default.
  transform_input = (False if opts.peer == 'torchvision'
                     and variant == 'torchvision' else None)
  memory.start()
  bench = JaxBench(image_size=opts.image_size, batch_size=opts.batch_size,
                   dtype=jnp.dtype(opts.dtype), module=opts.module,
                   aux=opts.aux, norm=norm, variant=variant, width=opts.width,
                   num_classes=opts.num_classes,
                   transform_input=transform_input,
                   max_pool_grad=MAX_POOL_GRAD[opts.max_pool],
                   conv_grad=opts.conv_grad,
                   total_steps=opts.warmup + 1 + opts.repeats * opts.steps)
  bench.compile()
  bench.train(opts.warmup)
  if not opts.skip_infer:
    bench.infer(opts.warmup)
  bench.peak_bytes = memory.stop()
  return bench


def _prepare_torch(opts: Settings, memory: PeakMemory) -> TorchBench:
  """Builds and warms up torchvision's side; its peak memory recorded."""
  memory.start()
  peer = TorchBench(image_size=opts.image_size, batch_size=opts.batch_size,
                    dtype=opts.dtype, num_classes=opts.num_classes,
                    compile_model=opts.torch_compile)
  peer.compile()
  peer.train(max(0, opts.warmup - 1))
  if not opts.skip_infer:
    peer.infer(opts.warmup)
  peer.peak_bytes = memory.stop()
  if peer.device.type == 'cuda':  # torch's own allocator, not JAX's stats
    peer.peak_bytes = int(peer.torch.cuda.max_memory_allocated())
  return peer


def _entry_key(name: str) -> str:
  return 'torch' if name == 'torch' else f'ours_{name}'


def _entry(name: str, bench, train_runs: list, infer_runs: list
           ) -> Dict[str, Any]:
  """One bench's figures: medians, best runs, every run, compile, memory."""
  entry = {
      'label': ('torchvision googlenet (' + bench.settings + ')'
                if name == 'torch' else bench.label),
      'train_images_per_s': statistics.median(train_runs),
      'train_best_images_per_s': max(train_runs),
      'train_runs': train_runs,
      'infer_images_per_s': statistics.median(infer_runs),
      'infer_best_images_per_s': max(infer_runs),
      'infer_runs': infer_runs,
      'compile_s': bench.compile_s,
      'peak_memory_bytes': bench.peak_bytes,
  }
  if name != 'torch':
    entry['model'] = googlenet.model_kwargs(bench.model)
    entry['eval_compile_s'] = bench.eval_compile_s
    entry.update(bench.forward_macs())
  return entry


def _add_mfu(entry: Dict[str, Any], ours: Dict[str, Any], *, peak: float,
             batch_size: int) -> None:
  """MFU of `entry` from the FLOPs of `ours` (the same network)."""
  entry['train_step_flops'] = 3 * 2 * ours['train_forward_macs']  # per batch
  entry['train_mfu'] = (entry['train_step_flops'] / batch_size
                        * entry['train_images_per_s'] / peak)
  entry['infer_mfu'] = (2 * ours['infer_forward_macs'] / batch_size
                        * entry['infer_images_per_s'] / peak)


def _ratios(ours: Dict[str, Any], torch: Dict[str, Any]) -> Dict[str, Any]:
  """ours / torchvision images/s: medians, best runs (on a shared machine
  the least disturbed) and per alternating pair (same moment, same load)."""
  out = {}
  for phase in ('train', 'infer'):
    out[f'{phase}_ratio'] = (ours[f'{phase}_images_per_s']
                             / torch[f'{phase}_images_per_s'])
    out[f'{phase}_ratio_best'] = (ours[f'{phase}_best_images_per_s']
                                  / torch[f'{phase}_best_images_per_s'])
    out[f'{phase}_ratio_runs'] = [
        a / b for a, b in zip(ours[f'{phase}_runs'], torch[f'{phase}_runs'])]
  return out


def run(opts: Settings) -> Dict[str, Any]:
  """Measures what `opts` asks for; returns every figure (JSON-ready)."""
  variant, variants = _variants(opts)
  result = _header(opts)
  matmul_size = opts.matmul_size or (2048 if jax.default_backend() == 'cpu'
                                     else 8192)
  peak = matmul_peak_flops(jnp.dtype(opts.dtype), matmul_size)
  result['matmul_peak_tflops'] = peak / 1e12
  memory = PeakMemory(jax.devices()[0])
  result['memory_source'] = memory.source

  benches = {v: _prepare_ours(opts, v, memory) for v in variants}
  if opts.peer == 'torchvision':
    benches['torch'] = _prepare_torch(opts, memory)
    result['torch'] = benches['torch'].torch.__version__
    result['torch_settings'] = benches['torch'].settings
    result['torch_train_step'] = TORCH_TRAIN_STEP

  kw = dict(repeats=opts.repeats, steps=opts.steps,
            batch_size=opts.batch_size)
  train_runs = _time_runs(benches, 'train', **kw)
  infer_runs = (_time_runs(benches, 'infer', **kw) if not opts.skip_infer
                else {k: [float('nan')] for k in benches})
  for name, bench in benches.items():
    result[_entry_key(name)] = _entry(name, bench, train_runs[name],
                                      infer_runs[name])
  for v in variants:
    _add_mfu(result[_entry_key(v)], result[_entry_key(v)], peak=peak,
             batch_size=opts.batch_size)
  if 'torch' in benches:
    ours = result[_entry_key(variant)]
    # torchvision's network is our torchvision variant: the same FLOPs.
    if variant == 'torchvision':
      _add_mfu(result['torch'], ours, peak=peak, batch_size=opts.batch_size)
    result.update(_ratios(ours, result['torch']))
  return result


def format_table(result: Dict[str, Any]) -> str:
  rows = [(k, v) for k, v in result.items()
          if isinstance(v, dict) and 'train_images_per_s' in v]
  head = (f'{"model":<58} {"train img/s":>11} {"infer img/s":>11} '
          f'{"compile s":>9} {"peak MiB":>9} {"train MFU":>9} {"infer MFU":>9}')
  lines = [
      f'backend={result["backend"]} device={result["device"]} '
      f'cpus={result["num_cpus"]} dtype={result["dtype"]} '
      f'batch={result["batch_size"]} image={result["image_size"]} '
      f'matmul peak={result["matmul_peak_tflops"] * 1e3:.1f} GFLOP/s',
      f'memory: {result["memory_source"]}', head, '-' * len(head)]
  for _, e in rows:
    mfu_t = e.get('train_mfu', float('nan'))
    mfu_i = e.get('infer_mfu', float('nan'))
    lines.append(
        f'{e["label"][:58]:<58} {e["train_images_per_s"]:>11.2f} '
        f'{e["infer_images_per_s"]:>11.2f} {e["compile_s"]:>9.1f} '
        f'{e["peak_memory_bytes"] / 2**20:>9.0f} {mfu_t:>9.1%} {mfu_i:>9.1%}')
  if 'train_ratio' in result:
    lines.append('both train steps: aux losses, SGD momentum + L2 decay, '
                 'Polyak average, finite guard')
    lines.append(f'ours/torchvision (same network): train '
                 f'{result["train_ratio"]:.2f}x, infer '
                 f'{result["infer_ratio"]:.2f}x (medians); best runs: train '
                 f'{result["train_ratio_best"]:.2f}x, infer '
                 f'{result["infer_ratio_best"]:.2f}x')
  return '\n'.join(lines)


def main(argv) -> None:
  del argv
  from absl import flags  # pylint: disable=g-import-not-at-top
  f = flags.FLAGS
  result = run(Settings(**{field.name: f[field.name].value
                           for field in dataclasses.fields(Settings)}))
  print(format_table(result))
  sys.stdout.flush()
  print(json.dumps(result, default=float))


if __name__ == '__main__':
  from inception_jax import cli  # pylint: disable=g-import-not-at-top
  cli.run(main, define_flags)
