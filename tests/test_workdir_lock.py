"""One trainer per workdir: a live holder refuses a second start in one line;
a lock left by a dead process or a silent host is taken over.

(A lock left by a SIGKILLed trainer, taken over by its rerun, is checked in
test_checkpoint.py's SIGKILL test.)
"""

import json
import os
import socket
import subprocess
import sys
import time

import pytest

from inception_jax import train
from inception_jax import workdir_lock
from tests.helpers import REPO, TINY_CONFIG, subprocess_env, tiny_config


def write_lock(workdir, *, pid, host=None, heartbeat=None, since=None):
  os.makedirs(workdir, exist_ok=True)
  now = time.time()
  record = {'host': host or socket.gethostname(), 'pid': pid, 'token': 'x',
            'since': since or now - 3600,
            'heartbeat': now if heartbeat is None else heartbeat}
  with open(os.path.join(workdir, workdir_lock.LOCK_NAME), 'w') as f:
    json.dump(record, f)


@pytest.fixture
def live_pid():
  """A process of this host that stays alive while the test runs."""
  proc = subprocess.Popen(['sleep', '300'])
  yield proc
  proc.kill()
  proc.wait()


def test_live_holder_refuses_a_second_trainer_in_one_line(tmp_path, live_pid):
  workdir = str(tmp_path / 'run')
  write_lock(workdir, pid=live_pid.pid)
  start = time.time()
  with pytest.raises(ValueError) as e:
    train.train_and_evaluate(tiny_config(), workdir)
  message = str(e.value)
  assert '\n' not in message
  assert message.startswith('another trainer is running in --workdir'), message
  assert f'host {socket.gethostname()}, pid {live_pid.pid}, since ' in message
  assert 'stop it first' in message
  # Refused before writing anything or training (no compilation).
  assert sorted(os.listdir(workdir)) == [workdir_lock.LOCK_NAME]
  assert time.time() - start < 60


def test_lock_of_a_killed_process_is_taken_over(tmp_path, live_pid):
  workdir = str(tmp_path / 'run')
  write_lock(workdir, pid=live_pid.pid)
  with pytest.raises(workdir_lock.WorkdirLockedError):
    workdir_lock.WorkdirLock(workdir).acquire()
  live_pid.kill()  # SIGKILL: nothing released
  live_pid.wait()
  lock = workdir_lock.WorkdirLock(workdir).acquire()
  record = lock.read()
  assert record['pid'] == os.getpid() and record['token'] == lock.token
  lock.release()
  assert not os.path.exists(lock.path)


def test_lease_decides_for_another_host(tmp_path):
  workdir = str(tmp_path / 'run')
  # Another host, heartbeat 10 s ago: alive as far as anyone can tell.
  write_lock(workdir, pid=1, host='other-vm', heartbeat=time.time() - 10)
  with pytest.raises(workdir_lock.WorkdirLockedError,
                     match='host other-vm, pid 1, since .* 10s ago'):
    workdir_lock.WorkdirLock(workdir).acquire()
  # Silent for longer than the lease (a lost VM): taken over.
  write_lock(workdir, pid=1, host='other-vm',
             heartbeat=time.time() - workdir_lock.LEASE_S - 1)
  workdir_lock.WorkdirLock(workdir).acquire().release()


def test_a_holder_whose_lock_was_taken_stops_at_its_next_heartbeat(tmp_path):
  workdir = str(tmp_path / 'run')
  lock = workdir_lock.WorkdirLock(workdir, heartbeat_s=0).acquire()
  before = lock.read()['heartbeat']
  time.sleep(0.01)
  lock.heartbeat()
  assert lock.read()['heartbeat'] > before
  write_lock(workdir, pid=1, host='other-vm')  # e.g. a forced takeover
  with pytest.raises(workdir_lock.WorkdirLockedError,
                     match='another trainer took over the lock'):
    lock.heartbeat()
  lock.release()  # not ours any more: left alone
  assert json.load(open(lock.path))['host'] == 'other-vm'


def test_unreadable_lock_file_is_stale(tmp_path):
  workdir = tmp_path / 'run'
  workdir.mkdir()
  path = workdir / workdir_lock.LOCK_NAME
  path.write_text('{"host": "a", "pi')  # half written by a holder that died
  lock = workdir_lock.WorkdirLock(str(workdir)).acquire()
  # Taken over: the file now names this process, with its token.
  assert lock.held
  record = json.loads(path.read_text())
  assert (record['pid'], record['token']) == (os.getpid(), lock.token)
  lock.release()
  assert not path.exists()


def test_two_trainers_started_at_once_exactly_one_trains(tmp_path):
  workdir = tmp_path / 'run'
  args = [sys.executable, '-m', 'inception_jax.main',
          f'--config={TINY_CONFIG}', f'--workdir={workdir}',
          '--config.total_steps=2', '--config.data.eval_split=test[:32]',
          '--config.eval_batch_size=32']
  procs = [subprocess.Popen(args, cwd=REPO, env=subprocess_env(8),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True) for _ in range(2)]
  try:
    outputs = [p.communicate(timeout=600) for p in procs]
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
        p.wait()
  codes = sorted(p.returncode for p in procs)
  assert codes == [0, 1], [(p.returncode, err[-2000:])
                           for p, (_, err) in zip(procs, outputs)]
  winner = next(i for i, p in enumerate(procs) if p.returncode == 0)
  loser_err = outputs[1 - winner][1].strip().splitlines()
  assert 'Traceback' not in outputs[1 - winner][1]
  assert loser_err[-1].startswith(
      'error: another trainer is running in --workdir'), loser_err[-3:]
  assert f'pid {procs[winner].pid}, since ' in loser_err[-1]
  assert 'step 2/2' in outputs[winner][0]
  assert 'step ' not in outputs[1 - winner][0]
  # The winner released its lock at the end.
  assert not (workdir / workdir_lock.LOCK_NAME).exists()
  assert json.loads((workdir / 'summary.json').read_text())['step'] == 2


def test_a_held_lock_refuses_a_two_process_start_in_both(tmp_path, live_pid):
  # One lock for the run: process 0 asks, process 1 learns the answer by a
  # broadcast and stops too, instead of hanging in the next collective.
  from tests.test_multiprocess import ARGS, run_two_processes  # pylint: disable=g-import-not-at-top
  workdir = str(tmp_path / 'run')
  write_lock(workdir, pid=live_pid.pid)
  results = run_two_processes(ARGS + [f'--workdir={workdir}'], timeout=300)
  (rc0, _, err0), (rc1, _, err1) = results
  assert (rc0, rc1) == (1, 1), (err0[-2000:], err1[-2000:])
  assert err0.strip().splitlines()[-1].startswith(
      f'error: another trainer is running in --workdir {workdir}: host ')
  assert err1.strip().splitlines()[-1].startswith(
      'error: process 0 could not lock --workdir')
  assert sorted(os.listdir(workdir)) == [workdir_lock.LOCK_NAME]
