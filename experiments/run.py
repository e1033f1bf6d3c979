r"""Runs a sweep's members one after another on this machine.

  python -m experiments.run --sweep=ablation \
      --config=configs/fashion_mnist.py --root=runs/ablation \
      [--config_args=runlocal] [--set=optimizer.lr=0.05 ...] [--seeds=0,1] \
      [--only=REGEX] [--dry_run]

Every member trains with `python -m inception_jax.main` in its own process
(a crash or an out-of-memory in one member cannot take the sweep down) into
`ROOT/<member directory>`. A member whose directory holds `summary.json`,
which training writes only when it ran to the end, is skipped; any other
member is started, and one that was interrupted resumes from its newest
checkpoint. A failing member is reported and the sweep goes on; the exit
status is non-zero if any member failed, so a second invocation of the same
command finishes exactly what is missing.

An attempt that stops early without an error in the input is tried again,
up to --retries times: one that exits 0 without `summary.json` (a SIGTERM
saved and stopped it), one whose run lost another process (exit status 3),
one killed by a signal. On a pod slice every host runs this same command
(the Cloud TPU launcher starts it), so every host is in the same member at
once; only process 0 writes `summary.json`, so the others wait up to
--finish_wait_s for it before they call a member unfinished.

SIGTERM (the launcher's `--action=stop`, a preemption notice) reaches the
training process too, which saves and exits; the sweep then stops after that
member instead of starting the next one.
"""

from __future__ import annotations

import dataclasses
import os
import shlex
import signal
import subprocess
import sys
import time
from typing import Callable, List, Mapping, Optional, Sequence

from absl import flags

from inception_jax import cli
from inception_jax.main import PEER_LOST_STATUS
from experiments import sweeps

# Written by training only after the last step's checkpoint and evaluation,
# never after a SIGTERM save: its presence means "finished".
FINISHED_MARKER = 'summary.json'

Runner = Callable[[List[str]], int]


def exists(path: str) -> bool:
  """os.path.exists, and tf.io.gfile for gs:// paths."""
  if path.startswith('gs://'):
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    return tf.io.gfile.exists(path)
  return os.path.exists(path)


def is_finished(workdir: str) -> bool:
  return exists(sweeps.join_path(workdir, FINISHED_MARKER))


def has_started(workdir: str) -> bool:
  """True where an earlier attempt left metrics or checkpoints to resume."""
  return (exists(sweeps.join_path(workdir, 'metrics.jsonl')) or
          exists(sweeps.join_path(workdir, 'checkpoints')))


def member_command(member: sweeps.Member, *, config: str, root: str,
                   python: str = sys.executable,
                   config_args: Optional[str] = None,
                   sets: Optional[Mapping[str, str]] = None) -> List[str]:
  workdir = sweeps.join_path(root, member.dirname)
  return [python, '-m', 'inception_jax.main'] + sweeps.train_args(
      config, member, workdir, config_args=config_args, sets=sets)


@dataclasses.dataclass
class Outcome:
  member: sweeps.Member
  status: str  # 'skipped' | 'finished' | 'failed' | 'unfinished' | 'dry run'
  returncode: Optional[int] = None
  seconds: float = 0.0


def subprocess_runner(command: List[str]) -> int:
  """Runs a command with this terminal's output; returns its exit status."""
  return subprocess.call(command)


def run_sweep(members: Sequence[sweeps.Member], *, config: str, root: str,
              runner: Runner = subprocess_runner,
              python: str = sys.executable,
              config_args: Optional[str] = None,
              sets: Optional[Mapping[str, str]] = None,
              retries: int = 0, dry_run: bool = False,
              finish_wait_s: float = 0.0,
              stop_requested: Callable[[], bool] = lambda: False,
              log: Callable[[str], None] = print) -> List[Outcome]:
  """Runs the unfinished members; returns one Outcome per member.

  Args:
    members: the sweep's members, run in this order.
    config: the config file, e.g. 'configs/fashion_mnist.py'.
    root: the sweep's directory; member i runs in root/<dirname>.
    runner: takes a command (argv list) and returns its exit status.
    python: the interpreter for the training processes.
    config_args: config args for every member.
    sets: --config.<key>=<value> overrides for every member.
    retries: extra attempts for a member that stopped early without an error
      in its input (`interrupted`); other failures are not retried, since an
      error in the config would only repeat.
    dry_run: print the commands, run nothing.
    finish_wait_s: how long a process other than 0 of a multi-process run
      waits for process 0's summary.json after its trainer exited 0.
    stop_requested: polled after each attempt; True stops the sweep there
      (SIGTERM).
    log: where progress lines go.
  """
  outcomes = []
  for i, member in enumerate(members):
    if stop_requested():
      log(f'Stopped (SIGTERM) before {member.name}; rerun the same command '
          'to go on.')
      break
    workdir = sweeps.join_path(root, member.dirname)
    command = member_command(member, config=config, root=root, python=python,
                             config_args=config_args, sets=sets)
    prefix = f'[{i + 1}/{len(members)}] {member.name}'
    if dry_run:
      state = ('finished, would skip' if is_finished(workdir) else
               'would resume' if has_started(workdir) else 'would start')
      log(f'# {prefix}: {state}')
      log(shlex.join(command))
      outcomes.append(Outcome(member, 'dry run'))
      continue
    if is_finished(workdir):
      log(f'{prefix}: finished earlier, skipped ({workdir})')
      outcomes.append(Outcome(member, 'skipped'))
      continue
    start = time.time()
    outcome = None
    for attempt in range(retries + 1):
      verb = 'resuming' if has_started(workdir) else 'starting'
      log(f'{prefix}: {verb}' + (f' (attempt {attempt + 1})' if attempt
                                 else '') + f'\n  {shlex.join(command)}')
      returncode = runner(command)
      # After a SIGTERM no summary.json is coming: do not wait for one.
      wait = 0.0 if stop_requested() else finish_wait_s
      outcome = Outcome(member, _attempt_status(returncode, workdir, wait),
                        returncode)
      if outcome.status != 'unfinished' or stop_requested():
        break
    outcome.seconds = time.time() - start
    if outcome.status == 'failed':
      log(f'{prefix}: FAILED with exit status {outcome.returncode}; '
          f'going on with the next member')
    elif outcome.status == 'unfinished':
      log(f'{prefix}: stopped before the end (preempted?); rerun the sweep '
          f'to resume it')
    else:
      log(f'{prefix}: finished in {outcome.seconds:.0f}s')
    outcomes.append(outcome)
  return outcomes


def _attempt_status(returncode: int, workdir: str,
                    finish_wait_s: float) -> str:
  """'finished', 'unfinished' (stopped early: worth another attempt) or
  'failed'."""
  interrupted = returncode in (0, PEER_LOST_STATUS) or returncode < 0
  if not interrupted:
    return 'failed'
  deadline = time.time() + (finish_wait_s if returncode == 0 else 0)
  while not is_finished(workdir) and time.time() < deadline:
    time.sleep(1)
  return 'finished' if is_finished(workdir) else 'unfinished'


class StopOnSigterm:
  """SIGTERM sets a flag (the training process gets its own SIGTERM and
  saves); the sweep reads it after the running member has stopped."""

  def __init__(self):
    self.received = False

  def __enter__(self):
    self._previous = signal.signal(signal.SIGTERM, self._handle)
    return self

  def _handle(self, signum, frame):
    del signum, frame
    self.received = True

  def __exit__(self, *exc):
    signal.signal(signal.SIGTERM, self._previous)


def format_outcomes(outcomes: Sequence[Outcome]) -> str:
  lines = ['Sweep summary:']
  for o in outcomes:
    extra = f' (exit status {o.returncode})' if o.status == 'failed' else ''
    lines.append(f'  {o.status:<10} {o.member.name}{extra}')
  return '\n'.join(lines)


def sweep_ok(outcomes: Sequence[Outcome]) -> bool:
  return all(o.status in ('skipped', 'finished', 'dry run') for o in outcomes)


FLAGS = flags.FLAGS


def define_sweep_flags() -> None:
  """Flags shared with the Cloud TPU launcher."""
  flags.DEFINE_string('sweep', None,
                      f'Sweep name: {", ".join(sorted(sweeps.SWEEPS))}.')
  flags.DEFINE_string('config', None,
                      'Config file, e.g. configs/fashion_mnist.py (no args; '
                      'see --config_args).')
  cli.DEFINE_path('root', None, 'Directory of the sweep\'s runs.')
  flags.DEFINE_string('config_args', None,
                      'Config args for every member, e.g. runlocal or '
                      'norm=lrn; a member\'s own args win.')
  flags.DEFINE_multi_string('set', [],
                            'key=value: --config.key=value for every member '
                            '(repeatable).')
  flags.DEFINE_string('seeds', None,
                      'Comma-separated seeds replacing the sweep\'s own.')
  flags.DEFINE_string('only', None,
                      'Regular expression: run only the members whose name '
                      'or directory matches.')
  flags.mark_flags_as_required(['sweep', 'config', 'root'])


def selected_members() -> List[sweeps.Member]:
  members = sweeps.get_sweep(FLAGS.sweep, sweeps.parse_seeds(FLAGS.seeds))
  members = sweeps.select(members, FLAGS.only)
  if not members:
    raise ValueError(f'--only={FLAGS.only!r} matches no member of sweep '
                     f'{FLAGS.sweep!r}.')
  return members


def main(argv) -> int:
  del argv
  if ':' in FLAGS.config:
    raise ValueError('give config args with --config_args, not after ":" '
                     'in --config (members add their own).')
  members = selected_members()
  with StopOnSigterm() as sigterm:
    outcomes = run_sweep(
        members, config=FLAGS.config, root=FLAGS.root,
        python=FLAGS.python, config_args=FLAGS.config_args,
        sets=sweeps.parse_sets(FLAGS.set), retries=FLAGS.retries,
        dry_run=FLAGS.dry_run, finish_wait_s=FLAGS.finish_wait_s,
        stop_requested=lambda: sigterm.received,
        log=lambda line: print(line, flush=True))
  if not FLAGS.dry_run:
    print(format_outcomes(outcomes), flush=True)
  return 0 if sweep_ok(outcomes) and len(outcomes) == len(members) else 1


def define_flags() -> None:
  define_sweep_flags()
  flags.DEFINE_bool('dry_run', False, 'Print the commands, run nothing.')
  flags.DEFINE_string('python', sys.executable,
                      'Interpreter for the training processes.')
  flags.DEFINE_integer('retries', 1,
                       'Extra attempts for a member that stops early without '
                       'an error in its input (a SIGTERM, a lost process); '
                       'errors are never retried.')
  flags.DEFINE_float('finish_wait_s', 0.0,
                     'Seconds a process other than 0 of a multi-process run '
                     'waits for summary.json after its trainer exited 0.')


if __name__ == '__main__':
  cli.run(main, define_flags)
