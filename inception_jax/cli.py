"""What every command-line tool here shares: one-line errors for bad flags.

absl reports an error raised inside a config file as a whole traceback, and
ml_collections an unknown ``--config.<key>`` as a bare KeyError; a researcher
should see one line that names the problem, and exit status 1.
"""

import re
import sys

from absl import flags


def fail(message: str) -> None:
  print(f'error: {message}', file=sys.stderr)
  sys.exit(1)


def _last_line(text: str) -> str:
  lines = [l.strip() for l in str(text).strip().splitlines() if l.strip()]
  line = lines[-1] if lines else str(text)
  return line[len('ValueError: '):] if line.startswith('ValueError: ') else line


def parse_flags(argv):
  """absl's parsing with one-line errors instead of tracebacks."""
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    # Errors raised inside the config file arrive as a formatted traceback;
    # its last line is the message that matters.
    fail(_last_line(e))
  except (AttributeError, KeyError) as e:
    # ml_collections: a --config.<key> that the locked config does not have.
    text = str(e.args[0] if e.args else e)
    found = re.search(r"[A-Za-z_][A-Za-z0-9_]*", text)
    name = found.group(0) if found else text
    hint = re.search(r'Did you mean "([^"]+)"', text)
    suggestion = f' Did you mean {hint.group(1)!r}?' if hint else ''
    bad = [a.split('=')[0] for a in argv[1:]
           if a.startswith('--config.') and
           a.split('=')[0].split('.')[-1] == name]
    flag = bad[0] if bad else f'--config.{name}'
    fail(f'{flag}: no such config key ({name!r}).{suggestion} See the config '
         'file or DIR/config.json of an earlier run for the valid keys.')
  return None


def start(argv) -> bool:
  """Common start of a tool's main: no stray arguments, quiet Orbax logs.

  Returns False (after printing why) when positional arguments were given.
  """
  from absl import logging  # pylint: disable=g-import-not-at-top
  if len(argv) > 1:
    print(f'error: unexpected arguments: {" ".join(argv[1:])}',
          file=sys.stderr)
    return False
  if not flags.FLAGS['verbosity'].present:
    logging.set_verbosity(logging.WARNING)  # Orbax logs every file at INFO.
  return True
