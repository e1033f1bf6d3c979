"""The benchmark measures the trainer's steps end to end (tiny sizes only)."""

import copy
import json
import os
import subprocess
import sys

import pytest

from inception_jax import benchmark

# Tiny and quick; a multiple of the 8 test devices (conftest.py).
TINY = dict(image_size=32, batch_size=8, num_classes=10, repeats=1, steps=1,
            warmup=1, matmul_size=128)
KEYS = ('train_ratio', 'infer_ratio', 'matmul_peak_tflops', 'memory_source',
        'flops_convention', 'ours_torchvision', 'torch', 'optimizer',
        'train_ratio_runs', 'infer_ratio_best', 'load_average')
ENTRY_KEYS = ('train_images_per_s', 'infer_images_per_s', 'compile_s',
              'peak_memory_bytes', 'train_mfu', 'infer_mfu',
              'train_step_flops')


def test_benchmark_end_to_end_tiny():
  pytest.importorskip('torchvision')
  result = benchmark.run(benchmark.Settings(
      **TINY, width=0.125, peer='torchvision'))
  json.dumps(result, default=float)  # what the command prints
  for key in KEYS:
    assert key in result, key
  for entry in (result['ours_torchvision'], result['torch']):
    for key in ENTRY_KEYS:
      assert key in entry, key
    assert entry['train_images_per_s'] > 0
    assert entry['infer_images_per_s'] > 0
  ours = result['ours_torchvision']
  assert ours['train_forward_macs'] > ours['infer_forward_macs'] > 0
  assert result['train_ratio'] > 0 and result['infer_ratio'] > 0
  # The trainer's optimiser, not a benchmark-only one.
  assert result['optimizer']['weight_decay'] > 0
  assert result['optimizer']['polyak_decay'] > 0
  # torchvision's side trains with the same work (TorchTrainStep, tested
  # below), and the output says so.
  assert 'TorchTrainStep' in result['torch_train_step']
  assert ours['model']['variant'] == 'torchvision'
  assert (ours['model']['max_pool_grad'], ours['model']['conv_grad']) == (
      'stencil', 'im2col')
  assert 'ours/torchvision' in benchmark.format_table(result)


def test_benchmark_command_line():
  """The absl command, as README and benchmarks.md print it (tiny sizes);
  --max_pool=xla / --conv_grad=xla measure the plain formulations, set on
  the model (the in-process run above measures the defaults)."""
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  proc = subprocess.run(
      [sys.executable, '-m', 'inception_jax.benchmark', '--image_size=32',
       '--width=0.0625', '--batch_size=8', '--repeats=1', '--steps=1',
       '--warmup=1', '--matmul_size=128', '--aux=False', '--skip_infer=True',
       '--num_classes=10', '--max_pool=xla', '--conv_grad=xla'],
      cwd=root, capture_output=True, text=True, timeout=600, check=False)
  assert proc.returncode == 0, proc.stderr[-2000:]
  result = json.loads(proc.stdout.strip().splitlines()[-1])
  assert result['aux'] is False
  assert result['ours_paper']['model']['aux'] is False
  assert (result['max_pool'], result['conv_grad']) == ('xla', 'xla')
  model = result['ours_paper']['model']
  assert (model['max_pool_grad'], model['conv_grad']) == ('xla', 'xla')
  assert result['ours_paper']['train_images_per_s'] > 0
  bad = subprocess.run(
      [sys.executable, '-m', 'inception_jax.benchmark', '--max_pool=scatter'],
      cwd=root, capture_output=True, text=True, timeout=600, check=False)
  assert bad.returncode != 0 and 'max_pool' in bad.stderr


def _tiny_torch_model(torch):
  """A convolution, BatchNorm and two linear heads: every kind of parameter
  and buffer the decay mask and the Polyak average tell apart."""

  class Tiny(torch.nn.Module):

    def __init__(self):
      super().__init__()
      self.conv = torch.nn.Conv2d(3, 4, 3, bias=True)
      self.bn = torch.nn.BatchNorm2d(4)
      self.head = torch.nn.Linear(4, 5)
      self.aux = torch.nn.Linear(4, 5)

    def forward(self, x):
      h = torch.relu(self.bn(self.conv(x))).mean((2, 3))
      return self.head(h), self.aux(h)

  torch.manual_seed(0)
  return Tiny()


def test_torch_train_step_is_sgd_momentum_l2_and_polyak():
  """Two steps of TorchTrainStep against the update written out by hand."""
  torch = pytest.importorskip('torch')
  opt = benchmark.training_optimizer_config()
  opt.weight_decay = 0.1  # large enough to be seen
  lr = 0.1
  model = _tiny_torch_model(torch)
  reference = copy.deepcopy(model)
  step = benchmark.TorchTrainStep(model, opt, lr=lr)
  ref_params = dict(reference.named_parameters())
  decayed = {'conv.weight', 'head.weight', 'aux.weight'}
  averaged = list(ref_params.values()) + [
      b for b in reference.buffers() if b.is_floating_point()]
  ema = [t.detach().clone() for t in averaged]
  momentum = {}
  gen = torch.Generator().manual_seed(1)
  for t in range(2):
    images = torch.randn(6, 3, 8, 8, generator=gen)
    labels = torch.randint(0, 5, (6,), generator=gen)
    metrics = step(images, labels)
    logits, aux = reference(images)
    f = torch.nn.functional
    loss = (f.cross_entropy(logits, labels)
            + opt.aux_weight * f.cross_entropy(aux, labels))
    grads = torch.autograd.grad(loss, list(ref_params.values()))
    with torch.no_grad():
      for (name, p), g in zip(ref_params.items(), grads):
        d = g + opt.weight_decay * p if name in decayed else g
        momentum[name] = d if t == 0 else opt.momentum * momentum[name] + d
        p -= lr * momentum[name]
      decay = min(opt.polyak_decay, (1 + t) / (10 + t))
      ema = [a + (1 - decay) * (n - a) for a, n in zip(ema, averaged)]
    assert float(metrics['loss']) == pytest.approx(float(loss.detach()),
                                                   rel=1e-5)
  for name, p in model.named_parameters():
    torch.testing.assert_close(p, ref_params[name], rtol=1e-5, atol=1e-6,
                               msg=name)
  assert len(step.ema) == len(ema)
  for got, want in zip(step.ema, ema):
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
  # The average lags the weights (it is not a copy of them).
  assert not torch.allclose(step.ema[0], model.conv.weight)
  assert (step.step, step.nonfinite_steps) == (2, 0)


def test_torch_train_step_skips_a_nonfinite_update():
  torch = pytest.importorskip('torch')
  model = _tiny_torch_model(torch)
  step = benchmark.TorchTrainStep(
      model, benchmark.training_optimizer_config(), lr=0.1)
  before = copy.deepcopy(model.state_dict())
  ema_before = [t.clone() for t in step.ema]
  images = torch.full((4, 3, 8, 8), float('nan'))
  metrics = step(images, torch.zeros(4, dtype=torch.long))
  assert not torch.isfinite(metrics['loss'])
  assert (step.step, step.nonfinite_steps) == (1, 1)
  for name, value in model.state_dict().items():
    if value.is_floating_point():  # BatchNorm's statistics put back too
      torch.testing.assert_close(value, before[name], msg=name)
  for got, want in zip(step.ema, ema_before):
    torch.testing.assert_close(got, want)
