"""The benchmark runs end to end (tiny sizes only)."""

import json

import pytest

from inception_jax import benchmark
from inception_jax.models import layers

KEYS = ('train_ratio', 'infer_ratio', 'matmul_peak_tflops', 'memory_source',
        'flops_convention', 'ours_torchvision', 'torch')
ENTRY_KEYS = ('train_images_per_s', 'infer_images_per_s', 'compile_s',
              'peak_memory_bytes', 'train_mfu', 'infer_mfu',
              'train_step_flops')


def test_benchmark_end_to_end_tiny(capsys):
  pytest.importorskip('torchvision')
  benchmark.main([
      '--image_size=32', '--batch_size=2', '--width=0.125',
      '--num_classes=10', '--peer=torchvision', '--repeats=1', '--steps=1',
      '--warmup=1', '--matmul_size=128'])
  out = capsys.readouterr().out.strip().splitlines()
  result = json.loads(out[-1])
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
  assert any('ours/torchvision' in line for line in out[:-1])


def test_benchmark_reference_switches(capsys):
  """--max_pool=xla / --conv_grad=xla measure the plain formulations."""
  benchmark.main([
      '--image_size=32', '--batch_size=1', '--width=0.0625',
      '--num_classes=10', '--repeats=1', '--steps=1', '--warmup=1',
      '--matmul_size=128', '--skip_infer=True', '--max_pool=xla',
      '--conv_grad=xla'])
  result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
  assert (result['max_pool'], result['conv_grad']) == ('xla', 'xla')
  # Model attributes, not module globals, carry the switch.
  assert layers.max_pool is not layers.max_pool_reference
