"""What a user does, as a user does it: the commands in a subprocess, from a
current directory of their own, with relative paths.

train -> SIGTERM -> resume (from another directory, with the absolute
workdir) -> evaluate -> predict -> export -> load.
"""

import gzip
import json
import os
import signal
import subprocess
import sys

import numpy as np
from PIL import Image

from tests.helpers import REPO, TINY_CONFIG, run_python, subprocess_env

FASHION_MNIST_TEST_IMAGES = (
    '/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz')
# 12 steps, logged and saved every 2, so a SIGTERM after the first log line
# lands mid-run.
TRAIN = ['-m', 'inception_jax.main', f'--config={TINY_CONFIG}',
         '--config.total_steps=12', '--config.log_every_steps=2',
         '--config.checkpoint_every_steps=2', '--config.eval_batch_size=64',
         '--config.data.eval_split=test[:64]', '--workdir=runs/user']


def _user_dir(tmp_path):
  home = tmp_path / 'me'
  home.mkdir()
  os.symlink(os.path.join(REPO, 'configs'), home / 'configs')
  with gzip.open(FASHION_MNIST_TEST_IMAGES, 'rb') as f:
    images = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28, 28)
  Image.fromarray(images[0]).save(home / 'ankle_boot.png')
  return home


def test_train_sigterm_resume_evaluate_predict_export_load(tmp_path):
  home = _user_dir(tmp_path)

  # Train, and stop it with SIGTERM after the first progress line.
  proc = subprocess.Popen([sys.executable, *TRAIN], cwd=home,
                          env=subprocess_env(), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True)
  try:
    for line in proc.stdout:
      if line.startswith('step '):
        break
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=300)
  finally:
    if proc.poll() is None:
      proc.kill()
  assert proc.returncode == 0, err[-3000:]
  assert 'SIGTERM: saved a checkpoint at step' in out, out
  saved = int(out.split('saved a checkpoint at step ')[1].split()[0])
  workdir = home / 'runs' / 'user'
  assert str(workdir) in out  # the relative workdir, made absolute
  assert (workdir / 'checkpoints' / str(saved)).is_dir()
  assert saved < 12 and not (workdir / 'summary.json').exists()

  # Resume from another directory, naming the same workdir absolutely.
  elsewhere = tmp_path / 'elsewhere'
  elsewhere.mkdir()
  os.symlink(os.path.join(REPO, 'configs'), elsewhere / 'configs')
  args = TRAIN[:-1] + [f'--workdir={workdir}']
  resumed = run_python(args, cwd=elsewhere)
  assert resumed.returncode == 0, resumed.stderr[-3000:]
  assert f'Resuming from the checkpoint at step {saved}' in resumed.stdout
  summary = json.loads((workdir / 'summary.json').read_text())
  assert summary['step'] == 12 and summary['eval/num_examples'] == 64

  # Evaluate, predict and export with relative paths, from the first
  # directory.
  evaluated = run_python(['-m', 'inception_jax.evaluate',
                          '--workdir=runs/user', '--crops=10'], cwd=home)
  assert evaluated.returncode == 0, evaluated.stderr[-3000:]
  result = json.loads((workdir / 'eval_test_64_10crop.json').read_text())
  assert result['eval/num_examples'] == 64 and result['step'] == 12

  predicted = run_python(['-m', 'inception_jax.predict',
                          '--checkpoint=runs/user', 'ankle_boot.png'],
                         cwd=home, devices=1)
  assert predicted.returncode == 0, predicted.stderr[-3000:]
  lines = predicted.stdout.strip().splitlines()
  assert lines[0] == 'ankle_boot.png:' and len(lines) == 6

  exported = run_python(['-m', 'inception_jax.export',
                         '--checkpoint=runs/user', '--out=exports/user'],
                        cwd=home, devices=1)
  assert exported.returncode == 0, exported.stderr[-3000:]
  assert (home / 'exports' / 'user' / 'model.json').exists()

  loaded = run_python(['-c', (
      'import inception_jax, jax\n'
      "r = inception_jax.load('exports/user')\n"
      "t = inception_jax.load('runs/user')\n"
      'same = jax.tree.map(lambda a, b: bool((a == b).all()), r.variables,'
      ' t.variables)\n'
      'print(r.kind, t.step, all(jax.tree.leaves(same)))')],
                      cwd=home, devices=1)
  assert loaded.returncode == 0, loaded.stderr[-3000:]
  assert loaded.stdout.split() == ['params', '12', 'True']
