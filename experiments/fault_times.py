"""How long a 2-process run on localhost takes to stop after a fault.

  python -m experiments.fault_times > experiments/results/fault_times.jsonl

The tests' settings (`tests/test_multiprocess.py`: 2 processes, 2 CPU devices
each, gloo, the tiny model, `peer_timeout_s=20`; 6 steps here) and their fault
seam (`tests/runner.py --signal_at_step`): SIGTERM to process 1, to both, and
SIGKILL of process 1, each after step 3.
One JSON line per case: the exit
codes, each process's seconds from the signal to its exit, the step both
logged they stop at, and whether process 0 printed its one-line "lost
another process" error.
"""

import json
import re
import tempfile

from tests.test_multiprocess import ARGS, run_two_processes

CASES = {
    'sigterm_process_1': ['--signal=TERM', '--signal_processes=1'],
    'sigterm_both': ['--signal=TERM', '--signal_processes=0,1'],
    'sigkill_process_1': ['--signal=KILL', '--signal_processes=1',
                          '--kill_after_checkpoint=2'],
}


def measure(extra):
  workdir = tempfile.mkdtemp() + '/run'
  exit_times = []
  results = run_two_processes(
      ARGS + ['--config.total_steps=6', f'--workdir={workdir}',
              '--signal_at_step=3', *extra],
      module='tests.runner', exit_times=exit_times)
  out = ''.join(r[1] for r in results)
  err = ''.join(r[2] for r in results)
  signalled = float(re.search(r'signalled at step \d+ at ([\d.]+)',
                              out).group(1))
  return {'exit_codes': [r[0] for r in results],
          'seconds_to_exit': [round(t - signalled, 1) for t in exit_times],
          'stopped_at': sorted({int(s) for s in re.findall(
              r'saves and stops at step (\d+)', err)}),
          'lost_line': 'lost another process' in results[0][2]}


def main():
  for name, extra in CASES.items():
    print(json.dumps(dict(case=name, **measure(extra))), flush=True)


if __name__ == '__main__':
  main()
