"""Helpers the test modules share: subprocesses, checkpoints, comparisons."""
import io
import json
import math
import os
import subprocess
import tarfile
import sys

import jax
import numpy as np
import orbax.checkpoint as ocp

from inception_jax import caffe
from inception_jax import convert
from inception_jax.models import googlenet

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# What every test process compiles with: XLA's backend optimisation turned
# down and its older elemental emitters instead of the fusion emitters. The
# `:runlocal` training run compiles in about 60% of the CPU time (train step
# 16.5 s -> 10 s on this machine) with the same numbers; tests check agreement,
# not speed.
FAST_XLA_FLAGS = ('--xla_backend_optimization_level=0 '
                  '--xla_cpu_use_fusion_emitters=false')
FAST_COMPILE = {'xla_backend_optimization_level': 0,
                'xla_cpu_use_fusion_emitters': False}
# The `:runlocal` run every trained-workdir test shares.
TINY_CONFIG = 'configs/fashion_mnist.py:runlocal'


def subprocess_env(devices: int = 8, **extra: str) -> dict:
  """`devices` simulated CPUs, fast compiles, a shared compilation cache."""
  env = dict(os.environ)
  env['XLA_FLAGS'] = (f'--xla_force_host_platform_device_count={devices} '
                      f'{FAST_XLA_FLAGS}')
  env['JAX_PLATFORMS'] = 'cpu'
  env['JAX_COMPILATION_CACHE_DIR'] = os.path.join(
      '/tmp', f'inception_jax_test_cache_{os.getuid()}')
  env['JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS'] = '0'
  env['PYTHONUNBUFFERED'] = '1'
  env['TF_CPP_MIN_LOG_LEVEL'] = '3'
  env['PYTHONPATH'] = os.pathsep.join(
      [REPO] + [p for p in [env.get('PYTHONPATH')] if p])
  env.update(extra)
  return env


def run_python(args, *, cwd=REPO, devices: int = 8, timeout: int = 600,
               env=None) -> subprocess.CompletedProcess:
  """`python ARGS` in a subprocess; stdout and stderr captured as text."""
  return subprocess.run([sys.executable, *args], cwd=cwd,
                        env=env or subprocess_env(devices),
                        capture_output=True, text=True, timeout=timeout,
                        check=False)


def run_main(args, **kwargs) -> subprocess.CompletedProcess:
  return run_python(['-m', 'inception_jax.main', *args], **kwargs)


def last_error_line(result: subprocess.CompletedProcess) -> str:
  """The one-line error a command printed: exit 1, no traceback."""
  assert result.returncode == 1, (result.returncode, result.stderr[-3000:])
  assert 'Traceback' not in result.stderr, result.stderr[-3000:]
  lines = result.stderr.strip().splitlines()
  assert lines and lines[-1].startswith('error: '), result.stderr[-2000:]
  return lines[-1]


def restore_state(workdir, step) -> dict:
  """The `state` item of a training checkpoint, as saved (numpy)."""
  path = os.path.join(workdir, 'checkpoints', str(step), 'state')
  with ocp.PyTreeCheckpointer() as ckptr:
    tree = ckptr.metadata(path).item_metadata.tree
    as_numpy = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray),
                            tree)
    return ckptr.restore(path, args=ocp.args.PyTreeRestore(
        restore_args=as_numpy))


def saved_steps(workdir) -> list:
  directory = os.path.join(workdir, 'checkpoints')
  return sorted(int(p) for p in os.listdir(directory) if p.isdigit())


def assert_trees_equal(a, b) -> None:
  """Same structure, dtypes and bits."""
  flat_a = jax.tree_util.tree_leaves_with_path(a)
  flat_b = jax.tree_util.tree_leaves_with_path(b)
  assert [p for p, _ in flat_a] == [p for p, _ in flat_b]
  for (path, x), (_, y) in zip(flat_a, flat_b):
    x, y = np.asarray(x), np.asarray(y)
    assert x.dtype == y.dtype, jax.tree_util.keystr(path)
    np.testing.assert_array_equal(x, y, err_msg=jax.tree_util.keystr(path))




def tiny_config(arg: str = 'runlocal', **overrides):
  """configs/fashion_mnist.py:`arg` with dotted keys overridden."""
  from configs import fashion_mnist  # pylint: disable=g-import-not-at-top
  config = fashion_mnist.get_config(arg)
  for key, value in overrides.items():
    target = config
    *parents, leaf = key.split('.')
    for parent in parents:
      target = target[parent]
    target[leaf] = value
  return config


def tar_bytes(members) -> bytes:
  """An uncompressed tar archive of {name: bytes}, in memory."""
  buffer = io.BytesIO()
  with tarfile.open(fileobj=buffer, mode='w') as tar:
    for name, content in members.items():
      info = tarfile.TarInfo(name)
      info.size = len(content)
      tar.addfile(info, io.BytesIO(content))
  return buffer.getvalue()


def write_image_folder(root, labels=('cat', 'dog')) -> None:
  """FOLDER/{train,val}/<label>/*.png: 8 and 4 random 40x48 images each."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(0)
  for split, count in (('train', 8), ('val', 4)):
    for label in labels:
      os.makedirs(os.path.join(root, split, label))
      for i in range(count):
        pixels = rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(
            os.path.join(root, split, label, f'{i}.png'))


def random_caffe_variables(num_classes: int = 1000, aux: bool = True,
                           seed: int = 0) -> dict:
  """bvlc_googlenet-shaped variables, random with He scaling (activations
  keep Caffe's 0-255 scale, where the LRNs act)."""
  model = googlenet.create_model(**caffe.model_kwargs(num_classes, aux))
  rng = np.random.default_rng(seed)

  def draw(path, leaf):
    if len(leaf.shape) == 1:
      return rng.uniform(-0.1, 0.1, leaf.shape).astype(np.float32)
    fan_in = int(np.prod(leaf.shape[:-1]))
    # Classifiers 100x smaller: logits of about 1, a softmax not saturated.
    scale = 0.01 if jax.tree_util.keystr(path).count('classifier') or (
        'fc2' in jax.tree_util.keystr(path)) else 1.0
    return (rng.standard_normal(leaf.shape) * scale *
            np.sqrt(2.0 / fan_in)).astype(np.float32)

  return jax.tree_util.tree_map_with_path(
      draw, convert.expected_variables(model))


def write_random_caffemodel(path, num_classes: int = 1000, aux: bool = True,
                            v1: bool = False, seed: int = 0) -> dict:
  """A bvlc_googlenet caffemodel with random weights; returns the variables
  it should import as."""
  variables = random_caffe_variables(num_classes, aux, seed)
  with open(path, 'wb') as f:
    f.write(caffe.serialize(caffe.to_caffe(variables, v1=v1)))
  return variables


def assert_tfdata_comparison(output: str, worker_counts=(0, 1)) -> None:
  """What `python -m inception_jax.data.benchmark --dataset=jpeg
  --peer=tfdata` prints: each pipeline timed in a process of its own, with
  and without grain workers, the workers' CPU counted."""
  lines = output.strip().splitlines()
  for w in worker_counts:  # the table's rows, then the JSON line
    name = 'ours_paper' + (f'_{w}_workers' if w else '')
    assert any(l.startswith(f'| {name} | {w} |') for l in lines), name
  figures = json.loads(lines[-1])
  names = {'tfdata'} | {
      f'ours_{work}' + (f'_{w}_workers' if w else '')
      for work in ('same_work', 'paper') for w in worker_counts}
  assert set(figures['pipelines']) == names
  for name, timed in figures['pipelines'].items():
    assert 0 < timed['images_per_cpu_s'] < math.inf, name
    assert 0 < timed['images_per_s'] < math.inf, name
    # The window's CPU, read while the workers ran, is part of what the OS
    # billed for the whole process and its workers once they were reaped.
    for window, whole in zip(timed['rounds_window_cpu_s'],
                             timed['rounds_child_cpu_s']):
      assert 0 < window <= whole, name
    if timed['workers']:
      # The worker decodes and the main process only receives batches: were
      # the worker's CPU not counted, the main process's share would be 1.
      assert timed['main_process_cpu_share'] < 0.6, name
    else:
      assert timed['main_process_cpu_share'] > 0.9, name
  assert set(figures['by_worker_count']) == {str(w) for w in worker_counts}
  for ratios in figures['by_worker_count'].values():
    assert 0 < ratios['same_work_vs_tfdata_per_cpu_s'] < math.inf
    assert 0 < ratios['paper_vs_tfdata_per_cpu_s'] < math.inf
  assert set(figures['decode_only_images_per_cpu_s']) == {
      'whole_opencv', 'whole_tf', 'inception_crop_tf'}
  # The step's part of the paper's augmentation, timed and counted by XLA.
  device = figures['paper_device_part']
  assert device['ms_per_image'] > 0 and device['bytes_per_image'] > 0
  assert device['tpu_v4_estimate_us_per_image'] > 0
  assert any(l.startswith("The paper's colour distortions") for l in lines)
