"""How the project installs: the locked environment, and the wheel.

`make` installs requirements*.lock, made by `make lock` from
requirements*.txt; the locks must hold the direct requirements' pins (a
requirement edited without `make lock` fails here), and the package's
version floors are the same pins.

The package as a library user installs it: the wheel, built from the package
alone, is installed into a fresh virtual environment from its own metadata
(its dependencies at requirements.txt's versions), as `pip install git+...`
does on Colab; uv does the installing where the test environment has it
(`make` installs it), pip otherwise: the same metadata, read the same way,
and pip took 45 of this test's 70 s. From a
directory outside the clone, with nothing of the clone on the path, the base
install restores the shared tiny run with `inception_jax.load` and classifies
a file with `python -m inception_jax.predict`, TensorFlow absent; with the
`train` extra (TFDS prepares the folder), `python -m inception_jax.evaluate`
scores the run on an image folder through a config file of the user's own.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import time
import tomllib
import zipfile

import jax
import numpy as np

from inception_jax.checkpoints import loader
from tests.helpers import (FAST_XLA_FLAGS, REPO, last_error_line,
                           write_image_folder)


def _name(requirement: str) -> str:
  """PEP 503's normalised project name of a requirement."""
  name = re.match(r'[A-Za-z0-9._-]+', requirement).group(0)
  return re.sub(r'[-_.]+', '-', name).lower()


def _pins(path: str) -> dict:
  """{name: version} of the `name==version` lines of a requirements file."""
  pins = {}
  for line in open(path, encoding='utf-8'):
    line = line.split('#')[0].strip()
    if '==' in line:
      name, version = line.split('==')
      pins[_name(name)] = version.split()[0]  # a lock's line ends in '\\'.
  return pins


def test_dependency_floors_are_the_tested_pins():
  project = tomllib.load(open(os.path.join(REPO, 'pyproject.toml'), 'rb'))
  project = project['project']
  floors = {}
  for requirement in [*project['dependencies'],
                      *sum(project['optional-dependencies'].values(), [])]:
    match = re.fullmatch(r'([A-Za-z0-9._-]+)(\[[a-z,]+\])?>=([^,;]+)',
                         requirement)
    if match:
      floors[_name(match.group(1))] = match.group(3)
  pins = {**_pins(os.path.join(REPO, 'requirements.txt')),
          **_pins(os.path.join(REPO, 'requirements-test.txt'))}
  assert {n: floors.get(n) for n in pins} == pins
  # gs:// through gcsfs is for users without TensorFlow; the tests have it.
  assert set(floors) - set(pins) == {'gcsfs'}
  assert project['requires-python'] == '>=3.11'


def test_the_locks_hold_the_direct_pins():
  runtime = _pins(os.path.join(REPO, 'requirements.lock'))
  test = _pins(os.path.join(REPO, 'requirements-test.lock'))
  direct = _pins(os.path.join(REPO, 'requirements.txt'))
  assert {n: runtime.get(n) for n in direct} == direct
  direct.update(_pins(os.path.join(REPO, 'requirements-test.txt')))
  assert {n: test.get(n) for n in direct} == direct
  # The test environment only adds to the training one.
  assert {n: test.get(n) for n in runtime} == runtime


def _clean_env() -> dict:
  """The user's environment: nothing of the clone importable, CPU JAX."""
  env = {k: v for k, v in os.environ.items()
         if k not in ('PYTHONPATH', 'VIRTUAL_ENV')}
  env.update(JAX_PLATFORMS='cpu', TF_CPP_MIN_LOG_LEVEL='3',
             XLA_FLAGS=FAST_XLA_FLAGS)
  return env


def _run(args, cwd, timeout=900) -> str:
  start = time.time()
  result = subprocess.run(args, cwd=cwd, env=_clean_env(), capture_output=True,
                          text=True, timeout=timeout, check=False)
  print(f'{time.time() - start:6.1f}s  {" ".join(map(str, args))[:120]}')
  assert result.returncode == 0, (args, result.stdout[-2000:],
                                  result.stderr[-3000:])
  return result.stdout


def _build_wheel(tmp_path) -> str:
  """The wheel of a copy of the package, built without the network."""
  source = tmp_path / 'source'
  shutil.copytree(os.path.join(REPO, 'inception_jax'),
                  source / 'inception_jax',
                  ignore=shutil.ignore_patterns('__pycache__'))
  shutil.copy(os.path.join(REPO, 'pyproject.toml'), source)
  _run([sys.executable, '-m', 'pip', 'wheel', '-q', '--no-deps',
        '--no-build-isolation', str(source), '-w', str(tmp_path / 'dist')],
       cwd=tmp_path)
  (wheel,) = (tmp_path / 'dist').glob('inception_jax-*.whl')
  return str(wheel)


def test_the_wheel_installs_alone_and_serves_a_checkpoint(tiny_run,
                                                           tmp_path):
  wheel = _build_wheel(tmp_path)
  with zipfile.ZipFile(wheel) as z:
    names = z.namelist()
    meta = z.read(next(n for n in names if n.endswith('.dist-info/METADATA')))
  assert {n.split('/')[0] for n in names} == {
      'inception_jax', 'inception_jax-0.1.0.dist-info'}
  assert b'Requires-Python: >=3.11' in meta
  assert b'Requires-Dist: opencv-python-headless' in meta

  # The user's side: a fresh venv and a directory of their own, with a copy
  # of the run (evaluate writes its JSON beside the checkpoint).
  venv = tmp_path / 'venv'
  home = tmp_path / 'user'
  home.mkdir()
  run_dir = shutil.copytree(os.path.join(tiny_run, 'checkpoints'),
                            home / 'run' / 'checkpoints')
  run_dir = str(run_dir.parent)
  python, pip = str(venv / 'bin' / 'python'), str(venv / 'bin' / 'pip')
  uv = shutil.which('uv', path=os.path.dirname(sys.executable))
  # Compiled to bytecode at install, as pip does: the test processes do not
  # write .pyc files (PYTHONDONTWRITEBYTECODE), so every import would
  # compile again.
  install = ([uv, 'pip', 'install', '--compile-bytecode', '--python', python]
             if uv else [pip, 'install'])
  constraints = ['-c', os.path.join(REPO, 'requirements.txt')]
  start = time.time()
  _run([sys.executable, '-m', 'venv', str(venv)], cwd=home)
  _run([*install, '-q', wheel, *constraints], cwd=home)
  base_install_s = time.time() - start
  _run([pip, 'check'], cwd=home)

  installed = {_name(line) for line in _run([pip, 'freeze'], cwd=home)
               .splitlines()}
  assert 'inception-jax' in installed
  assert not installed & {'tensorflow-cpu', 'tensorflow-datasets', 'grain',
                          'tensorboard', 'torch'}, installed

  # inception_jax.load: the same weights the clone's own code reads.
  expected = loader.load(tiny_run)
  expected_sum = sum(float(np.abs(np.asarray(x, np.float64)).sum())
                     for x in jax.tree.leaves(expected.variables))
  loaded = json.loads(_run([python, '-c', (
      'import json, inception_jax, jax, numpy as np\n'
      f'r = inception_jax.load({run_dir!r})\n'
      'print(json.dumps({"file": inception_jax.__file__, "step": r.step,\n'
      '  "classes": r.class_names, "sum": sum(float(np.abs(np.asarray(x, '
      'np.float64)).sum()) for x in jax.tree.leaves(r.variables))}))')],
      cwd=home).splitlines()[-1])
  assert loaded['file'].startswith(str(venv)), loaded['file']
  assert loaded['step'] == expected.step == 6
  assert loaded['classes'] == list(expected.class_names)
  assert loaded['sum'] == expected_sum

  # predict, on an image of the user's folder.
  # As many classes as the run has (Fashion-MNIST's names hold a '/').
  write_image_folder(home / 'folder', labels=[f'class_{i}' for i in range(
      len(expected.class_names))])
  image = os.path.join('folder', 'val', 'class_0', '0.png')
  out = _run([python, '-m', 'inception_jax.predict', '--checkpoint=run',
              image], cwd=home)
  lines = out.strip().splitlines()
  assert lines[0] == f'{image}:'
  assert len(lines) == 6 and all(
      re.fullmatch(r'\s+[\d.]+%\s+(.+)', l).group(1) in expected.class_names
      for l in lines[1:]), out

  # evaluate needs the train extra (TFDS prepares the folder, grain reads
  # it): without it, one line that says which; the config is a file of the
  # user's, built on the package's own.
  (home / 'folder_config.py').write_text(
      'from inception_jax import config\n\n\n'
      'def get_config():\n'
      '  c = config.default_config()\n'
      "  c.data.update(name='image_folder', root='folder', data_dir='tfds',\n"
      '                worker_count=0)\n'
      '  return c\n')
  evaluate = [python, '-m', 'inception_jax.evaluate', '--checkpoint=run',
              '--config=folder_config.py', '--batch_size=8']
  lacking = subprocess.run(evaluate, cwd=home, capture_output=True,
                           text=True, timeout=300, check=False)
  assert lacking.returncode == 1, lacking.stderr[-2000:]
  assert last_error_line(lacking).endswith(
      'the base install lacks: pip install "inception_jax[train]" (or -r '
      'requirements.txt in a clone).'), lacking.stderr[-2000:]
  start = time.time()
  _run([*install, '-q', f'{wheel}[train]', *constraints], cwd=home)
  train_install_s = time.time() - start
  _run([pip, 'check'], cwd=home)
  out = _run(evaluate, cwd=home)
  assert re.search(r'top-1 [\d.]+%.* on 40 images', out), out
  written = json.load(open(os.path.join(run_dir, 'eval_val_1crop.json')))
  assert written['eval/num_examples'] == 40
  print(f'install: base {base_install_s:.0f}s, train extra '
        f'{train_install_s:.0f}s')
