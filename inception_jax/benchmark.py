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
CPU; bf16 autocast, channels_last and ``torch.compile`` on GPU), and the timed
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

import dataclasses
import datetime
import json
import os
import platform
import resource
import statistics
import sys
import time
from typing import Any, Dict, Optional

import jax
import jax.numpy as jnp
import numpy as np

from inception_jax import config as config_lib
from inception_jax import flops as flops_lib
from inception_jax import mesh as mesh_lib
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
    tx, self._train = steps_lib.make_update(
        self.model, opt, num_classes=num_classes, batch_size=batch_size,
        steps_per_epoch=1, total_steps=max(1, total_steps), mesh=self.mesh)
    self.state = steps_lib.create_train_state(
        self.model, tx, seed=SEED, image_size=image_size, mesh=self.mesh)
    self._eval = steps_lib.make_eval_step(self.model, num_classes, self.mesh)
    rng = np.random.RandomState(SEED + 2)
    images = rng.standard_normal(
        (batch_size, image_size, image_size, 3)).astype(np.float32)
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
    images = self.batch['image']

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

# torchvision's step: the same loss, SGD with momentum at the training
# configs' base rate; no weight decay or weight averaging (its ordinary
# settings).
AUX_WEIGHT = 0.3
MOMENTUM = 0.9
LEARNING_RATE = 0.01

class TorchBench:
  """torchvision's googlenet with its best ordinary settings on this device."""

  def __init__(self, *, image_size, batch_size, dtype, num_classes,
               compile_model: Optional[bool]):
    import torch  # pylint: disable=import-outside-toplevel
    import torchvision  # pylint: disable=import-outside-toplevel
    self.torch = torch
    self.device = torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    cuda = self.device.type == 'cuda'
    self.compiled = cuda if compile_model is None else compile_model
    torch.manual_seed(0)
    model = torchvision.models.googlenet(weights=None, aux_logits=True,
                                         init_weights=False,
                                         num_classes=num_classes)
    model = model.to(self.device, memory_format=torch.channels_last)
    self.model = model
    self.opt = torch.optim.SGD(model.parameters(), lr=LEARNING_RATE,
                               momentum=MOMENTUM)
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
    self._fwd_train = torch.compile(model) if self.compiled else model
    self._fwd_eval = self._fwd_train
    self.compile_s = None

  def _autocast(self):
    return self.torch.autocast(self.device.type, dtype=self.torch.bfloat16,
                               enabled=self.autocast)

  def _sync(self):
    if self.device.type == 'cuda':
      self.torch.cuda.synchronize()

  def _train_step(self):
    f = self.torch.nn.functional
    self.model.train()
    self.opt.zero_grad(set_to_none=True)
    with self._autocast():
      out = self._fwd_train(self.images)
      logits, aux2, aux1 = out.logits, out.aux_logits2, out.aux_logits1
      loss = (f.cross_entropy(logits.float(), self.labels)
              + AUX_WEIGHT * f.cross_entropy(aux1.float(), self.labels)
              + AUX_WEIGHT * f.cross_entropy(aux2.float(), self.labels))
    loss.backward()
    self.opt.step()
    return loss

  def compile(self):
    t = time.perf_counter()
    self._train_step()
    self._sync()
    self.compile_s = time.perf_counter() - t  # first step (compile if any)

  def train(self, steps: int):
    loss = None
    for _ in range(steps):
      loss = self._train_step()
    if loss is not None:
      float(loss.detach())
    self._sync()

  def infer(self, steps: int):
    self.model.eval()
    out = None
    with self.torch.inference_mode(), self._autocast():
      for _ in range(steps):
        out = self._fwd_eval(self.images)
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


def run(opts: Settings) -> Dict[str, Any]:
  """Measures what `opts` asks for; returns every figure (JSON-ready)."""
  device = jax.devices()[0]
  dtype = jnp.dtype(opts.dtype)
  variant = opts.variant or ('torchvision' if opts.peer == 'torchvision'
                             else 'paper')
  configs = [variant]
  if opts.peer == 'torchvision' and opts.also_paper and 'paper' not in configs:
    configs.append('paper')

  result: Dict[str, Any] = {
      'date': datetime.datetime.now().isoformat(timespec='seconds'),
      'backend': jax.default_backend(),
      'device': device.device_kind,
      'num_cpus': os.cpu_count(),
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
  matmul_size = opts.matmul_size or (2048 if jax.default_backend() == 'cpu'
                                     else 8192)
  peak = matmul_peak_flops(dtype, matmul_size)
  result['matmul_peak_tflops'] = peak / 1e12

  memory = PeakMemory(device)
  result['memory_source'] = memory.source

  benches: Dict[str, Any] = {}
  for v in configs:
    norm = opts.norm
    if v == 'torchvision':
      norm = 'batchnorm'
    elif norm is None:
      norm = 'lrn'
    if opts.peer == 'torchvision' and v == 'torchvision':
      transform_input = False  # torchvision's googlenet(weights=None) default
    else:
      transform_input = None
    memory.start()
    bench = JaxBench(image_size=opts.image_size, batch_size=opts.batch_size,
                     dtype=dtype, module=opts.module, aux=opts.aux, norm=norm,
                     variant=v, width=opts.width, num_classes=opts.num_classes,
                     transform_input=transform_input,
                     max_pool_grad=MAX_POOL_GRAD[opts.max_pool],
                     conv_grad=opts.conv_grad,
                     total_steps=opts.warmup + 1 + opts.repeats * opts.steps)
    bench.compile()
    bench.train(opts.warmup)
    if not opts.skip_infer:
      bench.infer(opts.warmup)
    bench.peak_bytes = memory.stop()
    benches[v] = bench
  if opts.peer == 'torchvision':
    memory.start()
    peer = TorchBench(image_size=opts.image_size,
                      batch_size=opts.batch_size,
                      dtype=opts.dtype, num_classes=opts.num_classes,
                      compile_model=opts.torch_compile)
    peer.compile()
    peer.train(max(0, opts.warmup - 1))
    if not opts.skip_infer:
      peer.infer(opts.warmup)
    peer.peak_bytes = memory.stop()
    if peer.device.type == 'cuda':  # torch's own allocator, not JAX's stats
      peer.peak_bytes = int(peer.torch.cuda.max_memory_allocated())
    benches['torch'] = peer
    result['torch'] = peer.torch.__version__
    result['torch_settings'] = peer.settings

  kw = dict(repeats=opts.repeats, steps=opts.steps,
            batch_size=opts.batch_size)
  train_runs = _time_runs(benches, 'train', **kw)
  infer_runs = (_time_runs(benches, 'infer', **kw) if not opts.skip_infer
                else {k: [float('nan')] for k in benches})

  for name, bench in benches.items():
    key = 'torch' if name == 'torch' else f'ours_{name}'
    entry = {
        'label': ('torchvision googlenet (' + bench.settings + ')'
                  if name == 'torch' else bench.label),
        'train_images_per_s': statistics.median(train_runs[name]),
        'train_best_images_per_s': max(train_runs[name]),
        'train_runs': train_runs[name],
        'infer_images_per_s': statistics.median(infer_runs[name]),
        'infer_best_images_per_s': max(infer_runs[name]),
        'infer_runs': infer_runs[name],
        'compile_s': bench.compile_s,
        'peak_memory_bytes': bench.peak_bytes,
    }
    if name != 'torch':
      entry['model'] = googlenet.model_kwargs(bench.model)
      entry['eval_compile_s'] = bench.eval_compile_s
      entry.update(bench.forward_macs())
    result[key] = entry

  # MFU of every entry against the same matmul peak; torchvision's network is
  # our torchvision variant, so it shares that variant's FLOPs.
  for name in benches:
    key = 'torch' if name == 'torch' else f'ours_{name}'
    ref = result[f'ours_{variant if name == "torch" else name}']
    if name == 'torch' and variant != 'torchvision':
      continue
    e = result[key]
    e['train_step_flops'] = 3 * 2 * ref['train_forward_macs']  # per batch
    e['train_mfu'] = (e['train_step_flops'] / opts.batch_size
                      * e['train_images_per_s'] / peak)
    e['infer_mfu'] = (2 * ref['infer_forward_macs'] / opts.batch_size
                      * e['infer_images_per_s'] / peak)

  if 'torch' in benches:
    ours = result[f'ours_{variant}']
    result['train_ratio'] = (ours['train_images_per_s']
                             / result['torch']['train_images_per_s'])
    result['infer_ratio'] = (ours['infer_images_per_s']
                             / result['torch']['infer_images_per_s'])
    # Best run over best run: on a shared machine the least disturbed runs.
    result['train_ratio_best'] = (ours['train_best_images_per_s']
                                  / result['torch']['train_best_images_per_s'])
    result['infer_ratio_best'] = (ours['infer_best_images_per_s']
                                  / result['torch']['infer_best_images_per_s'])
    # Ratios per alternating run pair (same moment, same machine load).
    result['train_ratio_runs'] = [
        a / b for a, b in zip(train_runs[variant], train_runs['torch'])]
    result['infer_ratio_runs'] = [
        a / b for a, b in zip(infer_runs[variant], infer_runs['torch'])]
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
