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

import json
import os
import socket
import subprocess
import sys

import jax
import numpy as np
import orbax.checkpoint as ocp

from tests.helpers import REPO, subprocess_env

ARGS = ['--config=configs/fashion_mnist.py:runlocal,norm=lrn',
        '--config.checkpoint_every_steps=2', '--config.log_every_steps=2',
        '--config.keep_checkpoints=0',
        '--config.optimizer.schedule=constant',
        '--config.optimizer.warmup_epochs=0.0', '--config.optimizer.lr=0.01',
        '--config.data.eval_split=test[:32]', '--config.eval_batch_size=32']

def env_with(devices, **extra):
  return subprocess_env(devices, **{k: str(v) for k, v in extra.items()})


def free_port():
  with socket.socket() as s:
    s.bind(('localhost', 0))
    return s.getsockname()[1]


def run_two_processes(args, timeout=420, module='inception_jax.main'):
  """Starts processes 0 and 1 of the command line; returns both results."""
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
    outputs = [p.communicate(timeout=timeout) for p in procs]
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
        p.wait()
  return [(p.returncode, out, err) for p, (out, err) in zip(procs, outputs)]


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


def test_two_processes_equal_one_process_and_resume(tmp_path):
  reference = tmp_path / 'reference'
  ref = subprocess.run(
      [sys.executable, '-m', 'tests.runner', '--paired_processes=2', *ARGS,
       '--config.total_steps=6', f'--workdir={reference}'],
      cwd=REPO, env=env_with(4), capture_output=True, text=True, timeout=420)
  assert ref.returncode == 0, ref.stderr[-3000:]
  assert 'on 4 device(s) (1 process(es))' in ref.stdout

  workdir = tmp_path / 'two'
  results = run_two_processes(ARGS + ['--config.total_steps=4',
                                      f'--workdir={workdir}'])
  assert_both_succeeded(results)
  (_, out0, _), (_, out1, _) = results
  assert 'on 4 device(s) (2 process(es))' in out0
  # Only process 0 reports.
  assert 'step 4/4' in out0 and 'step ' not in out1 and 'Done' not in out1
  records = [json.loads(l) for l in
             (workdir / 'metrics.jsonl').read_text().splitlines()]
  assert [r['step'] for r in records if 'train/loss' in r] == [2, 4]
  assert json.loads((workdir / 'config.json').read_text())['multihost']
  # Both processes saved the input position: the global stream's, the same.
  for i in range(2):
    position = json.loads((workdir / 'checkpoints' / '4' / 'data_iterator' /
                           f'process_{i}-of-2.json').read_text())
    assert position['examples'] == 4 * 16 and position['process_count'] == 2

  # Same parameters (and optimiser state, BatchNorm statistics) as one
  # process over the same global batches.
  assert_states_close(params_at(workdir, 4), params_at(reference, 4))
  ref_losses = [json.loads(l)['train/loss'] for l in
                (reference / 'metrics.jsonl').read_text().splitlines()
                if 'train/loss' in l]
  mp_losses = [r['train/loss'] for r in records if 'train/loss' in r]
  np.testing.assert_allclose(mp_losses, ref_losses[:2], rtol=1e-4)

  # Resume with 2 processes from step 4 to step 6.
  results = run_two_processes(ARGS + ['--config.total_steps=6',
                                      f'--workdir={workdir}'])
  assert_both_succeeded(results)
  assert 'Resuming from the checkpoint at step 4' in results[0][1]
  assert_states_close(params_at(workdir, 6), params_at(reference, 6))
  steps = sorted(int(p.name) for p in (workdir / 'checkpoints').iterdir()
                 if p.name.isdigit())
  assert steps == [2, 4, 6]


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
