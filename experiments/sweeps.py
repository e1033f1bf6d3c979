"""Named sweeps: lists of members, each a set of config settings.

A sweep is built the way big_vision builds its hyper-parameter grids: an axis
is a list of one-key settings, and `product` / `zip_axes` combine axes into
members. A member's settings are split, by key, into the config args that go
after the colon of `--config` (`module`, `aux`, `norm`, `variant` and the
config's switches) and `--config.<key>=<value>` overrides (`seed`,
`optimizer.lr`, ...), so one member is one ordinary training command:

  python -m inception_jax.main \
      --config=configs/fashion_mnist.py:module=naive,aux=False \
      --config.seed=1 --workdir=ROOT/module-naive_aux-False_seed-1

Every member has a readable name (`module=naive,aux=False,seed=1`) and a
directory name derived from it that is safe on any filesystem and in a
`gs://` path (`module-naive_aux-False_seed-1`), so re-running a sweep finds
the same directories and resumes them.

Adding a sweep: write a function returning a list of settings dicts and add
it to `SWEEPS`.
"""

from __future__ import annotations

import dataclasses
import itertools
import re
from typing import (Any, Callable, Dict, Iterable, List, Mapping, Optional,
                    Sequence, Tuple)

from inception_jax import config_args

# Config args taken after the colon of --config; every other key is a
# --config.<key> override.
CONFIG_ARGS = tuple(config_args.ABLATIONS)
# Boolean switches of the configs; a true value is written as the bare name.
CONFIG_SWITCHES = ('runlocal', 'long')

Settings = Dict[str, Any]


def axis(key: str, values: Iterable[Any]) -> List[Settings]:
  """One axis of a sweep: [{key: v} for every value]."""
  return [{key: value} for value in values]


def product(*axes: Sequence[Settings]) -> List[Settings]:
  """Every combination of one entry per axis; the first axis varies slowest."""
  members = []
  for combo in itertools.product(*axes):
    merged: Settings = {}
    for part in combo:
      _merge_into(merged, part)
    members.append(merged)
  return members


def zip_axes(*axes: Sequence[Settings]) -> List[Settings]:
  """Entries taken in lockstep: the i-th member merges the i-th entries."""
  lengths = {len(a) for a in axes}
  if len(lengths) > 1:
    raise ValueError(f'zip_axes needs axes of equal length, got '
                     f'{sorted(len(a) for a in axes)}.')
  members = []
  for combo in zip(*axes):
    merged: Settings = {}
    for part in combo:
      _merge_into(merged, part)
    members.append(merged)
  return members


def _merge_into(merged: Settings, part: Mapping[str, Any]) -> None:
  for key, value in part.items():
    if key in merged and merged[key] != value:
      raise ValueError(f'sweep axes set {key!r} twice ({merged[key]!r} and '
                       f'{value!r}).')
    merged[key] = value


def format_value(value: Any) -> str:
  """The text of a value on the command line (True, 0.1, naive)."""
  if isinstance(value, bool):
    return 'True' if value else 'False'
  return str(value)


def safe_name(text: str) -> str:
  """A directory name from a member name: `a=b,c=d` -> `a-b_c-d`.

  Only letters, digits, '.', '_' and '-' survive; everything else becomes
  '-', so the name is the same on Linux, macOS, Windows and in GCS, and needs
  no quoting in a shell.
  """
  text = text.replace('=', '-').replace(',', '_')
  return re.sub(r'[^A-Za-z0-9._-]', '-', text)


@dataclasses.dataclass(frozen=True)
class Member:
  """One run of a sweep: its settings in sweep order."""
  settings: Tuple[Tuple[str, Any], ...]

  @property
  def name(self) -> str:
    return ','.join(f'{k}={format_value(v)}' for k, v in self.settings)

  @property
  def dirname(self) -> str:
    return safe_name(self.name) or 'default'

  @property
  def config_args(self) -> Dict[str, Any]:
    """Settings that go after the colon of --config."""
    return {k: v for k, v in self.settings
            if k in CONFIG_ARGS or k in CONFIG_SWITCHES}

  @property
  def overrides(self) -> Dict[str, Any]:
    """Settings passed as --config.<key>=<value>."""
    return {k: v for k, v in self.settings
            if k not in CONFIG_ARGS and k not in CONFIG_SWITCHES}


def parse_config_args(text: Optional[str]) -> Dict[str, Any]:
  """'module=naive,runlocal' -> {'module': 'naive', 'runlocal': True}."""
  out: Dict[str, Any] = {}
  for part in (text or '').split(','):
    part = part.strip()
    if not part:
      continue
    key, sep, value = part.partition('=')
    out[key.strip()] = value.strip() if sep else True
  return out


def config_arg_string(base: Optional[str], member: Member) -> str:
  """The text after ':' of --config: the base args, then the member's.

  A member's value replaces the base's for the same key, so a sweep over
  `module` run with `--config_args=module=naive,runlocal` still varies
  `module`.
  """
  merged = parse_config_args(base)
  merged.update(member.config_args)
  parts = []
  for key, value in merged.items():
    if key in CONFIG_ARGS:
      parts.append(f'{key}={format_value(value)}')
    elif value is True or str(value).lower() == 'true':
      parts.append(key)  # a switch: present means on, absent means off
  return ','.join(parts)


def parse_sets(sets: Sequence[str]) -> Dict[str, str]:
  """['optimizer.lr=0.1', ...] -> {'optimizer.lr': '0.1', ...}."""
  out = {}
  for item in sets or ():
    key, sep, value = item.partition('=')
    key = key.strip()
    if key.startswith('config.'):
      key = key[len('config.'):]
    if not sep or not key:
      raise ValueError(f'--set {item!r} is not key=value.')
    out[key] = value
  return out


def train_args(config_file: str, member: Member, workdir: str, *,
               config_args: Optional[str] = None,
               sets: Optional[Mapping[str, str]] = None,
               extra_overrides: Optional[Mapping[str, Any]] = None
               ) -> List[str]:
  """The arguments of `python -m inception_jax.main` for one member.

  Args:
    config_file: e.g. 'configs/fashion_mnist.py'.
    member: the sweep member.
    workdir: its run directory.
    config_args: base config args for every member ('runlocal', ...).
    sets: --config.<key>=<value> overrides for every member; a key that the
      sweep itself varies is an error, since the member's directory name
      would then not say what ran in it.
    extra_overrides: overrides added after everything else (the launcher's
      `multihost=True`).

  Returns:
    ['--config=...', '--config.seed=0', ..., '--workdir=...'].
  """
  sets = dict(sets or {})
  clash = sorted(set(sets) & set(member.overrides))
  if clash:
    raise ValueError(f'--set {", ".join(clash)} conflicts with the sweep, '
                     f'which varies {", ".join(clash)} itself.')
  args_text = config_arg_string(config_args, member)
  config = config_file + (f':{args_text}' if args_text else '')
  out = [f'--config={config}']
  overrides = dict(member.overrides)
  overrides.update(sets)
  overrides.update(extra_overrides or {})
  out += [f'--config.{k}={format_value(v)}' for k, v in overrides.items()]
  out.append(f'--workdir={workdir}')
  return out


def join_path(root: str, name: str) -> str:
  """root/name for local paths and gs:// URLs alike."""
  return root.rstrip('/') + '/' + name


# --- The sweeps -------------------------------------------------------------

DEFAULT_SEEDS = (0, 1)


def ablation(seeds: Sequence[int] = DEFAULT_SEEDS) -> List[Settings]:
  """Figure 2's module choice x the auxiliary heads, over seeds.

  The paper's claims under test: the naive module's parameter and compute
  blow-up, and the auxiliary heads' small effect (about 0.5%).
  """
  return product(axis('module', ['reduced', 'naive']),
                 axis('aux', [True, False]),
                 axis('seed', seeds))


def norm(seeds: Sequence[int] = (0,)) -> List[Settings]:
  """The stem's normalisation: the paper's LRN, BatchNorm, or none.

  Not one of the paper's ablations (it has LRN only). In every config the
  input follows the layer (`config.input_normalization`): Caffe's 0-255
  minus the mean with LRN, which is not scale-invariant, the config's own
  otherwise, so this sweep changes the layer and the input scale together.
  `--set=data.normalization=caffe` holds the input fixed (as
  experiments/results/lrn_input_scale.md's comparison does).
  """
  return product(axis('norm', ['lrn', 'batchnorm', 'none']),
                 axis('seed', seeds))


def smoke(seeds: Sequence[int] = (0,)) -> List[Settings]:
  """Two members, for checking a setup end to end before a real sweep."""
  return product(axis('module', ['reduced', 'naive']), axis('seed', seeds))


SWEEPS: Dict[str, Callable[..., List[Settings]]] = {
    'ablation': ablation,
    'norm': norm,
    'smoke': smoke,
}


def get_sweep(name: str, seeds: Optional[Sequence[int]] = None
              ) -> List[Member]:
  """The members of a named sweep; `seeds` replaces its seed axis."""
  if name not in SWEEPS:
    raise ValueError(f'unknown sweep {name!r}; known sweeps: '
                     f'{", ".join(sorted(SWEEPS))}.')
  fn = SWEEPS[name]
  settings = fn(seeds) if seeds is not None else fn()
  members = [Member(tuple(s.items())) for s in settings]
  dirnames = [m.dirname for m in members]
  duplicates = sorted({d for d in dirnames if dirnames.count(d) > 1})
  if duplicates:
    raise ValueError(f'sweep {name!r} has members with the same directory: '
                     f'{", ".join(duplicates)}.')
  return members


def parse_seeds(text: Optional[str]) -> Optional[List[int]]:
  """'0,1,2' -> [0, 1, 2]; '' or None -> None (the sweep's own seeds)."""
  if not text:
    return None
  try:
    return [int(s) for s in text.split(',') if s.strip()]
  except ValueError:
    raise ValueError(f'--seeds={text!r} is not a comma-separated list of '
                     f'integers.') from None


def select(members: Sequence[Member], only: Optional[str]) -> List[Member]:
  """Members whose name or directory matches the regular expression `only`."""
  if not only:
    return list(members)
  pattern = re.compile(only)
  return [m for m in members
          if pattern.search(m.name) or pattern.search(m.dirname)]
