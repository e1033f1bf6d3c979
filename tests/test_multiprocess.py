"""Two JAX processes on localhost run the real command line.

Each process has 2 simulated CPU devices; they meet through
`jax.distributed.initialize` (JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES,
JAX_PROCESS_ID) and all-reduce with gloo. The reference is one process on 4
devices fed the same global batches: the two processes' shards, process 0's
half first, as `jax.make_array_from_process_local_data` lays them out.
A constant learning rate lets a 4-step run resumed to 6 steps be compared
with a 6-step reference. The model uses LRN, not BatchNorm: with BatchNorm
this tiny model's gradient is ill-conditioned (gradient norms of 60-160 at
the start), and even a 1-process run on 4 devices and one on 8 differ by 0.1
in some weights after 4 steps from float32 round-off alone, while agreeing
to 5e-5 after 2. (BatchNorm's statistics over the global batch across
devices are checked in test_train.py.) A run saved by 2 processes resumes on 1
and then on 2 again, and the examples it trains on are counted against one
uninterrupted stream (`tests/runner.py --record_batches`).
"""

import concurrent.futures
import json
import os
import re
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from tests.helpers import REPO, assert_trees_equal, saved_steps
from tests.helpers import subprocess_env

ARGS = ['--config=configs/fashion_mnist.py:runlocal,norm=lrn',
        '--config.checkpoint_every_steps=2', '--config.log_every_steps=2',
        '--config.keep_checkpoints=0',
        '--config.optimizer.schedule=constant',
        '--config.optimizer.warmup_epochs=0.0', '--config.optimizer.lr=0.01',
        '--config.data.eval_split=test[:32]', '--config.eval_batch_size=32',
        '--config.peer_timeout_s=20',
        # A third less compile time, the same training (tests/test_layers.py
        # checks XLA's gradients against the custom ones): a multi-process
        # run compiles everything afresh (compile_cache.py says why).
        '--config.model.aux=False', '--config.model.conv_grad=xla',
        '--config.model.max_pool_grad=xla']

def env_with(devices, **extra):
  return subprocess_env(devices, **{k: str(v) for k, v in extra.items()})


# Under pytest-xdist these run one after another on one worker: each starts
# two trainers, and their time bounds assume the machine's other core is not
# also running two.
pytestmark = pytest.mark.xdist_group('processes')


def test_these_tests_share_one_xdist_worker(request):
  """`--dist loadgroup` (`make test`) keeps the group on one worker only if
  pytest-xdist could tag the test's id with it (under pytest 9 it cannot,
  and the group silently had no effect)."""
  if getattr(request.config.option, 'loadgroup', False):
    assert request.node.nodeid.endswith('@processes'), request.node.nodeid


def free_port():
  with socket.socket() as s:
    s.bind(('localhost', 0))
    return s.getsockname()[1]


def run_two_processes(args, timeout=420, module='inception_jax.main',
                      exit_times=None):
  """Starts processes 0 and 1 of the command line; returns both results.

  `exit_times`, a list, gets each process's exit time (time.time()).
  """
  port = free_port()
  procs = []
  try:
    for i in range(2):
      procs.append(subprocess.Popen(
          [sys.executable, '-m', module, *args,
           '--config.multihost=True'],
          cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
          env=env_with(2, JAX_COORDINATOR_ADDRESS=f'localhost:{port}',
                       JAX_NUM_PROCESSES=2, JAX_PROCESS_ID=i)))
    # Read both pipes at once, so neither process blocks on a full pipe
    # while the other is waited for.
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
      outputs = list(pool.map(
          lambda p: (p.communicate(timeout=timeout), time.time()), procs))
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
        p.wait()
  if exit_times is not None:
    exit_times.extend(t for _, t in outputs)
  return [(p.returncode, out, err)
          for p, ((out, err), _) in zip(procs, outputs)]


def assert_both_succeeded(results):
  """Both exited 0; otherwise both processes' output (one may have stopped
  the other)."""
  assert all(rc == 0 for rc, _, _ in results), '\n'.join(
      f'process {i} (exit {rc}):\n{out[-2000:]}\n{err[-3000:]}'
      for i, (rc, out, err) in enumerate(results))


def params_at(workdir, step):
  """A saved state, onto one device of this (8-device) test process."""
  path = os.path.join(workdir, 'checkpoints', str(step), 'state')
  checkpointer = ocp.StandardCheckpointer()
  tree = checkpointer.metadata(path).item_metadata.tree
  device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  target = jax.tree_util.tree_map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=device), tree)
  return checkpointer.restore(path, target)


def assert_states_close(actual, expected):
  flat_a = jax.tree_util.tree_leaves_with_path(actual)
  flat_e = jax.tree_util.tree_leaves_with_path(expected)
  assert [p for p, _ in flat_a] == [p for p, _ in flat_e]
  for (path, a), (_, e) in zip(flat_a, flat_e):
    # The gradient sums are split over processes, so they add in another
    # order: float32 round-off, not bit equality.
    np.testing.assert_allclose(np.asarray(a), np.asarray(e), rtol=1e-3,
                               atol=1e-4, err_msg=jax.tree_util.keystr(path))


STEPS = 12  # the runs below; the faults' chain needs room for three


@pytest.fixture(scope='module')
def uninterrupted(tmp_path_factory):
  """Two processes train `STEPS` steps without a break (checkpoints at 2, 4,
  6, ...)."""
  workdir = tmp_path_factory.mktemp('uninterrupted') / 'run'
  results = run_two_processes(ARGS + [f'--config.total_steps={STEPS}',
                                      f'--workdir={workdir}'],
                              module='tests.runner')
  assert_both_succeeded(results)
  return workdir, results


def test_two_processes_equal_one_process(uninterrupted, tmp_path):
  reference = tmp_path / 'reference'
  ref = subprocess.run(
      [sys.executable, '-m', 'tests.runner', '--paired_processes=2', *ARGS,
       f'--config.total_steps={STEPS}', f'--workdir={reference}'],
      cwd=REPO, env=env_with(4), capture_output=True, text=True, timeout=420)
  assert ref.returncode == 0, ref.stderr[-3000:]
  assert 'on 4 device(s) (1 process(es))' in ref.stdout

  workdir, ((_, out0, _), (_, out1, _)) = uninterrupted
  assert 'on 4 device(s) (2 process(es))' in out0
  # Only process 0 reports and writes metrics.
  assert f'step {STEPS}/{STEPS}' in out0 and 'step ' not in out1 and 'Done' not in out1
  records = [json.loads(l) for l in
             (workdir / 'metrics.jsonl').read_text().splitlines()]
  assert [r['step'] for r in records if 'train/loss' in r] == list(
      range(2, STEPS + 1, 2))
  # Each of the 32 evaluation images counted once over both processes.
  assert [r['eval/num_examples'] for r in records
          if 'eval/num_examples' in r] == [32]
  assert json.loads((workdir / 'config.json').read_text())['multihost']
  # Both processes saved the input position: the global stream's, the same.
  for i in range(2):
    position = json.loads((workdir / 'checkpoints' / '4' / 'data_iterator' /
                           f'process_{i}-of-2.json').read_text())
    assert position['examples'] == 4 * 16 and position['process_count'] == 2
  # The lock, held by process 0 alone, was given back.
  assert not (workdir / 'lock.json').exists()

  # Same parameters (and optimiser state, BatchNorm statistics) as one
  # process over the same global batches.
  for step in (4, STEPS):
    assert_states_close(params_at(workdir, step), params_at(reference, step))
  ref_losses = [json.loads(l)['train/loss'] for l in
                (reference / 'metrics.jsonl').read_text().splitlines()
                if 'train/loss' in l]
  mp_losses = [r['train/loss'] for r in records if 'train/loss' in r]
  np.testing.assert_allclose(mp_losses, ref_losses, rtol=1e-4)


# --- Faults: a preemption notice on some hosts, a host lost. ---------------

def _stopped_at(err):
  """The steps a process logged that it stops at after a SIGTERM."""
  return [int(s) for s in re.findall(r'saves and stops at step (\d+)', err)]


def _signal_time(out):
  match = re.search(r'signalled at step \d+ at ([\d.]+)', out)
  assert match, out[-2000:]
  return float(match.group(1))


def _run_with_fault(workdir, step, fault):
  """Two processes on the chain's command, `fault` (runner flags) after
  `step`; returns both results and each process's exit time."""
  exit_times = []
  results = run_two_processes(
      ARGS + [f'--config.total_steps={STEPS}', f'--workdir={workdir}',
              f'--signal_at_step={step}', *fault],
      module='tests.runner', exit_times=exit_times)
  return results, exit_times


def _assert_stopped_together(results, exit_times, workdir, after, signalled):
  """Both processes exit 0 having logged one stop step, the step after the
  furthest any process had asked about when the notice spread: `after` to
  `after + 3` (JAX agrees on it in background threads while the
  millisecond steps go on; 4 to 6 seen after a notice at 3). The step is
  saved, complete, and the run is not marked finished."""
  assert_both_succeeded(results)
  (_, out0, err0), (_, out1, err1) = results
  stop = _stopped_at(err0)
  assert stop == _stopped_at(err1) and len(stop) == 1, (err0[-2000:],
                                                          err1[-2000:])
  stop, = stop
  assert after <= stop <= after + 3, stop
  assert f'SIGTERM: saved a checkpoint at step {stop}' in out0
  assert stop in saved_steps(str(workdir))
  params_at(workdir, stop)  # every array reads back
  assert not (workdir / 'summary.json').exists()
  assert not (workdir / 'lock.json').exists()
  signalled_at = _signal_time(out1 if signalled == '1' else out0)
  assert max(exit_times) - signalled_at < 60
  return stop


def test_sigterm_on_one_then_all_then_a_lost_host_end_as_one_run(
    uninterrupted, tmp_path):
  """One workdir, the faults one after another, each run the same command
  (`STEPS` steps) again, as a pod's hosts would be restarted:

  1. SIGTERM to process 1 only after step 3 (a notice on one host): both
     stop at one step and save it.
  2. SIGTERM to both after step 7: the same, resumed from 1.'s step.
  3. SIGKILL of process 1 after step 11, once step 10's checkpoint is on
     disk (a host lost): process 0 ends non-zero within the peer timeout
     instead of hanging in a collective, and says so.
  4. The same command again finishes: bit-identical to the uninterrupted run,
     so every resume above was exact.
  """
  workdir = tmp_path / 'run'
  results, times = _run_with_fault(
      workdir, 3, ['--signal=TERM', '--signal_processes=1'])
  first = _assert_stopped_together(results, times, workdir, 3, '1')
  if first in (4, 6):  # a step the uninterrupted run saved too
    assert_trees_equal(params_at(workdir, first),
                       params_at(uninterrupted[0], first))

  results, times = _run_with_fault(
      workdir, 7, ['--signal=TERM', '--signal_processes=0,1'])
  assert f'Resuming from the checkpoint at step {first}' in results[0][1]
  _assert_stopped_together(results, times, workdir, 7, '0,1')

  results, times = _run_with_fault(
      workdir, 11, ['--signal=KILL', '--signal_processes=1',
                    '--kill_after_checkpoint=10'])
  (rc0, out0, err0), (rc1, out1, _) = results
  assert rc1 == -9
  # Process 0 does not hang in a collective: it ends, non-zero, within the
  # peer timeout (20 s here) and some slack for a loaded machine.
  assert rc0 != 0, out0[-2000:]
  assert times[0] - _signal_time(out1) < 20 + 40
  # It says that a peer was lost: its own line when the failed collective
  # reaches Python, JAX's when the coordination service's heartbeat check
  # or gloo ends the process first.
  assert re.search(
      r'lost another process of this run|another task died|'
      r'[Gg]loo|heartbeat', err0), err0[-3000:]
  if rc0 == 3:
    line, = [l for l in err0.splitlines() if l.startswith('error: ')]
    assert 'Rerun the same command on every host' in line
  assert 'peer_timeout_s=20s' in out0
  assert 10 in saved_steps(str(workdir))
  assert not (workdir / 'summary.json').exists()

  results = run_two_processes(ARGS + [f'--config.total_steps={STEPS}',
                                      f'--workdir={workdir}'],
                              module='tests.runner')
  assert_both_succeeded(results)
  assert re.search(r'Resuming from the checkpoint at step 1[01]\b',
                   results[0][1]), results[0][1][-2000:]
  assert_trees_equal(params_at(workdir, STEPS),
                     params_at(uninterrupted[0], STEPS))


def _recorded_stream(directory, processes):
  """The global stream of example digests a session trained on: each step's
  local batches in process order, as the global array lays them out."""
  per_process = [[json.loads(l) for l in
                  (directory / f'process_{i}.jsonl').read_text().splitlines()]
                 for i in range(processes)]
  assert len({len(p) for p in per_process}) == 1
  return [d for step in zip(*per_process) for batch in step for d in batch]


def test_resume_on_another_process_count_continues_the_global_order(
    tmp_path):
  """2 processes, then 1, then 2 again on one workdir: together they train
  on exactly the examples (and augmentations) of one uninterrupted stream."""
  workdir, record = tmp_path / 'run', tmp_path / 'record'
  args = ARGS + [f'--workdir={workdir}']
  sessions = []
  for steps, processes in ((2, 2), (4, 1), (6, 2)):
    directory = record / str(steps)
    session_args = args + [f'--config.total_steps={steps}',
                           f'--record_batches={directory}']
    if processes == 2:
      results = run_two_processes(session_args, module='tests.runner')
    else:
      done = subprocess.run(
          [sys.executable, '-m', 'tests.runner', *session_args], cwd=REPO,
          env=env_with(4), capture_output=True, text=True, timeout=420)
      results = [(done.returncode, done.stdout, done.stderr)]
    assert_both_succeeded(results)
    sessions.append((results[0], _recorded_stream(directory, processes)))
  (_, out1, err1), stream1 = sessions[1]
  (_, out2, err2), stream2 = sessions[2]
  assert 'Resuming from the checkpoint at step 2' in out1
  assert ('Input saved by 2 process(es) resumes on 1 at example 32 of the '
          'same global order') in err1
  assert 'Resuming from the checkpoint at step 4' in out2
  assert ('Input saved by 1 process(es) resumes on 2 at example 64 of the '
          'same global order') in err2
  trained = sessions[0][1] + stream1 + stream2

  # The uninterrupted stream, read here by one iterator: the same examples
  # with the same augmentation at every position, none repeated or missed.
  from inception_jax.data import pipeline  # pylint: disable=g-import-not-at-top
  from tests import runner  # pylint: disable=g-import-not-at-top
  from tests.helpers import tiny_config  # pylint: disable=g-import-not-at-top
  config = tiny_config('runlocal,norm=lrn')
  reference = runner.RecordedInput(
      pipeline.create_train_iterator(config.data, global_batch_size=16,
                                     seed=config.seed, process_count=1,
                                     process_index=0),
      str(tmp_path / 'reference'))
  for _ in range(6):
    next(reference)
  assert trained == _recorded_stream(tmp_path / 'reference', 1)
  assert len(trained) == len(set(trained)) == 6 * 16


# --- The Cloud TPU launcher on a fake pod of two local "workers". ----------

FAKE_POD_GCLOUD = '''#!{python}
"""gcloud for a pod of two workers on this machine, in POD/worker_<i>,
gs://b/ in POD/bucket. ssh runs the command in every worker's folder with the
JAX_* variables of a two-process run (setup unpacks the code and links this
repository's venv instead of installing); describe answers from POD/states
(the last line repeats); delete ends the workers' process groups."""
import glob, json, os, shutil, signal, socket, subprocess, sys, tarfile
pod, repo = {pod!r}, {repo!r}
argv = sys.argv[1:]
with open(os.path.join(pod, 'calls.jsonl'), 'a') as f:
  f.write(json.dumps(argv) + '\\n')
words = [a for a in argv if not a.startswith('-')]
value = lambda name: next(a.split('=', 1)[1] for a in argv
                          if a.startswith(name + '='))
homes = [os.path.join(pod, f'worker_{{i}}') for i in range(2)]
local = lambda text: text.replace('gs://b/', os.path.join(pod, 'bucket') + '/')
if words[:2] == ['storage', 'ls']:
  found = sorted(glob.glob(local(words[2])))
  if not found:
    sys.exit('ERROR: One or more URLs matched no objects.')
  bucket = os.path.join(pod, 'bucket') + '/'
  print('\\n'.join('gs://b/' + p[len(bucket):] for p in found))
elif words[3] == 'describe':
  with open(os.path.join(pod, 'states')) as f:
    states = f.read().split()
  print(states[0])
  if len(states) > 1:
    with open(os.path.join(pod, 'states'), 'w') as f:
      f.write(' '.join(states[1:]))
elif words[3] == 'delete':
  for pidfile in glob.glob(os.path.join(pod, 'worker_*', 'inception_jax',
                                        'logs', '*.pid')):
    try:
      os.killpg(int(open(pidfile).read()), signal.SIGKILL)
    except (OSError, ValueError):
      pass
elif words[3] == 'scp':
  for home in homes:
    os.makedirs(home, exist_ok=True)
    shutil.copy(words[4], os.path.join(home, words[5].split(':', 1)[1]))
elif words[3] == 'ssh':
  command = local(value('--command'))
  with socket.socket() as s:
    s.bind(('localhost', 0))
    port = s.getsockname()[1]
  procs = []
  for i, home in enumerate(homes):
    if 'requirements.txt' in command:  # setup: unpack, link the venv
      code = os.path.join(home, 'inception_jax')
      shutil.rmtree(code, ignore_errors=True)
      with tarfile.open(os.path.join(home, 'inception_jax.tar.gz')) as tar:
        tar.extractall(code)
      os.symlink(os.path.join(repo, '.venv'), os.path.join(code, '.venv'))
      continue
    env = dict(os.environ, JAX_PROCESS_ID=str(i),
               JAX_COORDINATOR_ADDRESS=f'localhost:{{port}}',
               JAX_NUM_PROCESSES='2')
    procs.append(subprocess.Popen(['bash', '-c', command], cwd=home, env=env))
  sys.exit(max([p.wait() for p in procs] or [0]))
'''


def _pod(tmp_path, states):
  pod = tmp_path / 'pod'
  (pod / 'bin').mkdir(parents=True)
  (pod / 'states').write_text(' '.join(states))
  gcloud = pod / 'bin' / 'gcloud'
  gcloud.write_text(FAKE_POD_GCLOUD.format(python=sys.executable,
                                           pod=str(pod), repo=REPO))
  gcloud.chmod(0o755)
  return pod


def _launch(pod, action, *extra, timeout=300):
  """experiments.launch on the fake pod: the smoke sweep's reduced member
  with the tests' settings, 60 steps (long enough to stop mid-run)."""
  sets = [f'--set={a[len("--config."):]}' for a in ARGS
          if a.startswith('--config.')]
  env = env_with(2)
  env['PATH'] = f'{pod / "bin"}:{env["PATH"]}'
  return subprocess.run(
      [sys.executable, '-m', 'experiments.launch', '--sweep=smoke',
       '--only=module-reduced', '--config=configs/fashion_mnist.py',
       '--config_args=runlocal,norm=lrn', *sets, '--set=total_steps=60',
       '--set=checkpoint_every_steps=10',
       '--tpu=inc', '--zone=z', '--accelerator=v4-16', '--root=gs://b/sweep',
       f'--action={action}', '--dry_run=False', '--poll_s=2',
       '--create_retry_s=0', f'--tarball={pod / "code.tar.gz"}', *extra],
      cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)


def _sweep_alive(pod):
  pids = [int(p.read_text()) for p in
          pod.glob('worker_*/inception_jax/logs/sweep-smoke.pid')]
  return [pid for pid in pids if _alive(pid)]


def _alive(pid):
  try:
    with open(f'/proc/{pid}/stat', encoding='utf-8') as f:
      return f.read().rsplit(')', 1)[1].split()[0] != 'Z'
  except OSError:
    return False


def test_launcher_stop_saves_every_member_and_watch_finishes_the_sweep(
    tmp_path):
  """`--action=stop` on a running sweep: both trainers save one step and
  stop, and so do both sweep loops; `--action=watch` then finds the slice
  preempted, recreates it, and the sweep resumes from that checkpoint and
  finishes."""
  pod = _pod(tmp_path, ['PREEMPTED', 'READY'])
  started = _launch(pod, 'setup,start')
  assert started.returncode == 0, started.stdout + started.stderr
  workdir = pod / 'bucket' / 'sweep' / 'module-reduced_seed-0'
  try:
    deadline = time.time() + 240
    while not (workdir / 'checkpoints' / '10').exists():
      assert time.time() < deadline, 'the sweep never saved step 10'
      time.sleep(0.5)
    stopped = _launch(pod, 'stop')
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    deadline = time.time() + 120
    while _sweep_alive(pod):
      assert time.time() < deadline, 'a sweep loop did not stop'
      time.sleep(0.5)
  finally:
    for pid in _sweep_alive(pod):
      os.killpg(pid, 9)
  logs = [(pod / f'worker_{i}' / 'inception_jax' / 'logs' /
           'sweep-smoke.log').read_text() for i in range(2)]
  stops = [_stopped_at(log) for log in logs]
  assert stops[0] == stops[1] and len(stops[0]) == 1, logs
  stop = stops[0][0]
  assert f'SIGTERM: saved a checkpoint at step {stop}' in logs[0]
  assert all('rerun the sweep to resume it' in log for log in logs), logs
  assert 10 < stop < 60 and stop in saved_steps(str(workdir))
  assert not (workdir / 'summary.json').exists()

  watched = _launch(pod, 'watch', timeout=400)
  assert watched.returncode == 0, watched.stdout + watched.stderr
  assert 'watch: inc is PREEMPTED; recreation 1/10' in watched.stdout
  assert 'every member of the sweep has finished (1)' in watched.stdout
  log = (pod / 'worker_0' / 'inception_jax' / 'logs' /
         'sweep-smoke.log').read_text()
  assert f'Resuming from the checkpoint at step {stop}' in log
  assert json.loads((workdir / 'summary.json').read_text())['step'] == 60
