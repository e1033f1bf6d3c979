"""Test-wide settings, helpers and the one tiny trained workdir.

Every test process sees 8 simulated CPU devices, so the sharded code paths
(mesh, batch sharding, padded evaluation) are exercised on a machine with one
CPU. This must happen before JAX starts a backend.

Tests that need a trained run share `tiny_run`: the README's training command
on the `:runlocal` config (6 steps of a width-1/16 model at 32x32, checkpoints
at steps 3 and 6), trained once per session by the real command line; with
pytest-xdist's worker processes (`make test` runs two) the first worker to
ask trains it under a file lock and the others read the same workdir (tests
copy it before changing anything).
The test process and its subprocesses share a persistent compilation cache
and compile with `FAST_XLA_FLAGS` (helpers.py: much faster compiles; the
numbers' agreement is what is tested, not their speed).
"""
import os

# JAX and TensorFlow read these when they are imported.
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')
os.environ.setdefault('JAX_PLATFORMS', 'cpu')
# In-process training runs (the trainer's seams) reuse compilations.
os.environ.setdefault('JAX_COMPILATION_CACHE_DIR',
                      f'/tmp/inception_jax_test_cache_{os.getuid()}')
os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS', '0')

# torchvision pulls in triton, whose bundled LLVM crashes the process
# (segmentation fault) when TensorFlow's is already loaded; TensorFlow loaded
# after it is fine. Test modules import both, in an order that depends on
# collection, so fix the order here.
import torchvision  # pylint: disable=unused-import,wrong-import-position

# pylint: disable=g-import-not-at-top,g-bad-import-order
import filelock
import pytest

# Importing the helpers imports JAX but starts no backend.
from tests.helpers import FAST_XLA_FLAGS, TINY_CONFIG, run_main, saved_steps

# XLA reads its flags when JAX starts a backend, not at import.
os.environ.setdefault('XLA_FLAGS', '--xla_force_host_platform_device_count=8 '
                      + FAST_XLA_FLAGS)


@pytest.fixture(scope='session')
def tiny_run(tmp_path_factory, worker_id) -> str:
  """The `:runlocal` run, trained once by the command line on 8 devices."""
  root = tmp_path_factory.getbasetemp()
  if worker_id != 'master':  # Every xdist worker's base has one parent.
    root = root.parent
  path = str(root / 'tiny_run' / 'workdir')
  with filelock.FileLock(str(root / 'tiny_run.lock')):
    if not os.path.exists(os.path.join(path, 'summary.json')):
      result = run_main([f'--config={TINY_CONFIG}', f'--workdir={path}'],
                        timeout=900)
      assert result.returncode == 0, result.stderr[-3000:]
  assert saved_steps(path) == [3, 6]
  return path
