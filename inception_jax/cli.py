"""How every command here starts: absl flags, paths, one-line errors.

Each command module defines ``define_flags()`` and ``main(argv)`` and ends
with ``cli.run(main, define_flags)``. Flags are defined only when the module
runs as a program, so modules that share flag names (``--checkpoint``,
``--out``) can be imported together by a notebook or a test.

Mistakes in the input are raised as ``ValueError``s whose message names the
problem and the fix; `run` prints them as one line, ``error: ...``, on stderr
and exits with status 1 (``--traceback`` shows the Python traceback). A loss
that stops being finite (an ``ArithmeticError``) is reported the same way.
"""

from __future__ import annotations

import contextlib
import re
import sys
from typing import Callable, Iterator, NoReturn, Optional, Sequence

from absl import app
from absl import flags
from absl import logging

from inception_jax import paths


def fail(message: str) -> NoReturn:
  print(f'error: {message}', file=sys.stderr)
  sys.exit(1)


def one_line(error: object, limit: Optional[int] = 300) -> str:
  """An error (or its message) as the one line users see.

  A message that carries a traceback (a config file's error arrives as one)
  gives its last line, the exception's own message; any other message is
  kept whole, its whitespace collapsed. Terminal colours are dropped, an
  empty message gives the exception's name, and another library's message
  embedded in ours is cut at `limit` characters (None: never).
  """
  text = re.sub(r'\x1b\[[0-9;]*m', '', str(error))
  if 'Traceback (most recent call last)' in text:
    text = text.strip().splitlines()[-1]
    text = re.sub(r'^(ValueError|KeyError): ', '', text)
  text = ' '.join(text.split()) or type(error).__name__
  if limit is not None and len(text) > limit:
    text = text[:limit - 3] + '...'
  return text


class _PathParser(flags.ArgumentParser):
  """A path typed by the user: made absolute once, here (`paths.resolve`)."""

  syntactic_help = ('a path, relative to the current directory (~ expanded; '
                    'gs:// URLs kept)')

  def parse(self, argument):
    return paths.resolve(argument)

  def flag_type(self):
    return 'path'


def DEFINE_path(name: str, default: Optional[str], help: str,  # pylint: disable=invalid-name,redefined-builtin
                **kwargs) -> flags.FlagHolder:
  return flags.DEFINE(_PathParser(), name, default, help, **kwargs)


def _parse_flags(argv: Sequence[str]):
  try:
    return flags.FLAGS(list(argv))
  except flags.Error as e:
    # Errors raised inside a config file arrive as a formatted traceback;
    # its last line is the message.
    fail(one_line(e, limit=None))
  except (AttributeError, KeyError) as e:
    # ml_collections: a --config.<key> that the locked config does not have.
    # Its KeyError carries the key; name the flag that asked for it.
    key = str(e.args[0]) if isinstance(e, KeyError) and e.args else ''
    overrides = [a.split('=')[0] for a in argv[1:] if a.startswith('--config.')]
    named = [f for f in overrides if key and f.split('.')[-1] == key]
    fail(f'{" ".join(named or overrides) or "--config"}: no such config key. '
         'The config file, or DIR/config.json of an earlier run, lists the '
         'valid keys.')


# Top-level modules of the optional extras (pyproject.toml), by extra.
OPTIONAL_MODULES = {
    **dict.fromkeys(('tensorflow', 'tensorflow_datasets', 'grain', 'tensorboard',
                     'array_record'), 'train'),
    **dict.fromkeys(('torch', 'torchvision'), 'convert'),
    **dict.fromkeys(('gcsfs',), 'gcs'),
}


def _missing_extra(error: ModuleNotFoundError) -> str:
  return (f'this command needs {error.name}, which the base install lacks: '
          f'pip install "inception_jax[{OPTIONAL_MODULES[error.name]}]" (or '
          f'-r requirements.txt in a clone).')


@contextlib.contextmanager
def optional_imports(module_name: str) -> Iterator[None]:
  """Around a command module's imports of an optional extra's packages.

  The base install serves `load` and `predict`; data sets need the `train`
  extra. Run as a command (``python -m``, `module_name` ``'__main__'``), a
  missing one is a one-line error naming the extra; imported as a library,
  the ModuleNotFoundError itself.
  """
  try:
    yield
  except ModuleNotFoundError as e:
    if module_name != '__main__' or e.name not in OPTIONAL_MODULES:
      raise
    fail(_missing_extra(e))


def run(main: Callable[[Sequence[str]], Optional[int]],
        define_flags: Callable[[], None], *,
        positional: bool = False) -> NoReturn:
  """Defines the flags, parses them and runs ``main(argv)``.

  Args:
    main: returns the exit status (None means 0).
    define_flags: defines the command's flags.
    positional: whether the command takes positional arguments (files).
  """
  define_flags()
  flags.DEFINE_bool('traceback', False,
                    'Show the Python traceback of errors in the input.')

  def wrapped(argv):
    if not positional and len(argv) > 1:
      fail(f'unexpected arguments: {" ".join(argv[1:])}')
    if not flags.FLAGS['verbosity'].present:
      # Orbax and TFDS log every file they write at INFO; the commands print
      # what matters. --verbosity=0 brings the logs back.
      logging.set_verbosity(logging.WARNING)
    try:
      status = main(argv)
    except (ValueError, ArithmeticError) as e:
      if flags.FLAGS.traceback:
        raise
      fail(one_line(e, limit=None))
    except ModuleNotFoundError as e:
      if flags.FLAGS.traceback or e.name not in OPTIONAL_MODULES:
        raise
      fail(_missing_extra(e))
    sys.exit(status or 0)

  app.run(wrapped, flags_parser=_parse_flags)
