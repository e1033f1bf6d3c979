"""The launcher on preemptible TPUs: `--action=watch` against a fake gcloud.
(Its stop and watch with real trainers on a fake pod of two local workers:
tests/test_multiprocess.py.)

The fake gcloud (first on PATH) answers from a scripted list of replies per
kind of command, in order, and records every call; nothing reaches the
network.
"""

import json
import os
import stat
import subprocess
import sys
import textwrap

from experiments import sweeps
from tests.helpers import REPO

FAKE_GCLOUD = textwrap.dedent('''\
    #!{python}
    """Replies from SCRIPT: [[words of the command, [[rc, output], ...]]];
    the first rule whose words the command's first four start with gives its
    next reply (the last one repeats). Every call is appended to CALLS."""
    import json, sys
    script_path, calls_path = {script!r}, {calls!r}
    # Its leading words only: an ssh command's text holds other commands.
    command = ' '.join([a for a in sys.argv[1:] if a[:1] != '-'][:4])
    with open(calls_path, 'a') as f:
      f.write(json.dumps(sys.argv[1:]) + '\\n')
    with open(script_path) as f:
      rules = json.load(f)
    for rule in rules:
      if rule[0] in command:
        rc, output = rule[1][0]
        if len(rule[1]) > 1:
          rule[1].pop(0)
          with open(script_path, 'w') as f:
            json.dump(rules, f)
        (sys.stdout if rc == 0 else sys.stderr).write(output)
        sys.exit(rc)
    sys.exit(0)
    ''')

ROOT = 'gs://b/sweep'
NO_OBJECTS = [1, 'ERROR: One or more URLs matched no objects.\n']
CAPACITY = [1, 'ERROR: (gcloud.compute.tpus.tpu-vm.create) RESOURCE_EXHAUSTED:'
               ' There is no more capacity in the zone "us-central2-b"\n']


def _fake_gcloud(tmp_path, rules):
  bin_dir = tmp_path / 'bin'
  bin_dir.mkdir()
  script, calls = tmp_path / 'script.json', tmp_path / 'calls.jsonl'
  script.write_text(json.dumps(rules))
  gcloud = bin_dir / 'gcloud'
  gcloud.write_text(FAKE_GCLOUD.format(python=sys.executable,
                                       script=str(script), calls=str(calls)))
  gcloud.chmod(gcloud.stat().st_mode | stat.S_IEXEC)
  return bin_dir, calls


def _watch(tmp_path, bin_dir, *extra):
  env = dict(os.environ, PATH=f'{bin_dir}:{os.environ["PATH"]}',
             PYTHONPATH=REPO)
  return subprocess.run(
      [sys.executable, '-m', 'experiments.launch', '--sweep=smoke',
       '--config=configs/imagenet.py', '--tpu=inc', '--zone=us-central2-b',
       '--accelerator=v4-8', f'--root={ROOT}', '--spot', '--action=watch',
       '--dry_run=False', '--poll_s=0', '--create_retry_s=0',
       f'--tarball={tmp_path / "code.tar.gz"}', *extra],
      cwd=REPO, env=env, capture_output=True, text=True, timeout=120,
      check=False)


def _verbs(calls):
  """Each call as its command words (`tpu-vm describe`, `storage ls`)."""
  out = []
  for line in calls.read_text().splitlines():
    argv = json.loads(line)
    words = [a for a in argv if not a.startswith('-')]
    out.append(' '.join(words[2:4] if words[0] == 'compute' else words[:2]))
  return out


def _summary(member):
  return f'{ROOT}/{member.dirname}/summary.json\n'


def test_watch_recreates_a_preempted_tpu_until_every_member_finished(
    tmp_path):
  first, second = sweeps.get_sweep('smoke')
  bin_dir, calls = _fake_gcloud(tmp_path, [
      ['storage ls', [NO_OBJECTS, NO_OBJECTS, NO_OBJECTS,
                      [0, _summary(first)],
                      [0, _summary(first) + _summary(second)]]],
      ['tpu-vm describe', [[0, 'READY\n'], [0, 'PREEMPTED\n'],
                           [0, 'READY\n']]],
      ['tpu-vm create', [CAPACITY, [0, '']]],
  ])
  result = _watch(tmp_path, bin_dir)
  assert result.returncode == 0, result.stdout + result.stderr
  assert _verbs(calls) == [
      'storage ls', 'tpu-vm describe',                  # READY
      'storage ls', 'tpu-vm describe',                  # PREEMPTED
      'tpu-vm delete', 'tpu-vm create', 'tpu-vm create',  # capacity, then ok
      'tpu-vm scp', 'tpu-vm ssh', 'tpu-vm ssh',         # setup, start
      'storage ls', 'tpu-vm describe',                  # none finished
      'storage ls', 'tpu-vm describe',                  # one finished
      'storage ls']                                     # both: done
  argvs = [json.loads(l) for l in calls.read_text().splitlines()]
  assert argvs[1] == ['compute', 'tpus', 'tpu-vm', 'describe', 'inc',
                      '--format=value(state)', '--zone=us-central2-b']
  assert argvs[0] == ['storage', 'ls', f'{ROOT}/*/summary.json']
  assert '--spot' in argvs[5] and '--spot' in argvs[6]
  start = next(a for a in argvs[9] if a.startswith("--command="))
  assert 'experiments.run' in start and '--sweep=smoke' in start
  out = result.stdout
  assert ('watch: inc is PREEMPTED; recreation 1/10: delete, create, setup, '
          'start (2 member(s) unfinished)') in out
  assert 'no capacity for v4-8 (create attempt 1/20: ' in out
  assert 'every member of the sweep has finished (2); 1 recreation(s).' in out


def test_watch_stops_after_max_recreations(tmp_path):
  # Gone first (no delete needed), then preempted every time it is asked.
  bin_dir, calls = _fake_gcloud(tmp_path, [
      ['storage ls', [NO_OBJECTS]],
      ['tpu-vm describe', [[1, 'ERROR: NOT_FOUND: Resource not found\n'],
                           [0, 'PREEMPTED\n']]],
  ])
  result = _watch(tmp_path, bin_dir, '--max_recreations=1')
  assert result.returncode == 1, result.stdout + result.stderr
  assert _verbs(calls) == [
      'storage ls', 'tpu-vm describe', 'tpu-vm create', 'tpu-vm scp',
      'tpu-vm ssh', 'tpu-vm ssh', 'storage ls', 'tpu-vm describe']
  assert 'watch: inc is NOT_FOUND; recreation 1/1' in result.stdout
  assert ('error: inc is PREEMPTED again after 1 recreation(s) '
          '(--max_recreations=1); 2 member(s) unfinished.') in result.stdout


def test_watch_bounds_create_attempts_on_capacity_errors(tmp_path):
  bin_dir, calls = _fake_gcloud(tmp_path, [
      ['storage ls', [NO_OBJECTS]],
      ['tpu-vm describe', [[0, 'TERMINATED\n']]],
      ['tpu-vm create', [CAPACITY]],
  ])
  result = _watch(tmp_path, bin_dir, '--max_create_attempts=3')
  assert result.returncode == 1, result.stdout + result.stderr
  assert _verbs(calls).count('tpu-vm create') == 3
  assert 'error: no capacity for inc after 3 create attempts.' in (
      result.stdout)


def test_watch_on_a_queued_resource_reads_its_state_first(tmp_path):
  bin_dir, calls = _fake_gcloud(tmp_path, [
      ['storage ls', [NO_OBJECTS, [0, ''.join(
          _summary(m) for m in sweeps.get_sweep('smoke'))]]],
      ['queued-resources describe', [[0, 'SUSPENDED\n'],
                                     [0, 'WAITING_FOR_RESOURCES\n'],
                                     [0, 'ACTIVE\n']]],
      ['tpu-vm describe', [[0, 'READY\n']]],
  ])
  result = _watch(tmp_path, bin_dir, '--queued')
  assert result.returncode == 0, result.stdout + result.stderr
  assert _verbs(calls) == [
      'storage ls', 'queued-resources describe',        # SUSPENDED
      'queued-resources delete', 'queued-resources create',
      'queued-resources describe', 'queued-resources describe',  # ACTIVE
      'tpu-vm scp', 'tpu-vm ssh', 'tpu-vm ssh',         # setup, start
      'storage ls']                                     # both finished


def _launch_dry_run(actions):
  """The launcher's command line in its default dry-run mode."""
  return subprocess.run(
      [sys.executable, '-m', 'experiments.launch', '--sweep=smoke',
       '--config=configs/imagenet.py', '--tpu=inc', '--zone=us-central2-b',
       f'--root={ROOT}', f'--action={actions}'],
      cwd=REPO, env=dict(os.environ, PYTHONPATH=REPO), capture_output=True,
      text=True, timeout=60, check=False)


def test_watch_dry_run_prints_what_it_would_poll(tmp_path):
  result = _launch_dry_run('create,setup,start,watch')
  assert result.returncode == 0, result.stderr
  lines = result.stdout.splitlines()
  assert lines[0] == '# create: create the TPU VM inc'
  assert (f"gcloud storage ls '{ROOT}/*/summary.json'" in lines and
          "gcloud compute tpus tpu-vm describe inc '--format=value(state)' "
          '--zone=us-central2-b' in lines)
  bad = _launch_dry_run('watch,start')
  assert bad.returncode == 1
  assert bad.stderr.strip().splitlines()[-1] == (
      'error: --action=watch must come last (it runs until every member has '
      'finished).')
