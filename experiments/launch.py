r"""Runs a sweep on a Cloud TPU VM (one host or a pod slice) with gcloud.

  python -m experiments.launch --sweep=ablation --config=configs/imagenet.py \
      --tpu=inception-sweep --zone=us-central2-b --accelerator=v4-8 \
      --root=gs://BUCKET/inception/ablation \
      [--action=create,setup,start] [--spot] [--queued] [--project=P] \
      [--config_args=...] [--set=data.data_dir=gs://BUCKET/tfds ...] \
      [--dry_run=False]

By default (`--dry_run=True`) this prints the exact commands and runs
nothing; `--dry_run=False` runs them in order and stops at the first one that
fails. Actions, in the order a sweep needs them:

  create   the TPU VM (`tpu-vm create`), or with --queued a queued resource
           (`queued-resources create`) and a wait until it is ACTIVE; --spot
           asks for Spot capacity. The runtime version follows the
           accelerator family (v2-v4: tpu-ubuntu2204-base, v5e:
           v2-alpha-tpuv5-lite, v5p: v2-alpha-tpuv5, v6e: v2-alpha-tpuv6e).
  setup    packs this working tree (without .git, .venv, runs/) into a
           tarball, copies it to every worker, and installs Python 3.11 (the
           pinned numpy needs it; the VM image has 3.10) with
           requirements.txt and the matching `jax[tpu]` into a venv.
  start    starts `python -m experiments.run` (the same sweep loop as on one
           machine) on every worker (`--worker=all`) under nohup, logging to
           ~/inception_jax/logs/sweep-<sweep>.log: members run one after
           another, each with `--config.multihost=True` and its workdir
           under --root on GCS. A member is tried again (at most
           --max_attempts times) until its `summary.json` exists (training
           writes it only at the very end), so a member stopped by a SIGTERM
           or a lost process resumes from its checkpoint; members already
           finished are skipped. After a preemption of the whole VM,
           `create,setup,start` again continues where the sweep stopped.
  status   the tail of worker 0's sweep log.
  logs     copies worker 0's sweep log here (--local_dir).
  results  copies the runs' metrics and configs (not the checkpoints) from
           GCS into --local_dir, for `python -m experiments.report`.
  stop     SIGTERMs the sweep on every worker: the trainers agree on one
           step, save it and exit 0, and the loops stop; `start` later
           resumes it.
  delete   deletes the TPU VM (or the queued resource with its VM).
  watch    (last) keeps the sweep going on preemptible capacity until every
           member has its `summary.json` under --root: every --poll_s it
           reads the TPU's state (`tpu-vm describe --format=value(state)`,
           and with --queued the queued resource's first); when it is
           PREEMPTED, TERMINATED, gone (NOT_FOUND), or the queued resource
           SUSPENDED or FAILED, it deletes, creates (capacity errors retried
           with a doubling wait, at most --max_create_attempts times), sets
           up and starts again, at most --max_recreations times, with one
           log line each. `create,setup,start,watch` launches and watches.

Every command goes through a runner (argv list -> exit status), so tests
check the generated commands without touching the network.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shlex
import subprocess
import tempfile
import time
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from absl import flags

from inception_jax import cli
from experiments import run as run_lib
from experiments import sweeps

# Runtime (software) versions for JAX, per accelerator family, from the Cloud
# TPU "TPU software versions" page.
RUNTIME_VERSIONS: Dict[str, str] = {
    'v2': 'tpu-ubuntu2204-base',
    'v3': 'tpu-ubuntu2204-base',
    'v4': 'tpu-ubuntu2204-base',
    'v5litepod': 'v2-alpha-tpuv5-lite',
    'v5p': 'v2-alpha-tpuv5',
    'v6e': 'v2-alpha-tpuv6e',
}
ACTIONS = ('create', 'setup', 'start', 'status', 'logs', 'results', 'stop',
           'delete', 'watch')
LIBTPU_FIND_LINKS = ('https://storage.googleapis.com/jax-releases/'
                     'libtpu_releases.html')
REPO_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARBALL_EXCLUDES = ('./.git', './.venv', './runs', '__pycache__', '*.pyc',
                    '.pytest_cache')

Runner = Callable[[List[str]], int]
# argv -> (exit status, stdout and stderr): what `watch` reads answers with.
CaptureRunner = Callable[[List[str]], Tuple[int, str]]


def accelerator_family(accelerator: str) -> str:
  """'v4-8' -> 'v4', 'v5litepod-16' -> 'v5litepod'."""
  match = re.fullmatch(r'(v\d+[a-z]*)-(\d+)', accelerator)
  if not match or match.group(1) not in RUNTIME_VERSIONS:
    hint = (' (v5e slices are called v5litepod-N)'
            if accelerator.startswith('v5e') else '')
    raise ValueError(
        f'--accelerator={accelerator!r} is not a Cloud TPU accelerator type '
        f'like v4-8, v5litepod-8, v5p-8 or v6e-8{hint}; families: '
        f'{", ".join(RUNTIME_VERSIONS)}.')
  return match.group(1)


def runtime_version(accelerator: str) -> str:
  return RUNTIME_VERSIONS[accelerator_family(accelerator)]


@dataclasses.dataclass(frozen=True)
class Target:
  """Where the sweep runs."""
  tpu: str
  zone: str
  accelerator: str
  project: Optional[str] = None
  spot: bool = False
  queued: bool = False
  version: Optional[str] = None  # None: the family's runtime version

  @property
  def runtime(self) -> str:
    return self.version or runtime_version(self.accelerator)

  def flags(self) -> List[str]:
    """Location flags every gcloud command takes."""
    out = [f'--zone={self.zone}']
    if self.project:
      out.append(f'--project={self.project}')
    return out


@dataclasses.dataclass(frozen=True)
class Step:
  action: str
  description: str
  argv: List[str]


@dataclasses.dataclass(frozen=True)
class Remote:
  """Paths on the workers, relative to the login user's home directory."""
  code_dir: str = 'inception_jax'
  tarball: str = 'inception_jax.tar.gz'
  python_version: str = '3.11'

  @property
  def python(self) -> str:
    return '.venv/bin/python'

  def log(self, sweep: str) -> str:
    return f'logs/sweep-{sweep}.log'

  def pid(self, sweep: str) -> str:
    return f'logs/sweep-{sweep}.pid'


def _tpu_vm(verb: str, target: Target, *args: str) -> List[str]:
  return ['gcloud', 'compute', 'tpus', 'tpu-vm', verb, *args, *target.flags()]


def _ssh(target: Target, command: str, worker: str = 'all') -> List[str]:
  return _tpu_vm('ssh', target, target.tpu, f'--worker={worker}',
                 f'--command={command}')


def create_steps(target: Target) -> List[Step]:
  spot = ['--spot'] if target.spot else []
  if not target.queued:
    return [Step('create', f'create the TPU VM {target.tpu}', _tpu_vm(
        'create', target, target.tpu,
        f'--accelerator-type={target.accelerator}',
        f'--version={target.runtime}', *spot))]
  qr = ['gcloud', 'compute', 'tpus', 'queued-resources']
  describe = shlex.join(qr + ['describe', target.tpu, *target.flags(),
                              '--format=value(state.state)'])
  # FAILED or SUSPENDED will not turn ACTIVE by waiting: stop and say so.
  wait = (f'while true; do state=$({describe}); echo "queued resource '
          f'{target.tpu}: $state"; case "$state" in ACTIVE) exit 0;; '
          f'FAILED|SUSPENDED) exit 1;; esac; sleep 60; done')
  return [
      Step('create', f'queue a request for {target.accelerator}',
           qr + ['create', target.tpu, f'--node-id={target.tpu}',
                 f'--accelerator-type={target.accelerator}',
                 f'--runtime-version={target.runtime}', *spot,
                 *target.flags()]),
      Step('create', 'wait until the queued resource is ACTIVE',
           ['bash', '-c', wait]),
  ]


def jax_version(requirements: str) -> Optional[str]:
  """The version pinned by `jax==X` in a requirements file, if any."""
  if not os.path.exists(requirements):
    return None
  with open(requirements, encoding='utf-8') as f:
    for line in f:
      match = re.match(r'\s*jax==([^\s;#]+)', line)
      if match:
        return match.group(1)
  return None


def setup_steps(target: Target, *, local_tarball: str, remote: Remote,
                repo_dir: str = REPO_DIR,
                jax_pin: Optional[str] = None) -> List[Step]:
  tar = ['tar', *[f'--exclude={e}' for e in TARBALL_EXCLUDES], '-czf',
         local_tarball, '-C', repo_dir, '.']
  jax_tpu = f'jax[tpu]=={jax_pin}' if jax_pin else 'jax[tpu]'
  uv = '"$HOME/.local/bin/uv"'
  code = shlex.quote(remote.code_dir)
  install = ' && '.join([
      'set -e',
      f'rm -rf {code}', f'mkdir -p {code}',
      f'tar -xzf {shlex.quote(remote.tarball)} -C {code}',
      f'cd {code}',
      'python3 -m pip install --user --quiet --upgrade uv',
      f'{uv} venv --quiet --python {shlex.quote(remote.python_version)} .venv',
      f'{uv} pip install --quiet --python {remote.python} -r requirements.txt '
      f'{shlex.quote(jax_tpu)} --find-links {LIBTPU_FIND_LINKS}',
      f'{remote.python} -c "import jax; print(jax.process_index(), '
      f'jax.local_device_count(), jax.device_count())"',
  ])
  return [
      Step('setup', 'pack this working tree', tar),
      Step('setup', 'copy it to every worker', _tpu_vm(
          'scp', target, local_tarball, f'{target.tpu}:{remote.tarball}',
          '--worker=all')),
      Step('setup', 'unpack and install on every worker',
           _ssh(target, install)),
  ]


def worker_command(*, sweep: str, config: str, root: str,
                   config_args: Optional[str] = None,
                   sets: Optional[Mapping[str, str]] = None,
                   seeds: Optional[str] = None, only: Optional[str] = None,
                   python: str = '.venv/bin/python',
                   max_attempts: int = 20,
                   finish_wait_s: int = 120) -> List[str]:
  """What every worker runs: the sweep loop of `experiments.run`.

  On a pod slice every worker runs this same command, so a member's
  processes are all in the same member at once; `multihost=True` makes each
  trainer join the others through `jax.distributed`. A member is tried
  again until it finishes (a SIGTERM save, a lost process), at most
  `max_attempts` times.
  """
  argv = [python, '-m', 'experiments.run', f'--sweep={sweep}',
          f'--config={config}', f'--root={root}',
          f'--retries={max_attempts - 1}', f'--finish_wait_s={finish_wait_s}',
          '--set=multihost=True']
  if config_args:
    argv.append(f'--config_args={config_args}')
  for key, value in (sets or {}).items():
    argv.append(f'--set={key}={value}')
  if seeds:
    argv.append(f'--seeds={seeds}')
  if only:
    argv.append(f'--only={only}')
  return argv


def start_steps(target: Target, worker: Sequence[str], *, sweep: str,
                remote: Remote,
                libtpu_lockfile: str = '/tmp/libtpu_lockfile') -> List[Step]:
  log, pid = shlex.quote(remote.log(sweep)), shlex.quote(remote.pid(sweep))
  lockfile = shlex.quote(libtpu_lockfile)
  # setsid puts the loop and its training processes in one process group, so
  # `stop` reaches all of them; the redirections let ssh return at once. A
  # TPU lock file that no live process holds is what a crashed trainer
  # leaves behind (jax#10192); the next start would fail with "TPU in use".
  command = (
      f'cd {shlex.quote(remote.code_dir)} && mkdir -p logs && '
      f'if [ -f {pid} ] && kill -0 "$(cat {pid})" 2> /dev/null; then '
      f'echo "sweep {sweep} is already running"; exit 1; fi && '
      f'if [ -e {lockfile} ] && ! fuser {lockfile} > /dev/null 2>&1; then '
      f'rm -f {lockfile}; fi && '
      f'{{ setsid nohup {shlex.join(worker)} > {log} 2>&1 '
      f'< /dev/null & echo $! > {pid}; }}')
  return [Step('start', f'start sweep {sweep} on every worker',
               _ssh(target, command))]


def status_steps(target: Target, *, sweep: str, remote: Remote) -> List[Step]:
  log = shlex.quote(f'{remote.code_dir}/{remote.log(sweep)}')
  return [Step('status', 'tail of worker 0\'s sweep log',
               _ssh(target, f'tail -n 40 {log}', worker='0'))]


def logs_steps(target: Target, *, sweep: str, remote: Remote,
               local_dir: str) -> List[Step]:
  return [
      Step('logs', 'make the local log folder', ['mkdir', '-p', local_dir]),
      Step('logs', 'copy worker 0\'s sweep log', _tpu_vm(
          'scp', target,
          f'{target.tpu}:{remote.code_dir}/{remote.log(sweep)}',
          local_dir.rstrip('/') + '/', '--worker=0')),
  ]


def results_steps(root: str, local_dir: str) -> List[Step]:
  return [
      Step('results', 'make the local results folder',
           ['mkdir', '-p', local_dir]),
      Step('results', 'copy metrics and configs, not checkpoints', [
          'gcloud', 'storage', 'rsync', root, local_dir, '--recursive',
          '--exclude=.*/checkpoints/.*']),
  ]


def stop_steps(target: Target, *, sweep: str, remote: Remote) -> List[Step]:
  """SIGTERM to the sweep's process group on every worker: each trainer's
  JAX preemption handler agrees with the others on one step, all save it
  and exit 0; each sweep loop stops after that member."""
  pid = shlex.quote(f'{remote.code_dir}/{remote.pid(sweep)}')
  return [Step('stop', 'SIGTERM the sweep on every worker', _ssh(
      target, f'kill -TERM -- -"$(cat {pid})"'))]


def delete_steps(target: Target) -> List[Step]:
  if target.queued:
    argv = ['gcloud', 'compute', 'tpus', 'queued-resources', 'delete',
            target.tpu, *target.flags(), '--force', '--quiet']
  else:
    argv = _tpu_vm('delete', target, target.tpu, '--quiet')
  return [Step('delete', 'delete the TPU (billing stops)', argv)]


def plan(actions: Sequence[str], *, target: Target,
         members: Sequence[sweeps.Member], sweep: str, config: str, root: str,
         config_args: Optional[str] = None,
         sets: Optional[Mapping[str, str]] = None,
         seeds: Optional[str] = None, only: Optional[str] = None,
         remote: Remote = Remote(), local_tarball: Optional[str] = None,
         local_dir: Optional[str] = None, repo_dir: str = REPO_DIR,
         max_attempts: int = 20) -> List[Step]:
  """The commands for `actions`, in the order given."""
  unknown = [a for a in actions if a not in ACTIONS]
  if unknown:
    raise ValueError(f'unknown action(s) {", ".join(unknown)}; actions: '
                     f'{", ".join(ACTIONS)}.')
  if not root.startswith('gs://'):
    raise ValueError(f'--root={root!r} must be a gs:// URL: every worker '
                     f'writes to it, and it outlives the TPU VM.')
  runtime_version(target.accelerator)  # fail early on a bad accelerator
  if ':' in config:
    raise ValueError('give config args with --config_args, not after ":" in '
                     '--config (members add their own).')
  local_tarball = local_tarball or os.path.join(
      tempfile.gettempdir(), f'{target.tpu}-code.tar.gz')
  local_dir = local_dir or os.path.join('runs', sweep)
  if 'watch' in actions[:-1]:
    raise ValueError('--action=watch must come last (it runs until every '
                     'member has finished).')
  steps: List[Step] = []
  for action in actions:
    if action == 'create':
      steps += create_steps(target)
    elif action == 'setup':
      steps += setup_steps(
          target, local_tarball=local_tarball, remote=remote,
          repo_dir=repo_dir,
          jax_pin=jax_version(os.path.join(repo_dir, 'requirements.txt')))
    elif action == 'start':
      worker = worker_command(
          sweep=sweep, config=config, root=root, config_args=config_args,
          sets=sets, seeds=seeds, only=only, python=remote.python,
          max_attempts=max_attempts)
      steps += start_steps(target, worker, sweep=sweep, remote=remote)
    elif action == 'status':
      steps += status_steps(target, sweep=sweep, remote=remote)
    elif action == 'logs':
      steps += logs_steps(target, sweep=sweep, remote=remote,
                          local_dir=local_dir)
    elif action == 'results':
      steps += results_steps(root, local_dir)
    elif action == 'stop':
      steps += stop_steps(target, sweep=sweep, remote=remote)
    elif action == 'delete':
      steps += delete_steps(target)
  return steps


def format_plan(steps: Sequence[Step]) -> str:
  lines = []
  for step in steps:
    lines.append(f'# {step.action}: {step.description}')
    lines.append(shlex.join(step.argv))
  return '\n'.join(lines)


def execute(steps: Sequence[Step], runner: Runner,
            log: Callable[[str], None] = print) -> int:
  """Runs the steps in order; returns the first non-zero status, or 0."""
  for step in steps:
    log(f'# {step.action}: {step.description}\n{shlex.join(step.argv)}')
    status = runner(step.argv)
    if status != 0:
      log(f'error: that command exited with status {status}; stopping.')
      return status
  return 0


# --- watch: recreate a preempted TPU until every member has finished. --------

# A TPU VM in one of these states will not run the sweep again by waiting.
DEAD_VM_STATES = ('PREEMPTED', 'TERMINATED', 'NOT_FOUND')
# A queued resource in one of these must be deleted and queued again.
DEAD_QUEUED_STATES = ('SUSPENDED', 'FAILED', 'NOT_FOUND')
# What gcloud says when a zone has no TPU capacity for the request (worth
# waiting for) rather than a mistake in it (worth stopping for).
CAPACITY_ERRORS = re.compile(
    r'RESOURCE_EXHAUSTED|no more capacity|insufficient capacity|'
    r'out of capacity|stockout|capacity.*(unavailable|exhausted)', re.I)
_NOT_FOUND = re.compile(r'NOT_FOUND|not found', re.I)


def capture_runner(argv: List[str]) -> Tuple[int, str]:
  done = subprocess.run(argv, capture_output=True, text=True, check=False)
  return done.returncode, done.stdout + done.stderr


@dataclasses.dataclass(frozen=True)
class WatchOptions:
  poll_s: float = 300.0
  max_recreations: int = 10
  max_create_attempts: int = 20
  create_retry_s: float = 60.0  # doubled after each capacity error
  create_retry_max_s: float = 1800.0


def _describe(target: Target, queued: bool) -> List[str]:
  if queued:
    return ['gcloud', 'compute', 'tpus', 'queued-resources', 'describe',
            target.tpu, *target.flags(), '--format=value(state.state)']
  return _tpu_vm('describe', target, target.tpu, '--format=value(state)')


def _finished_listing(root: str) -> List[str]:
  # One listing for every member; gcloud exits 1 when nothing matches.
  return ['gcloud', 'storage', 'ls',
          sweeps.join_path(root, f'*/{run_lib.FINISHED_MARKER}')]


def unfinished_members(members: Sequence[sweeps.Member], root: str,
                       run: CaptureRunner) -> Optional[List[str]]:
  """Workdirs without summary.json, or None when the listing failed."""
  status, output = run(_finished_listing(root))
  if status != 0 and not re.search(r'matched no objects|not found', output,
                                   re.I):
    return None
  listed = set(output.split())
  return [w for w in (sweeps.join_path(root, m.dirname) for m in members)
          if sweeps.join_path(w, run_lib.FINISHED_MARKER) not in listed]


def tpu_state(target: Target, run: CaptureRunner, vm: bool = True) -> str:
  """The VM's state (READY, PREEMPTED, ...), or with --queued the queued
  resource's unless it is ACTIVE (or `vm` is False); NOT_FOUND when gcloud
  says it is gone, UNKNOWN when gcloud fails otherwise (a network error: ask
  again)."""
  for queued in ([True, False][:2 if vm else 1] if target.queued else
                 [False]):
    status, output = run(_describe(target, queued))
    if status != 0:
      return 'NOT_FOUND' if _NOT_FOUND.search(output) else 'UNKNOWN'
    lines = output.strip().splitlines()
    state = lines[-1].strip() if lines else 'UNKNOWN'
    if queued and state != 'ACTIVE':
      return state
  return state


def _last_line(output: str) -> str:
  lines = [l for l in output.strip().splitlines() if l.strip()]
  return lines[-1].strip() if lines else ''


def _run_steps(steps: Sequence[Step], run: CaptureRunner,
               log: Callable[[str], None]) -> Tuple[int, str]:
  for step in steps:
    log(f'# {step.action}: {step.description}\n{shlex.join(step.argv)}')
    status, output = run(step.argv)
    if status != 0:
      return status, output
  return 0, ''


def _create(target: Target, run: CaptureRunner, opts: WatchOptions,
            log: Callable[[str], None],
            sleep: Callable[[float], None]) -> bool:
  """Creates the TPU, waiting out capacity errors; True once it exists."""
  create = create_steps(target)[:1]  # the queued wait is polled here
  wait = opts.create_retry_s
  for attempt in range(1, opts.max_create_attempts + 1):
    status, output = _run_steps(create, run, log)
    capacity = bool(CAPACITY_ERRORS.search(output)) if status else False
    if status == 0 and target.queued:
      while True:
        state = tpu_state(target, run, vm=False)
        if state == 'ACTIVE' or state in DEAD_QUEUED_STATES:
          break
        log(f'watch: queued resource {target.tpu} is {state}; waiting')
        sleep(opts.poll_s)
      if state != 'ACTIVE':
        # The queue gave up on the request: no capacity; queue again.
        status, output, capacity = 1, f'the queued resource is {state}', True
        _run_steps(delete_steps(target), run, log)
    if status == 0:
      return True
    if not capacity:
      log(f'error: creating {target.tpu} failed: {_last_line(output)}')
      return False
    log(f'watch: no capacity for {target.accelerator} (create attempt '
        f'{attempt}/{opts.max_create_attempts}: {_last_line(output)}); '
        f'retrying in {wait:.0f}s')
    if attempt < opts.max_create_attempts:
      sleep(wait)
      wait = min(2 * wait, opts.create_retry_max_s)
  log(f'error: no capacity for {target.tpu} after '
      f'{opts.max_create_attempts} create attempts.')
  return False


def watch(target: Target, *, members: Sequence[sweeps.Member], root: str,
          setup_and_start: Sequence[Step], run: CaptureRunner,
          opts: WatchOptions = WatchOptions(),
          log: Callable[[str], None] = print,
          sleep: Callable[[float], None] = time.sleep) -> int:
  """Recreates the TPU after preemptions until every member has finished.

  Returns 0 when every member has its summary.json, 1 when the TPU needed
  more than `opts.max_recreations` recreations or could not be recreated.
  """
  recreations = 0
  while True:
    unfinished = unfinished_members(members, root, run)
    if unfinished == []:  # pylint: disable=g-explicit-bool-comparison
      log(f'watch: every member of the sweep has finished ({len(members)}); '
          f'{recreations} recreation(s).')
      return 0
    state = tpu_state(target, run)
    dead = DEAD_QUEUED_STATES + DEAD_VM_STATES if target.queued else (
        DEAD_VM_STATES)
    left = '?' if unfinished is None else len(unfinished)
    if state not in dead:
      log(f'watch: {target.tpu} is {state}; {left} member(s) unfinished')
      sleep(opts.poll_s)
      continue
    if recreations >= opts.max_recreations:
      log(f'error: {target.tpu} is {state} again after {recreations} '
          f'recreation(s) (--max_recreations={opts.max_recreations}); '
          f'{left} member(s) unfinished. Raise --max_recreations or try '
          'another zone.')
      return 1
    recreations += 1
    log(f'watch: {target.tpu} is {state}; recreation {recreations}/'
        f'{opts.max_recreations}: delete, create, setup, start '
        f'({left} member(s) unfinished)')
    if state != 'NOT_FOUND':
      status, output = _run_steps(delete_steps(target), run, log)
      if status != 0 and not _NOT_FOUND.search(output):
        log(f'error: deleting {target.tpu} failed: {_last_line(output)}')
        return 1
    if not _create(target, run, opts, log, sleep):
      return 1
    status, output = _run_steps(setup_and_start, run, log)
    if status != 0:
      # The next poll sees a READY VM without a sweep; say so and stop
      # rather than watch a VM that does nothing.
      log(f'error: setting up or starting on {target.tpu} failed: '
          f'{_last_line(output)}')
      return 1


def format_watch(target: Target, members: Sequence[sweeps.Member], root: str,
                 opts: WatchOptions) -> str:
  """What `watch` would run, for --dry_run."""
  lines = [f'# watch: every {opts.poll_s:g}s until every member has its '
           f'{run_lib.FINISHED_MARKER} ({len(members)} member(s))',
           shlex.join(_finished_listing(root))]
  if target.queued:
    lines.append(shlex.join(_describe(target, True)))
  lines.append(shlex.join(_describe(target, False)))
  lines.append(f'# watch: when it is {"/".join(DEAD_VM_STATES)} (or the '
               f'queued resource {"/".join(DEAD_QUEUED_STATES[:2])}), at most '
               f'{opts.max_recreations} times: delete, create (at most '
               f'{opts.max_create_attempts} attempts on capacity errors), '
               'setup, start')
  return '\n'.join(lines)


def subprocess_runner(argv: List[str]) -> int:
  return subprocess.call(argv)


FLAGS = flags.FLAGS


def main(argv, runner: Runner = subprocess_runner,
         capture: CaptureRunner = capture_runner) -> int:
  del argv
  target = Target(tpu=FLAGS.tpu, zone=FLAGS.zone,
                  accelerator=FLAGS.accelerator, project=FLAGS.project,
                  spot=FLAGS.spot, queued=FLAGS.queued,
                  version=FLAGS.runtime_version)
  actions = [a.strip() for a in FLAGS.action.split(',') if a.strip()]
  members = run_lib.selected_members()
  common = dict(
      target=target, members=members,
      sweep=FLAGS.sweep, config=FLAGS.config, root=FLAGS.root,
      config_args=FLAGS.config_args, sets=sweeps.parse_sets(FLAGS.set),
      seeds=FLAGS.seeds, only=FLAGS.only,
      remote=Remote(code_dir=FLAGS.remote_dir,
                    python_version=FLAGS.python_version),
      local_tarball=FLAGS.tarball, local_dir=FLAGS.local_dir,
      max_attempts=FLAGS.max_attempts)
  steps = plan(actions, **common)
  watching = actions[-1:] == ['watch']
  opts = WatchOptions(
      poll_s=FLAGS.poll_s, max_recreations=FLAGS.max_recreations,
      max_create_attempts=FLAGS.max_create_attempts,
      create_retry_s=FLAGS.create_retry_s)
  if FLAGS.dry_run:
    printed = [format_plan(steps)] if steps else []
    if watching:
      printed.append(format_watch(target, members, FLAGS.root, opts))
    print('\n'.join(printed))
    return 0
  status = execute(steps, runner)
  if status != 0 or not watching:
    return status
  return watch(target, members=members, root=FLAGS.root,
               setup_and_start=plan(['setup', 'start'], **common),
               run=capture, opts=opts,
               log=lambda line: print(line, flush=True))


def define_flags() -> None:
  run_lib.define_sweep_flags()
  flags.DEFINE_string('tpu', None, 'TPU VM (and queued resource) name.')
  flags.DEFINE_string('zone', None, 'Zone, e.g. us-central2-b.')
  flags.DEFINE_string('accelerator', 'v4-8',
                      'Accelerator type: v4-8, v5litepod-8, v5p-8, v6e-8, ...')
  flags.DEFINE_string('project', None,
                      'GCP project; default: gcloud\'s configured one.')
  flags.DEFINE_string('runtime_version', None,
                      'TPU software version; default: the accelerator '
                      'family\'s (see RUNTIME_VERSIONS).')
  flags.DEFINE_bool('spot', False, 'Ask for Spot (preemptible) capacity.')
  flags.DEFINE_bool('queued', False,
                    'Create through a queued resource and wait for it.')
  flags.DEFINE_string('action', 'create,setup,start',
                      f'Comma-separated actions: {", ".join(ACTIONS)}.')
  flags.DEFINE_bool('dry_run', True,
                    'Print the commands (default); False runs them.')
  flags.DEFINE_string('remote_dir', 'inception_jax',
                      'Code directory on the workers, under the home dir.')
  flags.DEFINE_string('python_version', '3.11',
                      'Python for the workers\' venv (installed by uv).')
  cli.DEFINE_path('tarball', None,
                      'Local path of the code tarball; default: a temp file.')
  cli.DEFINE_path('local_dir', None,
                      'Local folder for `logs` and `results`; default: '
                      'runs/<sweep>.')
  flags.DEFINE_integer('max_attempts', 20,
                       'Attempts per member before the sweep moves on.')
  flags.DEFINE_float('poll_s', 300.0,
                     'watch: seconds between looks at the TPU and the runs.')
  flags.DEFINE_integer('max_recreations', 10,
                       'watch: recreations of the TPU before giving up.')
  flags.DEFINE_integer('max_create_attempts', 20,
                       'watch: create attempts per recreation while the zone '
                       'has no capacity.')
  flags.DEFINE_float('create_retry_s', 60.0,
                     'watch: first wait after a capacity error (doubles, '
                     'at most 30 minutes).')
  flags.mark_flags_as_required(['tpu', 'zone'])


if __name__ == '__main__':
  cli.run(main, define_flags)
