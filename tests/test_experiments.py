"""Sweeps, the local sweep runner, the Cloud TPU launcher and the report.

Nothing here trains or reaches the network: training processes are fake
runners or tiny shell scripts, gcloud is a stub, and run directories are
written by hand with the files training writes.
"""

import csv
import json
import math
import statistics
import os
import shlex
import stat
import subprocess
import sys
import threading
import warnings

import pytest
from scipy import stats as scipy_stats

from experiments import launch
from experiments import run as run_lib
from experiments import sweeps
from experiments.report import build as report_build
from experiments.report import grouping
from experiments.report import model_counts
from experiments.report import plots
from experiments.report import run_dirs
from experiments.report import stats

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# --- Sweeps -------------------------------------------------------------------

def test_ablation_is_module_by_aux_by_seed():
  members = sweeps.get_sweep('ablation')
  assert [m.name for m in members] == [
      'module=reduced,aux=True,seed=0', 'module=reduced,aux=True,seed=1',
      'module=reduced,aux=False,seed=0', 'module=reduced,aux=False,seed=1',
      'module=naive,aux=True,seed=0', 'module=naive,aux=True,seed=1',
      'module=naive,aux=False,seed=0', 'module=naive,aux=False,seed=1']
  assert members[6].dirname == 'module-naive_aux-False_seed-0'
  assert members[6].config_args == {'module': 'naive', 'aux': False}
  assert members[6].overrides == {'seed': 0}


def test_norm_sweep_and_seed_override():
  assert [m.name for m in sweeps.get_sweep('norm')] == [
      'norm=lrn,seed=0', 'norm=batchnorm,seed=0', 'norm=none,seed=0']
  members = sweeps.get_sweep('ablation', seeds=[3])
  assert len(members) == 4 and all(m.overrides == {'seed': 3}
                                   for m in members)
  with pytest.raises(ValueError, match='unknown sweep'):
    sweeps.get_sweep('nope')


def test_product_and_zip_helpers():
  grid = sweeps.product(sweeps.axis('a', [1, 2]), sweeps.axis('b', ['x', 'y']))
  assert grid == [{'a': 1, 'b': 'x'}, {'a': 1, 'b': 'y'},
                  {'a': 2, 'b': 'x'}, {'a': 2, 'b': 'y'}]
  zipped = sweeps.zip_axes(sweeps.axis('optimizer.lr', [0.1, 0.2]),
                           sweeps.axis('batch_size', [128, 256]))
  assert zipped == [{'optimizer.lr': 0.1, 'batch_size': 128},
                    {'optimizer.lr': 0.2, 'batch_size': 256}]
  with pytest.raises(ValueError, match='equal length'):
    sweeps.zip_axes(sweeps.axis('a', [1]), sweeps.axis('b', [1, 2]))
  with pytest.raises(ValueError, match="set 'a' twice"):
    sweeps.product(sweeps.axis('a', [1]), sweeps.axis('a', [2]))


def test_directory_names_are_filesystem_safe():
  member = sweeps.Member((('data.root', '/x y/z'), ('optimizer.lr', 0.1)))
  assert member.name == 'data.root=/x y/z,optimizer.lr=0.1'
  assert member.dirname == 'data.root--x-y-z_optimizer.lr-0.1'


def test_train_args_merge_base_args_and_overrides():
  member = sweeps.get_sweep('ablation')[6]  # naive, aux=False, seed 0
  args = sweeps.train_args(
      'configs/fashion_mnist.py', member, 'ROOT/' + member.dirname,
      config_args='module=reduced,runlocal,norm=lrn',
      sets={'optimizer.lr': '0.05'})
  assert args == [
      '--config=configs/fashion_mnist.py:module=naive,runlocal,norm=lrn,'
      'aux=False',
      '--config.seed=0', '--config.optimizer.lr=0.05',
      '--workdir=ROOT/module-naive_aux-False_seed-0']
  with pytest.raises(ValueError, match='conflicts with the sweep'):
    sweeps.train_args('c.py', member, 'w', sets={'seed': '5'})
  assert sweeps.parse_sets(['config.eval_raw=True']) == {'eval_raw': 'True'}
  with pytest.raises(ValueError):
    sweeps.parse_sets(['no_equals'])


# --- Local runner -------------------------------------------------------------

def _write(path, text=''):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, 'w') as f:
    f.write(text)


def _workdir(command):
  return next(a.split('=', 1)[1] for a in command
              if a.startswith('--workdir='))


class FakeTrainer:
  """Stands in for `python -m inception_jax.main`: scripted exit statuses."""

  def __init__(self, script=None):
    self.script = script or {}  # dirname -> list of 'finish'|'preempt'|int
    self.calls = []

  def __call__(self, command):
    workdir = _workdir(command)
    name = os.path.basename(workdir)
    self.calls.append(name)
    action = self.script.get(name, ['finish']).pop(0)
    _write(os.path.join(workdir, 'metrics.jsonl'), '{"step": 1}\n')
    if action == 'finish':
      _write(os.path.join(workdir, 'summary.json'), '{}')
      return 0
    if action == 'preempt':
      return 0
    return action


def test_run_skips_finished_resumes_unfinished_and_survives_failures(tmp_path):
  root = str(tmp_path)
  members = sweeps.get_sweep('ablation', seeds=[0])
  done, partial, failing, preempted = (m.dirname for m in members)
  _write(os.path.join(root, done, 'summary.json'), '{}')
  _write(os.path.join(root, partial, 'metrics.jsonl'), '{"step": 5}\n')
  trainer = FakeTrainer({failing: [2], preempted: ['preempt', 'finish']})
  lines = []
  outcomes = run_lib.run_sweep(members, config='configs/fashion_mnist.py',
                               root=root, runner=trainer, python='PY',
                               retries=1, log=lines.append)
  assert [o.status for o in outcomes] == ['skipped', 'finished', 'failed',
                                          'finished']
  assert outcomes[2].returncode == 2
  assert trainer.calls == [partial, failing, preempted, preempted]
  assert any('resuming' in l and partial in l for l in lines)
  assert not run_lib.sweep_ok(outcomes)


def test_run_without_retries_leaves_a_preempted_member_unfinished(tmp_path):
  members = sweeps.get_sweep('smoke')
  trainer = FakeTrainer({members[0].dirname: ['preempt']})
  outcomes = run_lib.run_sweep(members, config='c.py', root=str(tmp_path),
                               runner=trainer, retries=0, log=lambda s: None)
  assert [o.status for o in outcomes] == ['unfinished', 'finished']
  assert not run_lib.sweep_ok(outcomes)


def test_run_retries_what_stopped_early_and_stops_on_request(tmp_path):
  """A lost process (exit 3) or a killed trainer (a signal) is interrupted,
  not failed; a SIGTERM to the sweep stops it after the running member."""
  members = sweeps.get_sweep('ablation', seeds=[0])
  lost, killed = members[0].dirname, members[1].dirname
  trainer = FakeTrainer({lost: [3, 'finish'], killed: [-9, -6, 'finish']})
  outcomes = run_lib.run_sweep(members[:2], config='c.py', root=str(tmp_path),
                               runner=trainer, retries=2, log=lambda s: None)
  assert [o.status for o in outcomes] == ['finished', 'finished']
  assert trainer.calls == [lost, lost, killed, killed, killed]

  stop = []
  trainer = FakeTrainer({members[2].dirname: ['preempt', 'finish']})

  def runner(command):
    stop.append(True)  # SIGTERM arrives while the member runs
    return trainer(command)

  lines = []
  outcomes = run_lib.run_sweep(members[2:], config='c.py', root=str(tmp_path),
                               runner=runner, retries=3, log=lines.append,
                               stop_requested=lambda: bool(stop))
  # The member saved and stopped; it is not tried again, nor is the next.
  assert [o.status for o in outcomes] == ['unfinished']
  assert trainer.calls == [members[2].dirname]
  assert any('Stopped (SIGTERM) before' in l for l in lines)


def test_run_waits_for_process_0s_summary_after_a_clean_exit(tmp_path):
  member = sweeps.get_sweep('smoke')[0]
  workdir = tmp_path / member.dirname

  def runner(command):
    del command
    # Process 0 writes summary.json a moment after this process exited.
    threading.Timer(1.0, lambda: _write(str(workdir / 'summary.json'),
                                        '{}')).start()
    return 0

  outcomes = run_lib.run_sweep([member], config='c.py', root=str(tmp_path),
                               runner=runner, finish_wait_s=30,
                               log=lambda s: None)
  assert [o.status for o in outcomes] == ['finished']


def test_run_command_line_with_a_fake_interpreter(tmp_path):
  # The "interpreter" finishes reduced members and fails naive ones.
  fake = tmp_path / 'fake_python'
  fake.write_text(
      '#!/bin/bash\n'
      'for a in "$@"; do case "$a" in --workdir=*) w="${a#--workdir=}";; '
      'esac; done\n'
      'echo "$@" >> "$(dirname "$0")/calls.txt"\n'
      'case "$w" in *naive*) exit 2;; esac\n'
      'mkdir -p "$w" && echo {} > "$w/summary.json"\n')
  fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
  root = tmp_path / 'sweep'
  command = [sys.executable, '-m', 'experiments.run', '--sweep=smoke',
             '--config=configs/fashion_mnist.py', f'--root={root}',
             '--config_args=runlocal', f'--python={fake}']
  result = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
  assert result.returncode == 1, result.stderr
  assert 'failed     module=naive,seed=0 (exit status 2)' in result.stdout
  assert (root / 'module-reduced_seed-0' / 'summary.json').exists()
  calls = (tmp_path / 'calls.txt').read_text().splitlines()
  assert calls[0] == ('-m inception_jax.main '
                      '--config=configs/fashion_mnist.py:runlocal,'
                      'module=reduced --config.seed=0 '
                      f'--workdir={root}/module-reduced_seed-0')
  # The second invocation only retries what failed.
  subprocess.run(command, cwd=REPO, capture_output=True, text=True)
  calls = (tmp_path / 'calls.txt').read_text().splitlines()
  assert len(calls) == 3 and 'naive' in calls[2]
  dry = subprocess.run(command + ['--dry_run'], cwd=REPO,
                       capture_output=True, text=True)
  assert dry.returncode == 0
  assert '# [1/2] module=reduced,seed=0: finished, would skip' in dry.stdout


# --- Cloud TPU launcher -------------------------------------------------------

@pytest.mark.parametrize('accelerator, version', [
    ('v2-8', 'tpu-ubuntu2204-base'), ('v3-32', 'tpu-ubuntu2204-base'),
    ('v4-8', 'tpu-ubuntu2204-base'), ('v5litepod-16', 'v2-alpha-tpuv5-lite'),
    ('v5p-8', 'v2-alpha-tpuv5'), ('v6e-8', 'v2-alpha-tpuv6e')])
def test_runtime_version_per_accelerator_family(accelerator, version):
  assert launch.runtime_version(accelerator) == version


def test_unknown_accelerators_are_errors():
  with pytest.raises(ValueError, match='v5litepod'):
    launch.runtime_version('v5e-8')
  with pytest.raises(ValueError):
    launch.runtime_version('tpu4')


def test_create_commands_on_demand_spot_and_queued():
  target = launch.Target('inc', 'us-central2-b', 'v4-8', project='proj')
  (step,) = launch.create_steps(target)
  assert step.argv == [
      'gcloud', 'compute', 'tpus', 'tpu-vm', 'create', 'inc',
      '--accelerator-type=v4-8', '--version=tpu-ubuntu2204-base',
      '--zone=us-central2-b', '--project=proj']
  spot = launch.Target('inc', 'europe-west4-a', 'v6e-8', spot=True)
  assert launch.create_steps(spot)[0].argv == [
      'gcloud', 'compute', 'tpus', 'tpu-vm', 'create', 'inc',
      '--accelerator-type=v6e-8', '--version=v2-alpha-tpuv6e', '--spot',
      '--zone=europe-west4-a']
  queued = launch.Target('inc', 'us-east5-a', 'v5p-8', spot=True, queued=True)
  create, wait = launch.create_steps(queued)
  assert create.argv == [
      'gcloud', 'compute', 'tpus', 'queued-resources', 'create', 'inc',
      '--node-id=inc', '--accelerator-type=v5p-8',
      '--runtime-version=v2-alpha-tpuv5', '--spot', '--zone=us-east5-a']
  assert wait.argv[:2] == ['bash', '-c']
  assert ('gcloud compute tpus queued-resources describe inc '
          '--zone=us-east5-a \'--format=value(state.state)\'') in wait.argv[2]
  assert launch.delete_steps(queued)[0].argv == [
      'gcloud', 'compute', 'tpus', 'queued-resources', 'delete', 'inc',
      '--zone=us-east5-a', '--force', '--quiet']
  assert launch.delete_steps(target)[0].argv == [
      'gcloud', 'compute', 'tpus', 'tpu-vm', 'delete', 'inc', '--quiet',
      '--zone=us-central2-b', '--project=proj']


def _plan(actions, **kwargs):
  target = kwargs.pop('target', launch.Target('inc', 'us-central2-b', 'v4-32'))
  return launch.plan(
      actions, target=target, members=sweeps.get_sweep('ablation'),
      sweep='ablation', config='configs/imagenet.py',
      root='gs://bucket/sweeps/ablation', local_tarball='/tmp/code.tgz',
      **kwargs)


def test_setup_copies_the_code_to_every_worker_and_installs():
  tar, scp, ssh = _plan(['setup'])
  assert tar.argv[0] == 'tar' and tar.argv[-3:] == ['-C', REPO, '.']
  assert '--exclude=./.venv' in tar.argv and '--exclude=./.git' in tar.argv
  assert scp.argv == ['gcloud', 'compute', 'tpus', 'tpu-vm', 'scp',
                      '/tmp/code.tgz', 'inc:inception_jax.tar.gz',
                      '--worker=all', '--zone=us-central2-b']
  assert ssh.argv[:7] == ['gcloud', 'compute', 'tpus', 'tpu-vm', 'ssh', 'inc',
                          '--worker=all']
  command = ssh.argv[7]
  assert command.startswith('--command=')
  pin = launch.jax_version(os.path.join(REPO, 'requirements.txt'))
  assert pin and f"'jax[tpu]=={pin}'" in command
  assert '-r requirements.txt' in command and '--python 3.11' in command


def test_start_runs_the_sweep_loop_multihost_on_gcs_on_all_workers():
  (start,) = _plan(['start'], config_args='runlocal',
                   sets={'data.data_dir': 'gs://bucket/tfds dir'})
  assert start.argv[:7] == ['gcloud', 'compute', 'tpus', 'tpu-vm', 'ssh',
                            'inc', '--worker=all']
  assert start.argv[-1] == '--zone=us-central2-b'
  remote = start.argv[7][len('--command='):]
  assert '> logs/sweep-ablation.log 2>&1 < /dev/null &' in remote
  # Every worker runs experiments.run: the one sweep loop.
  words = shlex.split(remote)
  start = words.index('nohup') + 1
  worker = words[start:words.index('>', start)]
  assert worker == [
      '.venv/bin/python', '-m', 'experiments.run', '--sweep=ablation',
      '--config=configs/imagenet.py', '--root=gs://bucket/sweeps/ablation',
      '--retries=19', '--finish_wait_s=120', '--set=multihost=True',
      '--config_args=runlocal', '--set=data.data_dir=gs://bucket/tfds dir']
  # The loop's members, as that command line selects them: each one a
  # multi-host trainer writing under the root.
  command = run_lib.member_command(
      sweeps.get_sweep('ablation')[0], config='configs/imagenet.py',
      root='gs://bucket/sweeps/ablation', python='.venv/bin/python',
      config_args='runlocal',
      sets=sweeps.parse_sets(['multihost=True',
                              'data.data_dir=gs://bucket/tfds dir']))
  assert '--config.multihost=True' in command
  assert command[-1] == ('--workdir=gs://bucket/sweeps/ablation/'
                         'module-reduced_aux-True_seed-0')


def test_printed_plan_is_the_exact_argv(tmp_path):
  steps = _plan(list(launch.ACTIONS), local_dir=str(tmp_path / 'local'))
  printed = launch.format_plan(steps).splitlines()
  commands = []
  for line in printed:
    if line.startswith('# '):
      commands.append([])
    else:
      commands[-1].append(line)
  # Multi-line commands (the start script) are one shell word with newlines.
  parsed = [shlex.split('\n'.join(c)) for c in commands]
  assert parsed == [s.argv for s in steps]
  assert [s.action for s in steps][0] == 'create'
  assert steps[-1].action == 'delete'


def test_launch_rejects_a_local_root_and_unknown_actions():
  with pytest.raises(ValueError, match='gs://'):
    launch.plan(['start'], target=launch.Target('t', 'z', 'v4-8'),
                members=[], sweep='s', config='c.py', root='/local/dir')
  with pytest.raises(ValueError, match='unknown action'):
    _plan(['launch'])


def test_execute_stops_at_the_first_failing_command():
  steps = _plan(['create', 'setup', 'start'])
  seen = []

  def runner(argv):
    seen.append(argv)
    return 1 if argv[0] == 'tar' else 0

  assert launch.execute(steps, runner, log=lambda s: None) == 1
  assert [a[0] for a in seen] == ['gcloud', 'tar']


def test_launch_command_line_dry_run_prints_and_runs_nothing():
  result = subprocess.run(
      [sys.executable, '-m', 'experiments.launch', '--sweep=norm',
       '--config=configs/imagenet.py', '--tpu=inc', '--zone=us-central2-b',
       '--accelerator=v5litepod-8', '--root=gs://b/norm', '--spot',
       '--action=create,delete'], cwd=REPO, capture_output=True, text=True)
  assert result.returncode == 0, result.stderr
  assert result.stdout.splitlines() == [
      '# create: create the TPU VM inc',
      'gcloud compute tpus tpu-vm create inc --accelerator-type=v5litepod-8 '
      '--version=v2-alpha-tpuv5-lite --spot --zone=us-central2-b',
      '# delete: delete the TPU (billing stops)',
      'gcloud compute tpus tpu-vm delete inc --quiet --zone=us-central2-b']


# --- Report -------------------------------------------------------------------

def _config(module='reduced', aux=True, seed=0, image_size=32):
  return {'seed': seed, 'batch_size': 128, 'log_every_steps': 10,
          'model': {'num_classes': 0, 'module': module, 'aux': aux,
                    'norm': 'batchnorm', 'variant': 'paper', 'width': 0.0625,
                    'dropout': None, 'aux_dropout': 0.7,
                    'transform_input': None, 'dtype': 'auto'},
          'data': {'name': 'fashion_mnist', 'image_size': image_size,
                   'data_dir': None}}


def _run_dir(root, name, config, evals, *, raw=None, speeds=(100.0,),
             finished=True, extra_lines=()):
  d = os.path.join(root, name)
  os.makedirs(d)
  if config is not None:
    _write(os.path.join(d, 'config.json'), json.dumps(config))
  lines = []
  for i, speed in enumerate(speeds):
    lines.append({'step': 10 * (i + 1), 'train/loss': 1.0,
                  'train/images_per_sec': speed, 'train/step_time': 0.5})
  for j, (step, top1, top5) in enumerate(evals):
    record = {'step': step, 'eval/top1': top1, 'eval/top5': top5,
              'eval/loss': 0.5, 'eval/num_examples': 10000}
    if raw:
      record.update({'eval_raw/top1': raw[j], 'eval_raw/top5': 0.99})
    lines.append(record)
  text = ''.join(json.dumps(l) + '\n' for l in lines) + ''.join(extra_lines)
  _write(os.path.join(d, 'metrics.jsonl'), text)
  if finished:
    _write(os.path.join(d, 'summary.json'), json.dumps({'wall_time_sec': 90}))
  return d


# Two-sided 95% quantiles of Student's t in closed form, so the intervals are
# checked independently of scipy: with 1 degree of freedom t is Cauchy,
# F^-1(p) = tan(pi (p - 1/2)); with 2, F^-1(p) = (2p - 1) / sqrt(2p (1 - p)).
# Printed tables round them to 12.706 and 4.303.
T95_1DF = math.tan(0.475 * math.pi)
T95_2DF = 0.95 / math.sqrt(2 * 0.975 * 0.025)


def _fake_summarize(kwargs, size):
  base = 1000 if kwargs['module'] == 'reduced' else 9000
  return {'params': base, 'params_with_aux': base + (100 if kwargs['aux']
                                                     else 0),
          'macs': base * size}


def test_report_values_over_seeds_best_and_final(tmp_path):
  root = str(tmp_path)
  # Variant A, two seeds: best before the end, so best != final.
  _run_dir(root, 'module-reduced_seed-0', _config(seed=0),
           [(20, 0.70, 0.95), (40, 0.80, 0.97), (60, 0.78, 0.98)],
           raw=[0.60, 0.75, 0.77], speeds=(100.0, 200.0, 300.0))
  _run_dir(root, 'module-reduced_seed-1', _config(seed=1),
           [(20, 0.72, 0.96), (40, 0.90, 0.99), (60, 0.86, 0.99)],
           raw=[0.61, 0.80, 0.85], speeds=(400.0,))
  # Variant B, still running, with a line cut off by a kill.
  _run_dir(root, 'module-naive_seed-0', _config(module='naive'),
           [(20, 0.50, 0.90)], finished=False,
           extra_lines=['{"step": 30, "train/lo'])
  # Not a run yet: only a checkpoints folder.
  os.makedirs(os.path.join(root, 'module-naive_seed-1', 'checkpoints'))

  result = report_build.write_report(root, summarize_fn=_fake_summarize)
  rows = {r['variant']: r for r in result.variant_rows}
  assert set(rows) == {'module=reduced', 'module=naive',
                       'unknown (module-naive_seed-1)'}
  a = rows['module=reduced']
  assert a['runs'] == 2 and a['finished'] == 2
  assert a['best_top1_mean'] == pytest.approx(0.85)
  assert a['best_top1_min'] == pytest.approx(0.80)
  assert a['best_top1_max'] == pytest.approx(0.90)
  assert a['best_top1_std'] == pytest.approx(0.1 / math.sqrt(2))
  assert a['best_top5_mean'] == pytest.approx((0.97 + 0.99) / 2)
  assert a['final_top1_mean'] == pytest.approx(0.82)
  assert a['final_top5_mean'] == pytest.approx(0.985)
  assert a['best_top1_raw_mean'] == pytest.approx(0.81)
  assert a['final_top1_raw_mean'] == pytest.approx(0.81)
  assert a['images_per_sec_mean'] == pytest.approx((200.0 + 400.0) / 2)
  assert a['train_time_sec_mean'] == pytest.approx((15.0 + 5.0) / 2)
  assert a['wall_time_sec_mean'] == pytest.approx(90)
  assert (a['params'], a['params_with_aux']) == (1000, 1100)
  assert (a['macs'], a['macs_224']) == (32000, 224000)
  b = rows['module=naive']
  assert b['runs'] == 1 and b['finished'] == 0
  assert b['best_top1_n'] == 1 and b['best_top1_mean'] == pytest.approx(0.5)
  assert b['best_top1_raw_n'] == 0 and b['macs_224'] == 9000 * 224

  md = open(os.path.join(root, 'report.md')).read()
  # Two seeds: the 95% interval uses t(1 df) = 12.706; it is wide, and
  # the table says so rather than hide it behind min-max.
  half = lambda a, b: 100 * T95_1DF * abs(a - b) / math.sqrt(2) / math.sqrt(2)
  assert ('| module=reduced | 2 (2) | 32x32 | 1K | 1.1K | 32K | 224K | '
          f'85.00 ± {half(0.8, 0.9):.2f} | 98.00 ± {half(0.97, 0.99):.2f} | '
          f'82.00 ± {half(0.78, 0.86):.2f}') in md
  assert a['best_top1_ci95'] == pytest.approx(half(0.8, 0.9) / 100)
  assert '## Differences from module=naive' in md
  assert 'unfinished (step 20)' in md
  assert 'module-naive_seed-0: metrics.jsonl: 1 unreadable line(s)' in md
  assert 'module-naive_seed-1: config.json missing' in md

  with open(os.path.join(root, 'report.csv')) as f:
    csv_rows = {r['variant']: r for r in csv.DictReader(f)}
  assert float(csv_rows['module=reduced']['best_top1_mean']) == (
      pytest.approx(0.85))
  assert csv_rows['module=naive']['best_top1_raw_mean'] == ''
  with open(os.path.join(root, 'report_runs.csv')) as f:
    assert len(list(csv.DictReader(f))) == 4
  for name in ('eval_top1_vs_step.png', 'eval_top1_vs_time.png'):
    path = os.path.join(root, name)
    with open(path, 'rb') as f:
      assert f.read(8) == b'\x89PNG\r\n\x1a\n'
    assert os.path.getsize(path) > 1000


def test_report_of_an_empty_or_partial_root_does_not_crash(tmp_path):
  result = report_build.write_report(str(tmp_path), summarize_fn=None)
  assert result.variant_rows == []
  for name in ('report.md', 'report.csv', 'eval_top1_vs_step.png',
               'eval_top1_vs_time.png'):
    assert os.path.exists(tmp_path / name)
  _run_dir(str(tmp_path), 'broken', None, [], speeds=(), finished=False)
  result = report_build.write_report(str(tmp_path),
                                     summarize_fn=_fake_summarize)
  assert result.run_rows[0]['status'] == 'no metrics yet'


def test_report_counts_come_from_the_model_summary():
  from inception_jax import summary  # pylint: disable=g-import-not-at-top
  # pylint: disable-next=g-import-not-at-top
  from inception_jax.models import googlenet
  kwargs = model_counts.model_kwargs(_config(module='reduced', aux=True))
  assert kwargs['num_classes'] == 10 and kwargs['dtype'] == 'float32'
  counts = model_counts.summarize_model(kwargs, 32)
  direct = summary.summarize(googlenet.create_model(**kwargs), 32)
  assert counts == {'params': direct.total_params_no_aux,
                    'params_with_aux': direct.total_params,
                    'macs': direct.total_macs}
  assert counts['params'] < counts['params_with_aux']


def test_curves_average_over_the_seeds_that_reached_each_step(tmp_path):
  root = str(tmp_path)
  _run_dir(root, 's0', _config(seed=0), [(20, 0.5, 0.9), (40, 0.7, 0.9)])
  _run_dir(root, 's1', _config(seed=1), [(20, 0.7, 0.9)], finished=False)
  (variant,) = grouping.group_variants(run_dirs.find_runs(root))
  steps, mean, lo, hi, times = plots.variant_curve(variant, use_wall=False)
  assert steps == [20, 40]
  assert mean == pytest.approx([0.6, 0.7])
  assert (lo, hi) == (pytest.approx([0.5, 0.7]), pytest.approx([0.7, 0.7]))
  assert times == pytest.approx([5.0, 5.0])  # one train record of 10 x 0.5 s


def test_t_quantiles_and_intervals():
  assert stats.t95(1) == pytest.approx(T95_1DF)
  assert stats.t95(2) == pytest.approx(T95_2DF)
  assert stats.t95(40) == pytest.approx(2.021, abs=0.002)
  assert stats.t95(1e9) == pytest.approx(1.960, abs=1e-3)
  agg = stats.aggregate([0.90, 0.92, 0.94])
  assert agg['ci95'] == pytest.approx(T95_2DF * 0.02 / math.sqrt(3))
  assert stats.aggregate([0.9])['ci95'] is None


def test_differences_are_paired_by_seed_or_welch():
  a = {0: 0.900, 1: 0.910, 2: 0.920}
  b = {0: 0.905, 1: 0.916, 2: 0.924}  # +0.5 points each seed, +/- 0.1
  paired = stats.difference(a, b)
  assert paired['method'] == 'paired by seed' and paired['n'] == 3
  assert paired['mean'] == pytest.approx(0.005)
  d = [0.005, 0.006, 0.004]
  assert paired['ci95'] == pytest.approx(
      T95_2DF * statistics.stdev(d) / math.sqrt(3))
  assert paired['p'] == pytest.approx(
      scipy_stats.ttest_1samp(d, 0).pvalue)
  # The same values on other seeds: unpaired, the seed spread dominates.
  welch = stats.difference(a, {10 + k: v for k, v in b.items()})
  assert welch['method'] == 'Welch' and welch['ci95'] > 0.01
  assert welch['p'] > 0.5
  one = stats.difference({0: 0.9}, {1: 0.8})
  assert one['ci95'] is None and one['mean'] == pytest.approx(-0.1)
  assert one['p'] is None


def test_holm_keeps_the_family_wise_error_and_the_verdict_says_so():
  # By hand: sorted 0.01, 0.02, 0.04, 0.30 times 4, 3, 2, 1, each at least
  # the one before.
  assert stats.holm([0.04, 0.01, None, 0.30, 0.02]) == pytest.approx(
      [0.08, 0.04, None, 0.30, 0.06])
  assert stats.holm([0.5, 0.6]) == pytest.approx([1.0, 1.0])  # capped
  # A p of 0.024 (three seeds, every one gains): shown alone, not when it is
  # one of four contrasts.
  row = {'mean': 0.0138, 'p_holm': 0.024, 'contrasts': 1}
  assert stats.verdict(row).startswith('shown (Holm p=0.024 over 1')
  row = {'mean': 0.0138, 'p_holm': 0.096, 'contrasts': 4}
  assert stats.verdict(row).startswith('not shown (Holm p=0.096 over 4')
  assert stats.verdict({'mean': 0.1, 'p_holm': None}).startswith('no interval')


def test_welch_interval_by_hand_and_seeds_that_agree():
  # Two seeds each with equal variances: Welch's degrees of freedom are
  # (2v)^2 / (2 v^2 / 1) = 2, and the standard error is sqrt(v/2 + v/2).
  welch = stats.difference({0: 0.90, 1: 0.92}, {10: 0.95, 11: 0.97})
  assert welch['method'] == 'Welch' and welch['mean'] == pytest.approx(0.05)
  v = statistics.variance([0.90, 0.92])
  assert welch['ci95'] == pytest.approx(T95_2DF * math.sqrt(v))
  # Every seed gains the same, or every seed of a variant scores the same:
  # a zero-wide interval, without scipy's warning about nearly equal data.
  with warnings.catch_warnings():
    warnings.simplefilter('error')
    same_gain = stats.difference({0: 0.90, 1: 0.91, 2: 0.92},
                                 {0: 0.95, 1: 0.96, 2: 0.97})
    same_score = stats.difference({0: 0.9, 1: 0.9}, {2: 0.8, 3: 0.8})
  assert same_gain['method'] == 'paired by seed'
  assert same_gain['ci95'] == pytest.approx(0, abs=1e-12)
  assert same_gain['p'] == 0.0
  assert same_score['method'] == 'Welch'
  assert same_score['ci95'] == pytest.approx(0, abs=1e-12)


def test_one_switch_differences_of_a_two_by_two_sweep(tmp_path):
  # module x aux x 3 seeds; the four one-switch pairs, paired by seed, and
  # no row for the two diagonal pairs (both switches changed).
  root = str(tmp_path)
  finals = {('reduced', True): (0.850, 0.848, 0.852),
            ('reduced', False): (0.840, 0.842, 0.846),
            ('naive', True): (0.860, 0.850, 0.855),
            ('naive', False): (0.851, 0.853, 0.849)}
  for (module, aux), tops in finals.items():
    for seed, top1 in enumerate(tops):
      _run_dir(root, f'module-{module}_aux-{aux}_seed-{seed}',
               _config(module=module, aux=aux, seed=seed),
               [(20, 0.5, 0.9), (40, top1, 0.99)])
  result = report_build.write_report(root, summarize_fn=None)
  rows = {(d['switch'], d['held']): d for d in result.switches}
  assert set(rows) == {('aux', 'module=reduced'), ('aux', 'module=naive'),
                       ('module', 'aux=True'), ('module', 'aux=False')}
  def paired(a, b):
    d = [y - x for x, y in zip(finals[a], finals[b])]
    return statistics.fmean(d), T95_2DF * statistics.stdev(d) / math.sqrt(3)
  for (switch, held), row in rows.items():
    assert {row['from'], row['to']} == ({True, False} if switch == 'aux'
                                        else {'reduced', 'naive'})
    if switch == 'aux':
      module = held[len('module='):]
      a, b = (module, row['from']), (module, row['to'])
    else:
      aux = held == 'aux=True'
      a, b = (row['from'], aux), (row['to'], aux)
    mean, half = paired(a, b)
    assert row['mean'] == pytest.approx(mean)
    assert row['ci95'] == pytest.approx(half)
    assert row['method'] == 'paired by seed' and row['n'] == 3
  # aux on vs off, reduced: 0.73 +/- 0.57 points apart, the interval
  # excludes 0 (p = 0.032), but it is one of five contrasts (the four
  # switches and the baseline table's diagonal pair): not shown.
  reduced = rows[('aux', 'module=reduced')]
  assert reduced['p'] == pytest.approx(0.0315, abs=0.0005)
  assert reduced['ci95'] < abs(reduced['mean'])
  assert reduced['contrasts'] == 5
  pvalues = [d['p'] for d in result.switches] + [
      d['p'] for d in result.differences
      if frozenset(d['pair']) not in {frozenset(r['pair'])
                                      for r in result.switches}]
  assert reduced['p_holm'] == pytest.approx(
      stats.holm(pvalues)[[d['p'] for d in result.switches].index(
          reduced['p'])])
  assert reduced['verdict'].startswith('not shown (Holm p=')
  assert all(d['verdict'].startswith('not shown')
             for d in result.switches + result.differences)
  md = open(os.path.join(root, 'report.md')).read()
  assert '## One switch at a time' in md
  row = rows[('aux', 'module=naive')]
  assert f'| aux | {row["from"]} | {row["to"]} | module=naive |' in md


def test_lrn_effect_refuses_a_model_without_lrn(tiny_run):
  from experiments import lrn_effect  # pylint: disable=g-import-not-at-top
  with pytest.raises(ValueError, match='measures models with LRN'):
    lrn_effect.lrn_effect(tiny_run)
