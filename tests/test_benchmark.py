"""The benchmark measures the trainer's steps end to end (tiny sizes only)."""

import json
import os
import subprocess
import sys

import pytest

from inception_jax import benchmark
from inception_jax.models import layers

# Tiny and quick; a multiple of the 8 test devices (conftest.py).
TINY = dict(image_size=32, batch_size=8, num_classes=10, repeats=1, steps=1,
            warmup=1, matmul_size=128)
KEYS = ('train_ratio', 'infer_ratio', 'matmul_peak_tflops', 'memory_source',
        'flops_convention', 'ours_torchvision', 'torch', 'optimizer')
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
  assert ours['model']['variant'] == 'torchvision'
  assert (ours['model']['max_pool_grad'], ours['model']['conv_grad']) == (
      'stencil', 'im2col')
  assert 'ours/torchvision' in benchmark.format_table(result)


def test_benchmark_reference_switches_set_the_model():
  """--max_pool=xla / --conv_grad=xla measure the plain formulations."""
  result = benchmark.run(benchmark.Settings(
      **TINY, width=0.0625, skip_infer=True, max_pool='xla',
      conv_grad='xla'))
  assert (result['max_pool'], result['conv_grad']) == ('xla', 'xla')
  model = result['ours_paper']['model']
  assert (model['max_pool_grad'], model['conv_grad']) == ('xla', 'xla')
  # Model attributes, not module globals, carry the switch.
  assert layers.max_pool is not layers.max_pool_reference


def test_benchmark_command_line():
  """The absl command, as README and benchmarks.md print it (tiny sizes)."""
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  proc = subprocess.run(
      [sys.executable, '-m', 'inception_jax.benchmark', '--image_size=32',
       '--width=0.0625', '--batch_size=8', '--repeats=1', '--steps=1',
       '--warmup=1', '--matmul_size=128', '--aux=False', '--skip_infer=True',
       '--num_classes=10'],
      cwd=root, capture_output=True, text=True, timeout=600, check=False)
  assert proc.returncode == 0, proc.stderr[-2000:]
  result = json.loads(proc.stdout.strip().splitlines()[-1])
  assert result['aux'] is False
  assert result['ours_paper']['model']['aux'] is False
  assert result['ours_paper']['train_images_per_s'] > 0
  bad = subprocess.run(
      [sys.executable, '-m', 'inception_jax.benchmark', '--max_pool=scatter'],
      cwd=root, capture_output=True, text=True, timeout=600, check=False)
  assert bad.returncode != 0 and 'max_pool' in bad.stderr
