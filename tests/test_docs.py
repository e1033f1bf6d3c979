"""Every command README.md and WORKSPACE.md print is run, as printed.

Commands are read from the documents themselves (code blocks, and inline code
that starts with `python -m`, `.venv/bin/python -m` or `make`), so a command
that stops working, or a new one nobody checks, fails here. Each is matched
by `HOW` to how it is checked:

* run as printed in a scratch directory (configs/ linked in), with only
  flags that shorten it added;
* checked for parsing only where it needs what this machine lacks (gcloud:
  the launcher prints its plan without running it, which is its default);
* `make train` / `make test` are the README's two commands, which .ci/run
  runs as printed on every submission;
* any other `make` target is dry-run (`make -n`): what it would run is
  checked, not run (`make lock` resolves against the registry).
"""

import os
import re
import shlex
import subprocess
import time

from tests.helpers import (REPO, assert_tfdata_comparison, last_error_line,
                           run_python, write_image_folder,
                           write_random_caffemodel)

DOCUMENTS = ('README.md', 'WORKSPACE.md')
_STARTS = re.compile(r'^(\.venv/bin/python|python3?|make)\b')

# (pattern of the printed command, extra flags, what the output must hold:
# a string in it, or a function that asserts on its stdout).
# Order matters where one command reads what another wrote.
HOW = [
    (r'^make (train|test)$', 'ci', None),
    (r'^make lock$', 'dry-run',
     'uv pip compile --quiet --generate-hashes --python-version 3.11'),
    (r'-m inception_jax\.summary --config=configs/imagenet\.py$',
     ['--xla=False'], '6,998,552'),
    (r'-m inception_jax\.summary --config=configs/imagenet\.py:module=naive$',
     ['--xla=False'], '97,526,008'),
    (r'-m inception_jax\.main --config=configs/fashion_mnist\.py:module=naive,'
     r'aux=False --workdir=runs/naive_noaux --config\.num_epochs=2$',
     ['--config.total_steps=2', '--config.log_every_steps=1',
      '--config.model.width=0.0625', '--config.data.eval_split=test[:64]',
      '--config.eval_batch_size=64'],
     'Done: 2 steps'),
    (r'-m inception_jax\.main --config=configs/fashion_mnist\.py:runlocal '
     r'--workdir=runs/profiled --config\.profile_steps=3$',
     ['--config.data.eval_split=test[:64]'], 'Profiled steps 2-4 into'),
    (r'-m inception_jax\.convert --torchvision=googlenet-1378be20\.pth '
     r'--out=runs/tv_googlenet$', [], 'wrote'),
    # Needs the ImageNet archives: a clear error naming them.
    (r'-m inception_jax\.evaluate --checkpoint=runs/tv_googlenet '
     r'--config=configs/imagenet\.py:variant=torchvision '
     r'--config\.data\.manual_dir=MANUAL$', 'error',
     'ILSVRC2012_img_train.tar and ILSVRC2012_img_val.tar are missing'),
    # A random-weight bvlc_googlenet file, written by the test.
    (r'-m inception_jax\.convert --caffe=bvlc_googlenet\.caffemodel '
     r'--out=runs/bvlc_googlenet$', [], 'wrote'),
    (r'-m inception_jax\.evaluate --checkpoint=runs/bvlc_googlenet '
     r'--config=configs/imagenet\.py --config\.data\.manual_dir=MANUAL$',
     'error',
     'ILSVRC2012_img_train.tar and ILSVRC2012_img_val.tar are missing'),
    # FOLDER is a tiny image folder made in the scratch directory; the
    # fine-tuning default of configs/image_folder.py, from the converted
    # checkpoint above. No grain worker processes (each imports TensorFlow)
    # and XLA's own gradients (a third less compile time, same numbers): the
    # full-width network's compilation dominates on 2 cores.
    (r'-m inception_jax\.main --config=configs/image_folder\.py:root=FOLDER,'
     r'init_from=runs/tv_googlenet --workdir=runs/mine$',
     ['--config.data.image_size=32', '--config.batch_size=8',
      '--config.eval_batch_size=8', '--config.total_steps=1',
      '--config.log_every_steps=1', '--config.data.worker_count=0',
      '--config.model.conv_grad=xla', '--config.model.max_pool_grad=xla'],
     'Initialised'),
    (r'-m inception_jax\.evaluate --workdir=runs/mine$', [], 'top-1'),
    # Fashion-MNIST as a PNG folder (20 images a split), then trained by
    # configs/image_folder.py.
    (r'-m experiments\.fashion_mnist_png --out=fashion_mnist_png$',
     ['--limit=20'], '"train": 20'),
    (r'-m inception_jax\.main --config=configs/image_folder\.py:'
     r'root=fashion_mnist_png,epochs=5 --workdir=runs/fm_png$',
     ['--config.total_steps=1', '--config.log_every_steps=1',
      '--config.model.width=0.0625', '--config.batch_size=8',
      '--config.eval_batch_size=8'], 'Done: 1 steps'),
    # Each pipeline times in a process of its own: one round, tiny, with no
    # grain worker and with one; what it prints is checked in full.
    (r'-m inception_jax\.data\.benchmark --dataset=jpeg --peer=tfdata',
     ['--num_images=8', '--warmup_batches=1', '--num_batches=3',
      '--batch_size=4', '--image_size=32', '--rounds=1',
      '--peer_worker_counts=0,1'], assert_tfdata_comparison),
    # The small-folder measurement on one folder of 8 images a class, one run
    # :runlocal (the figures come from the full run).
    (r'-m experiments\.small_folder$',
     ['--folders=2x8', '--test_per_class=8', '--min_steps=', '--runlocal',
      '--work=small_folder_work'], 'wrote'),
    (r'-m inception_jax\.data\.benchmark --dataset=jpeg ',
     ['--num_batches=2', '--num_images=16', '--batch_size=8'],
     'images_per_cpu_s'),
    (r'-m inception_jax\.data\.benchmark --dataset=fashion_mnist ',
     ['--num_batches=2'], 'images_per_cpu_s'),
    # watch prints what it polls and when it recreates (dry run).
    (r'-m experiments\.launch .*--action=watch$', [], 'tpu-vm describe'),
    (r'-m experiments\.launch ', [], 'gcloud'),
    (r'-m experiments\.run --sweep=ablation --config=configs/fashion_mnist\.py '
     r'--root=runs/ablation$',
     ['--config_args=runlocal', '--seeds=0', '--only=module-reduced_aux-True',
      '--set=total_steps=2', '--set=data.eval_split=test[:32]',
      '--set=eval_batch_size=32'], 'finished'),
    (r'-m experiments\.report --root=runs/ablation$', ['--flops=False'],
     'report.md'),
]


def documented_commands():
  """(document, command) for every command the documents print."""
  found = []
  for name in DOCUMENTS:
    text = open(os.path.join(REPO, name)).read()
    for block in re.findall(r'^```[^\n]*\n(.*?)^```', text, re.M | re.S):
      joined = re.sub(r'\\\n\s*', '', block)
      for line in joined.splitlines():
        line = re.sub(r'\s+#.*$', '', line).strip()
        if _STARTS.match(line):
          found.append((name, line))
    prose = re.sub(r'^```.*?^```', '', text, flags=re.M | re.S)
    for span in re.findall(r'`([^`]+)`', prose.replace('\n', ' ')):
      span = ' '.join(span.split())
      if _STARTS.match(span) and (' -m ' in f' {span} '
                                  or span.startswith('make ')):
        found.append((name, span))
  return found


def how_to_check(command):
  for pattern, extra, expect in HOW:
    if re.search(pattern, command):
      return extra, expect
  raise AssertionError(
      f'{command!r} is printed in the documentation but no test runs it; '
      'add it to tests/test_docs.py HOW.')


def test_every_documented_command_is_checked():
  commands = documented_commands()
  assert ('README.md', 'make train') in commands
  for _, command in commands:
    how_to_check(command)


def _write_torchvision_weights(path):
  import torch  # pylint: disable=g-import-not-at-top
  import torchvision  # pylint: disable=g-import-not-at-top
  model = torchvision.models.googlenet(weights=None, aux_logits=True,
                                       init_weights=False)
  torch.save(model.state_dict(), path)


def test_documented_commands_run_as_printed(tmp_path):
  os.symlink(os.path.join(REPO, 'configs'), tmp_path / 'configs')
  _write_torchvision_weights(tmp_path / 'googlenet-1378be20.pth')
  write_image_folder(tmp_path / 'FOLDER')
  write_random_caffemodel(tmp_path / 'bvlc_googlenet.caffemodel')
  done = set()
  ordered = sorted(
      {c for _, c in documented_commands()},
      key=lambda c: [i for i, (p, _, _) in enumerate(HOW) if re.search(p, c)])
  for command in ordered:
    extra, expect = how_to_check(command)
    argv = shlex.split(command)
    key = tuple(argv[1:])  # `python` in prose, `.venv/bin/python` in blocks
    if extra == 'ci' or key in done:
      continue
    done.add(key)
    if extra == 'dry-run':
      result = subprocess.run(['make', '-n', *argv[1:]], cwd=REPO,
                              capture_output=True, text=True, check=False)
      assert result.returncode == 0, (command, result.stderr[-2000:])
      assert expect in result.stdout, (command, result.stdout[-2000:])
      continue
    assert argv[0] in ('python', 'python3', '.venv/bin/python'), command
    if extra == 'error':
      result = run_python(argv[1:], cwd=tmp_path, timeout=900)
      assert expect in last_error_line(result), command
      continue
    start = time.time()
    result = run_python(argv[1:] + extra, cwd=tmp_path, timeout=900)
    print(f'{time.time() - start:6.1f}s  {command}')
    assert result.returncode == 0, (command, result.stderr[-3000:])
    if callable(expect):
      expect(result.stdout)
    else:
      assert expect in result.stdout + result.stderr, (command,
                                                       result.stdout[-2000:])
  assert len(done) >= 8


def test_readme_starts_with_the_two_commands():
  text = open(os.path.join(REPO, 'README.md')).read()
  first = re.search(r'^```[^\n]*\n(.*?)^```', text, re.M | re.S).group(1)
  lines = [re.sub(r'\s+#.*$', '', l).strip() for l in first.splitlines()]
  assert [l for l in lines if l] == ['make train', 'make test']
