"""Training and inference throughput of GoogLeNet, optionally against torchvision.

    python -m inception_jax.benchmark --image_size=224 --batch_size=32 \\
        --dtype=float32 --peer=torchvision

On whatever backend JAX has, measures for our model:

* training images/s: one jitted train step (forward in training mode with the
  auxiliary heads, softmax cross-entropy + 0.3 x each auxiliary loss,
  backward, SGD momentum 0.9 update with optax), the state donated;
* inference images/s: the jitted eval forward (no auxiliary heads);
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

The last line printed is one JSON object with every figure, including
``train_ratio`` and ``infer_ratio`` (ours / torchvision images/s).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import statistics
import sys
import time
from typing import Any, Callable, Dict, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax

from inception_jax import flops as flops_lib
from inception_jax.models import googlenet

AUX_WEIGHT = 0.3
MOMENTUM = 0.9
LEARNING_RATE = 0.01


def _bool(value: str) -> bool:
  if value.lower() in ('1', 'true', 'yes', 'on'):
    return True
  if value.lower() in ('0', 'false', 'no', 'off'):
    return False
  raise argparse.ArgumentTypeError(f'not a boolean: {value!r}')


def parse_args(argv=None) -> argparse.Namespace:
  p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  p.add_argument('--image_size', type=int, default=224)
  p.add_argument('--batch_size', type=int, default=32)
  p.add_argument('--dtype', default='float32', choices=('float32', 'bfloat16'))
  p.add_argument('--peer', default='none', choices=('none', 'torchvision'))
  p.add_argument('--module', default='reduced', choices=googlenet.MODULES)
  p.add_argument('--aux', type=_bool, default=True)
  p.add_argument('--norm', default=None, choices=googlenet.NORMS,
                 help='default: batchnorm for variant=torchvision, lrn '
                      'for the paper')
  p.add_argument('--variant', default=None, choices=googlenet.VARIANTS,
                 help='default: torchvision when --peer=torchvision (like '
                      'for like), else paper')
  p.add_argument('--also_paper', type=_bool, default=False,
                 help='with --peer: also measure the paper variant')
  p.add_argument('--width', type=float, default=1.0)
  p.add_argument('--num_classes', type=int, default=1000)
  p.add_argument('--repeats', type=int, default=5)
  p.add_argument('--steps', type=int, default=2,
                 help='steps per timed run')
  p.add_argument('--warmup', type=int, default=2)
  p.add_argument('--matmul_size', type=int, default=None,
                 help='side of the square matmul timed for the peak; '
                      'default 2048 on CPU, 8192 on accelerators')
  p.add_argument('--max_pool', default='custom', choices=('custom', 'xla'),
                 help="'xla': plain reduce_window max pool, whose gradient "
                      "is XLA's select_and_scatter (for before/after figures)")
  p.add_argument('--conv_grad', default='im2col', choices=('im2col', 'xla'),
                 help="'xla': XLA's own gradients for every convolution, "
                      "also the large-map ones layers.conv_general_dilated "
                      "gives im2col gradients on the CPU")
  p.add_argument('--skip_infer', type=_bool, default=False)
  p.add_argument('--torch_compile', type=_bool, default=None,
                 help='default: on for CUDA, off on CPU')
  return p.parse_args(argv)


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

def cross_entropy(logits, labels, num_classes):
  return optax.softmax_cross_entropy(
      logits.astype(jnp.float32), jax.nn.one_hot(labels, num_classes)).mean()


class JaxBench:
  """Our model's jitted train step and eval forward on fixed random data."""

  def __init__(self, *, image_size, batch_size, dtype, module, aux, norm,
               variant, width, num_classes, transform_input=None,
               max_pool_grad='stencil', conv_grad='im2col'):
    self.batch_size = batch_size
    self.num_classes = num_classes
    self.model = googlenet.create_model(
        num_classes=num_classes, module=module, aux=aux, norm=norm,
        variant=variant, width=width, dtype=dtype,
        transform_input=transform_input, max_pool_grad=max_pool_grad,
        conv_grad=conv_grad)
    self.label = (f'ours ({variant}, {self.model.norm}, {module}, '
                  f'aux={aux}, width={width})')
    rng = jax.random.PRNGKey(0)
    variables = googlenet.init_variables(self.model, rng, image_size)
    self.has_bn = 'batch_stats' in variables
    self.tx = optax.sgd(LEARNING_RATE, momentum=MOMENTUM)
    self.state = {
        'params': variables['params'],
        'batch_stats': variables.get('batch_stats', {}),
        'opt_state': self.tx.init(variables['params']),
        'rng': jax.random.PRNGKey(1),
    }
    self.images = jax.random.normal(
        jax.random.PRNGKey(2), (batch_size, image_size, image_size, 3),
        jnp.float32)
    self.labels = jax.random.randint(jax.random.PRNGKey(3), (batch_size,), 0,
                                     num_classes)
    self._train = jax.jit(self._train_step, donate_argnums=0)
    self._eval = jax.jit(self._eval_forward)
    self.compile_s = None
    self.eval_compile_s = None

  def forward_train(self, params, batch_stats, images, rng):
    variables = {'params': params}
    if self.has_bn:
      variables['batch_stats'] = batch_stats
      (logits, aux), updates = self.model.apply(
          variables, images, train=True, rngs={'dropout': rng},
          mutable=['batch_stats'])
      return logits, aux, updates['batch_stats']
    logits, aux = self.model.apply(variables, images, train=True,
                                   rngs={'dropout': rng})
    return logits, aux, batch_stats

  def _train_step(self, state, images, labels):
    rng, dropout_rng = jax.random.split(state['rng'])

    def loss_fn(params):
      logits, aux, batch_stats = self.forward_train(
          params, state['batch_stats'], images, dropout_rng)
      loss = cross_entropy(logits, labels, self.num_classes)
      for a in aux:
        loss = loss + AUX_WEIGHT * cross_entropy(a, labels, self.num_classes)
      return loss, batch_stats

    (loss, batch_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        state['params'])
    updates, opt_state = self.tx.update(grads, state['opt_state'],
                                        state['params'])
    params = optax.apply_updates(state['params'], updates)
    return {'params': params, 'batch_stats': batch_stats,
            'opt_state': opt_state, 'rng': rng}, loss

  def _eval_forward(self, state, images):
    variables = {'params': state['params']}
    if self.has_bn:
      variables['batch_stats'] = state['batch_stats']
    logits, _ = self.model.apply(variables, images, train=False)
    return logits

  def compile(self):
    t = time.perf_counter()
    self._train = self._train.lower(self.state, self.images,
                                    self.labels).compile()
    self.compile_s = time.perf_counter() - t
    t = time.perf_counter()
    self._eval = self._eval.lower(self.state, self.images).compile()
    self.eval_compile_s = time.perf_counter() - t

  def train(self, steps: int):
    loss = None
    for _ in range(steps):
      self.state, loss = self._train(self.state, self.images, self.labels)
    jax.block_until_ready((self.state, loss))

  def infer(self, steps: int):
    out = None
    for _ in range(steps):
      out = self._eval(self.state, self.images)
    jax.block_until_ready(out)

  def forward_macs(self) -> Dict[str, int]:
    s = self.state
    train = flops_lib.count_macs(
        lambda p, b, x, r: self.forward_train(p, b, x, r)[:2],
        s['params'], s['batch_stats'], self.images, s['rng'])
    infer = flops_lib.count_macs(self._eval_forward_abstract, s, self.images)
    return {'train_forward_macs': train, 'infer_forward_macs': infer}

  def _eval_forward_abstract(self, state, images):
    return self._eval_forward(state, images)


# --- torchvision --------------------------------------------------------------

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


def run(args: argparse.Namespace) -> Dict[str, Any]:
  device = jax.devices()[0]
  dtype = jnp.dtype(args.dtype)
  variant = args.variant or ('torchvision' if args.peer == 'torchvision'
                             else 'paper')
  configs = [variant]
  if args.peer == 'torchvision' and args.also_paper and 'paper' not in configs:
    configs.append('paper')

  result: Dict[str, Any] = {
      'date': datetime.datetime.now().isoformat(timespec='seconds'),
      'backend': jax.default_backend(),
      'device': device.device_kind,
      'num_cpus': os.cpu_count(),
      'platform': platform.platform(),
      'jax': jax.__version__,
      'xla_flags': os.environ.get('XLA_FLAGS', ''),
      'image_size': args.image_size, 'batch_size': args.batch_size,
      'dtype': args.dtype, 'module': args.module, 'aux': args.aux,
      'width': args.width, 'repeats': args.repeats, 'steps': args.steps,
      'warmup': args.warmup, 'max_pool': args.max_pool,
      'conv_grad': args.conv_grad,
      'flops_convention': ('3 x forward multiply-adds (convs + matmuls of the '
                           'training forward, aux heads included, from the '
                           'jaxpr) x 2 FLOPs/MAC; inference 1 x forward'),
  }
  matmul_size = args.matmul_size or (2048 if jax.default_backend() == 'cpu'
                                     else 8192)
  peak = matmul_peak_flops(dtype, matmul_size)
  result['matmul_peak_tflops'] = peak / 1e12

  memory = PeakMemory(device)
  result['memory_source'] = memory.source

  benches: Dict[str, Any] = {}
  for v in configs:
    norm = args.norm
    if v == 'torchvision':
      norm = 'batchnorm'
    elif norm is None:
      norm = 'lrn'
    if args.peer == 'torchvision' and v == 'torchvision':
      transform_input = False  # torchvision's googlenet(weights=None) default
    else:
      transform_input = None
    memory.start()
    bench = JaxBench(image_size=args.image_size, batch_size=args.batch_size,
                     dtype=dtype, module=args.module, aux=args.aux, norm=norm,
                     variant=v, width=args.width, num_classes=args.num_classes,
                     transform_input=transform_input,
                     max_pool_grad=('xla' if args.max_pool == 'xla'
                                    else 'stencil'),
                     conv_grad=args.conv_grad)
    bench.compile()
    bench.train(args.warmup)
    if not args.skip_infer:
      bench.infer(args.warmup)
    bench.peak_bytes = memory.stop()
    benches[v] = bench
  if args.peer == 'torchvision':
    memory.start()
    peer = TorchBench(image_size=args.image_size, batch_size=args.batch_size,
                      dtype=args.dtype, num_classes=args.num_classes,
                      compile_model=args.torch_compile)
    peer.compile()
    peer.train(max(0, args.warmup - 1))
    if not args.skip_infer:
      peer.infer(args.warmup)
    peer.peak_bytes = memory.stop()
    if peer.device.type == 'cuda':  # torch's own allocator, not JAX's stats
      peer.peak_bytes = int(peer.torch.cuda.max_memory_allocated())
    benches['torch'] = peer
    result['torch'] = peer.torch.__version__
    result['torch_settings'] = peer.settings

  kw = dict(repeats=args.repeats, steps=args.steps,
            batch_size=args.batch_size)
  train_runs = _time_runs(benches, 'train', **kw)
  infer_runs = (_time_runs(benches, 'infer', **kw) if not args.skip_infer
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
    e['train_mfu'] = (e['train_step_flops'] / args.batch_size
                      * e['train_images_per_s'] / peak)
    e['infer_mfu'] = (2 * ref['infer_forward_macs'] / args.batch_size
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


def main(argv=None) -> None:
  args = parse_args(argv)
  result = run(args)
  print(format_table(result))
  sys.stdout.flush()
  print(json.dumps(result, default=float))


if __name__ == '__main__':
  main()
