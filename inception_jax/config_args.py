"""The args of a config file, after the colon of ``--config``.

Every config declares its args once, in a dict of name -> `Arg` at the top
of the file, and parses them with `parse` (big_vision's ``:arg`` strings):

  ARGS = {**config_args.ablations(norm='batchnorm'),
          'runlocal': config_args.Arg(False)}

  def get_config(arg=None):
    args = config_args.parse(arg, ARGS)

and on the command line
``--config=configs/<name>.py:module=naive,aux=False,runlocal``: pairs
``name=value`` separated by commas, a bool arg bare for True. Every key can
then still be overridden with ``--config.<key>=<value>``.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Dict, Mapping, Optional, Tuple

import ml_collections

# How a value error names the type it wanted.
_KIND_NAMES = {int: 'an integer', float: 'a number'}


@dataclasses.dataclass(frozen=True)
class Arg:
  """One arg of a config: its default, and its valid values or its type.

  Attributes:
    default: the value when the arg is not given.
    choices: the valid values ('true'/'false' are read as bools); empty: any
      value `type` reads.
    type: reads a value that has no `choices` (int, float, str); None: the
      default's type.
  """
  default: Any
  choices: Tuple[Any, ...] = ()
  type: Optional[Callable[[str], Any]] = None

  def read(self, name: str, text: Optional[str]) -> Any:
    """The value of ``name=text``; ``text`` None: the bare name."""
    choices = self.choices or (
        (True, False) if isinstance(self.default, bool) else ())
    if choices == (True, False) and text is None:
      return True  # a bool arg given bare
    if choices:
      value = _bool_or_text(text or '')
      if value not in choices:
        raise ValueError(
            f'config arg {name}={text or ""!r} is not one of '
            f'{"|".join(str(v) for v in choices)}.')
      return value
    kind = self.type or type(self.default)
    if text is None:
      raise ValueError(f'config arg {name} needs a value: '
                       f'{name}=<{kind.__name__}>.')
    try:
      return kind(text)
    except ValueError:
      raise ValueError(f'config arg {name}={text!r} is not '
                       f'{_KIND_NAMES.get(kind, kind.__name__)}.') from None


# The paper's switches (Figure 2's module, the auxiliary heads, the LRN) and
# the network (`variant=torchvision`: torchvision's GoogLeNet), the args of
# every config.
ABLATIONS: Dict[str, Arg] = {
    'module': Arg('reduced', choices=('reduced', 'naive')),
    'aux': Arg(True),
    'norm': Arg('lrn', choices=('lrn', 'batchnorm', 'none')),
    'variant': Arg('paper', choices=('paper', 'torchvision')),
}


def ablations(**defaults: Any) -> Dict[str, Arg]:
  """`ABLATIONS` with this config's own defaults, e.g. norm='batchnorm'."""
  out = dict(ABLATIONS)
  for name, default in defaults.items():
    out[name] = dataclasses.replace(out[name], default=default)
  return out


def _bool_or_text(text: str) -> Any:
  lowered = text.lower()
  if lowered in ('true', 'false'):
    return lowered == 'true'
  return text


def parse(arg: Optional[str],
          declared: Mapping[str, Arg]) -> ml_collections.ConfigDict:
  """Reads 'name=value,flag' into every declared arg (defaulted).

  Args:
    arg: the text after ':' in --config, or None.
    declared: this config's args, name -> Arg.

  Returns:
    A ConfigDict with every declared name.

  Raises:
    ValueError: an unknown arg or a bad value, listing the valid ones.
  """
  out = {name: spec.default for name, spec in declared.items()}
  given = set()
  for part in (arg or '').split(','):
    name, sep, value = (p.strip() for p in part.partition('='))
    if not name:
      continue
    if name not in declared:
      raise ValueError(f'unknown config arg {name!r}; valid args are '
                       f'{", ".join(declared)}.')
    out[name] = declared[name].read(name, value if sep else None)
    given.add(name)
  if out.get('variant') == 'torchvision' and 'norm' not in given:
    out['norm'] = 'batchnorm'  # torchvision's network has BatchNorm
  return ml_collections.ConfigDict(out)
