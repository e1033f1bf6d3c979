"""One trainer per workdir: `DIR/lock.json` names its holder and its heartbeat.

A relaunch while the old trainer still runs would let two processes write the
same checkpoints and `metrics.jsonl`. Process 0 of a run takes the lock after
writing `config.json` and gives it back at the end; a second trainer on a live
workdir stops at once with one line naming the holder (host, pid, since when).

The file holds ``{host, pid, token, since, heartbeat}`` (times are UTC
seconds). The holder refreshes ``heartbeat`` from the training loop at most
every `HEARTBEAT_S` seconds. A lock is stale, and is taken over, when

* its host is this host and its pid is no longer alive (SIGKILL, OOM kill), or
* its heartbeat is older than `LEASE_S` (a lost VM; a pid reused on a
  recreated VM with the same host name), or
* it is this very process's (an earlier call in a notebook that raised).

What it guarantees:

* Local disks (and NFS v3+, where O_EXCL is atomic): creation is atomic
  (``O_CREAT | O_EXCL``), so of two starts at once exactly one holds the lock.
  Takers of a stale lock are serialised by a second O_EXCL file
  (``lock.json.takeover``), so of two takers only one wins; that guard, if its
  taker died in the microseconds it exists, is itself stale after
  `LEASE_S`.
* gs://: epath has no atomic create-if-absent, so a start writes its lock,
  waits `GCS_SETTLE_S` and reads it back; it holds the lock if it reads its
  own token (GCS is strongly consistent: last writer wins). Two starts more
  than `GCS_SETTLE_S` apart never both hold it; two closer than that may, and
  then the one whose token was overwritten stops at its next heartbeat with
  the same one-line error (every heartbeat checks the token). That is the
  nearest safe equivalent without object generation preconditions: it bounds
  how long two writers can overlap (one heartbeat interval), it does not
  exclude the overlap.
* Cross-host staleness trusts the hosts' clocks to within the lease.
"""

from __future__ import annotations

import atexit
import datetime
import json
import os
import socket
import time
import uuid
from typing import Any, Dict, Optional

from etils import epath

LOCK_NAME = 'lock.json'
LEASE_S = 1800.0  # a holder silent this long is presumed gone
HEARTBEAT_S = 60.0  # the loop refreshes the heartbeat at most this often
GCS_SETTLE_S = 5.0


def _is_local(path: str) -> bool:
  return '://' not in path


def _pid_alive(pid: int) -> bool:
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:  # alive, another user's
    return True
  # A zombie (killed, not yet reaped by its parent) holds nothing.
  try:
    with open(f'/proc/{pid}/stat', encoding='utf-8') as f:
      return f.read().rsplit(')', 1)[1].split()[0] != 'Z'
  except (OSError, IndexError):
    return True


def _utc(seconds: float) -> str:
  return datetime.datetime.fromtimestamp(
      seconds, datetime.timezone.utc).strftime('%Y-%m-%d %H:%M:%SZ')


class WorkdirLockedError(ValueError):
  """Another live trainer holds the workdir."""


class WorkdirLock:
  """The lock of one workdir; `acquire`, `heartbeat` in the loop, `release`."""

  def __init__(self, workdir: str, *, lease_s: Optional[float] = None,
               heartbeat_s: Optional[float] = None):
    self.workdir = str(workdir)
    self.path = epath.Path(workdir) / LOCK_NAME
    self.lease_s = LEASE_S if lease_s is None else lease_s
    self.heartbeat_s = HEARTBEAT_S if heartbeat_s is None else heartbeat_s
    self.host = socket.gethostname()
    self.pid = os.getpid()
    self.token = uuid.uuid4().hex
    self.since = 0.0
    self.last_beat = 0.0
    self.held = False

  # --- The file. ---

  def _record(self, now: float) -> str:
    return json.dumps({'host': self.host, 'pid': self.pid,
                       'token': self.token, 'since': self.since,
                       'heartbeat': now})

  def read(self) -> Optional[Dict[str, Any]]:
    """The holder's record; None if there is none; {} if unreadable."""
    try:
      text = self.path.read_text()
    except FileNotFoundError:
      return None
    try:
      record = json.loads(text)
      return record if isinstance(record, dict) else {}
    except ValueError:
      return {}  # half written by a holder that died: stale below

  def _write_atomically(self, text: str) -> None:
    if _is_local(self.workdir):
      tmp = f'{self.path}.{self.token}.tmp'
      with open(tmp, 'w', encoding='utf-8') as f:
        f.write(text)
      os.replace(tmp, self.path)
    else:
      self.path.write_text(text)

  def _create_exclusive(self, path: str, text: str) -> bool:
    try:
      fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
      return False
    with os.fdopen(fd, 'w', encoding='utf-8') as f:
      f.write(text)
    return True

  # --- Decisions. ---

  def stale(self, record: Dict[str, Any], now: Optional[float] = None) -> bool:
    now = time.time() if now is None else now
    if not record or 'heartbeat' not in record:
      return True
    if record.get('host') == self.host:
      if record.get('pid') == self.pid:
        return True
      if not _pid_alive(int(record.get('pid', 0))):
        return True
    return now - float(record['heartbeat']) > self.lease_s

  def _error(self, record: Dict[str, Any], lost: bool = False) -> str:
    now = time.time()
    age = now - float(record.get('heartbeat', now))
    wait = max(0, int(self.lease_s - age))
    what = ('another trainer took over the lock of' if lost else
            'another trainer is running in')
    return (f'{what} --workdir {self.workdir}: host {record.get("host")}, '
            f'pid {record.get("pid")}, since '
            f'{_utc(float(record.get("since", now)))} (last heartbeat '
            f'{age:.0f}s ago); stop it first, or if its machine is gone, '
            f'wait {wait}s for its lease to expire or delete {self.path}.')

  # --- The protocol. ---

  def acquire(self) -> 'WorkdirLock':
    """Takes the lock or raises WorkdirLockedError naming the holder."""
    self.path.parent.mkdir(parents=True, exist_ok=True)
    now = time.time()
    self.since = now
    if _is_local(self.workdir):
      if not self._create_exclusive(str(self.path), self._record(now)):
        record = self.read()
        if record is not None and not self.stale(record):
          raise WorkdirLockedError(self._error(record))
        self._take_over_local(record)
    else:
      record = self.read()
      if record is not None and not self.stale(record):
        raise WorkdirLockedError(self._error(record))
      self.path.write_text(self._record(now))
      time.sleep(GCS_SETTLE_S)
      record = self.read() or {}
      if record.get('token') != self.token:
        raise WorkdirLockedError(self._error(record))
    self.held = True
    self.last_beat = now
    atexit.register(self.release)
    return self

  def _take_over_local(self, stale_record: Optional[Dict[str, Any]]) -> None:
    guard = f'{self.path}.takeover'
    for _ in range(20):  # another taker holds the guard for microseconds
      if self._create_exclusive(guard, self._record(time.time())):
        break
      try:
        guard_age = time.time() - os.path.getmtime(guard)
      except FileNotFoundError:
        continue
      if guard_age > self.lease_s:  # its taker died inside the guard
        os.replace(guard, f'{guard}.{self.token}.old')
        os.remove(f'{guard}.{self.token}.old')
        continue
      time.sleep(0.1)
    else:
      raise WorkdirLockedError(self._error(self.read() or stale_record or {}))
    try:
      # Under the guard nobody else changes the file but a live holder's
      # heartbeat; check again that it is the stale one.
      record = self.read()
      if record is not None and not self.stale(record):
        raise WorkdirLockedError(self._error(record))
      self._write_atomically(self._record(time.time()))
    finally:
      os.remove(guard)

  def heartbeat(self, force: bool = False) -> None:
    """Refreshes the heartbeat (rate-limited); raises if the lock was lost."""
    if not self.held:
      return
    now = time.time()
    if not force and now - self.last_beat < self.heartbeat_s:
      return
    record = self.read() or {}
    if record.get('token') != self.token:
      self.held = False
      raise WorkdirLockedError(self._error(record, lost=True))
    self._write_atomically(self._record(now))
    self.last_beat = now

  def release(self) -> None:
    if not self.held:
      return
    self.held = False
    try:
      record = self.read() or {}
      if record.get('token') == self.token:
        self.path.unlink()
    except OSError:
      pass  # a workdir gone or read-only: the lease ends it
    try:
      atexit.unregister(self.release)
    except Exception:  # pylint: disable=broad-except
      pass


class _NotHeld:
  """What processes other than 0 hold: nothing."""

  def heartbeat(self, force: bool = False) -> None:
    del force

  def release(self) -> None:
    pass


def acquire_for_run(workdir: str, is_primary: bool):
  """Process 0 takes the workdir's lock; every process learns if it failed.

  One lock per run, not per process: the other processes wait for process
  0's answer (a broadcast), so a refused multi-process start stops in every
  process at once instead of hanging in the next collective.
  """
  import jax  # pylint: disable=g-import-not-at-top
  lock, error = _NotHeld(), None
  if is_primary:
    try:
      lock = WorkdirLock(workdir).acquire()
    except WorkdirLockedError as e:
      error = e
    except OSError as e:
      error = ValueError(
          f'cannot write to --workdir {workdir}: {e.strerror or e} '
          f'({e.filename or workdir}); use a writable directory.')
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
    import numpy as np  # pylint: disable=g-import-not-at-top
    ok = multihost_utils.broadcast_one_to_all(
        np.int32(error is None), is_source=is_primary)
    if not int(ok) and error is None:
      error = WorkdirLockedError(
          f'process 0 could not lock --workdir {workdir}: another trainer '
          f'is running in it (process 0 names it).')
  if error is not None:
    raise error
  return lock
