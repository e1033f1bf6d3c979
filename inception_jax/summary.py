r"""Table 1 of the paper, recomputed for any configured model.

  python -m inception_jax.summary --config=configs/imagenet.py
  python -m inception_jax.summary --config=configs/imagenet.py:module=naive

For each row of Table 1 (stem convolutions, pools, Inception modules, the
auxiliary heads, the classifier) prints the output shape, the parameter count
and the multiply-adds at the configured input size beside the paper's
"params" and "ops" columns, then the totals with and without the auxiliary
heads.

Multiply-adds are counted from the traced forward pass (`inception_jax.flops`):
every convolution and matrix product, nothing element-wise, with a
convolution costing kernel size x output size as in the paper. XLA's cost
analysis of the compiled forward pass is printed beside it as a cross-check.
XLA counts a multiply-add as two FLOPs, leaves out the kernel taps that land
on zero padding, and adds bias adds, ReLUs, LRN, BatchNorm and pooling: at
224x224 its figure is 1.92x our count and 2.02x our count with padding taps
left out (which is also printed).
"""

from __future__ import annotations

import dataclasses
import inspect
from typing import Optional, Sequence

import jax
import jax.numpy as jnp
from flax import linen as nn

from inception_jax import flops
from inception_jax.models import googlenet

# Table 1's params (K, 1024-based) and ops (M) columns, as printed.
PAPER_COLUMNS = {
    'conv1': (2.7, 34), 'conv2': (112, 360),
    'inception_3a': (159, 128), 'inception_3b': (380, 304),
    'inception_4a': (364, 73), 'inception_4b': (437, 88),
    'inception_4c': (463, 100), 'inception_4d': (580, 119),
    'inception_4e': (840, 170), 'inception_5a': (1072, 54),
    'inception_5b': (1388, 71), 'classifier': (1000, 1),
}


@dataclasses.dataclass
class Row:
  name: str
  kind: str
  output: tuple[int, ...]
  params: int = 0
  macs: int = 0
  is_aux: bool = False

  @property
  def paper(self) -> Optional[tuple[float, float]]:
    return PAPER_COLUMNS.get(self.name)


@dataclasses.dataclass
class Summary:
  rows: list[Row]
  image_size: int
  total_params: int
  total_params_no_aux: int
  total_macs: int          # inference forward: no auxiliary heads
  total_macs_with_aux: int  # training forward: auxiliary heads included
  total_macs_in_bounds: int  # inference, kernel taps on padding left out


def _child_variables(variables, name):
  return {col: tree[name] for col, tree in variables.items() if name in tree}


def summarize(model: googlenet.GoogLeNet, image_size: int) -> Summary:
  """Per-row output shapes, parameters and multiply-adds at one image size."""
  image = jax.ShapeDtypeStruct((1, image_size, image_size, 3), jnp.float32)
  key = jax.random.PRNGKey(0)
  variables = jax.eval_shape(
      lambda x: model.init({'params': key, 'dropout': key}, x, train=False),
      image)

  calls = {}

  def record(next_fun, args, kwargs, context):
    out = next_fun(*args, **kwargs)
    module = context.module
    if (context.method_name == '__call__' and module.scope is not None
        and len(module.scope.path) == 1):
      calls[module.name] = (module, args[0].shape, jnp.shape(out))
    return out

  def forward_train(v, x):
    with nn.intercept_methods(record):
      return model.apply(v, x, train=True, rngs={'dropout': key},
                         mutable=['intermediates', 'batch_stats'])

  _, state = jax.eval_shape(forward_train, variables, image)
  shapes = {k: v[0].shape for k, v in state['intermediates'].items()}

  def child_row(name, kind, *, members=None, is_aux=False):
    members = members or (name,)
    params = macs = 0
    for member in members:
      module, in_shape, _ = calls[member]
      child_vars = _child_variables(variables, member)
      params += googlenet.count_params(child_vars.get('params', {}))
      unbound = module.clone(parent=None)
      takes_train = 'train' in inspect.signature(unbound.__call__).parameters
      kwargs = {'train': False} if takes_train else {}
      macs += flops.count_macs(
          lambda v, x, m=unbound, kw=kwargs: m.apply(v, x, **kw), child_vars,
          jax.ShapeDtypeStruct(in_shape, jnp.float32))
    output = calls[members[-1]][2]
    return Row(name, kind, tuple(output[1:]), params, macs, is_aux)

  def pool_row(kind, key_name):
    return Row('max pool', kind, tuple(shapes[key_name][1:]))

  rows = [child_row('conv1', 'conv 7x7/2'), pool_row('3x3/2', 'pool1'),
          child_row('conv2', 'conv 1x1 + 3x3/1',
                    members=('conv2_reduce', 'conv2')),
          pool_row('3x3/2', 'pool2')]
  for spec in googlenet.TABLE1:
    if spec.name in googlenet.POOL_BEFORE:
      tv_last = spec.name == 'inception_5a' and model.is_torchvision
      rows.append(pool_row('2x2/2' if tv_last else '3x3/2',
                           'pool_' + spec.name[-2:]))
    rows.append(child_row(spec.name, model.module))
    aux_name = googlenet.AUX_AFTER.get(spec.name)
    if aux_name and aux_name in calls:
      rows.append(child_row(aux_name, 'aux head', is_aux=True))
  rows.append(Row('avg pool', 'global', tuple(shapes['avgpool'][1:])))
  rows.append(Row('dropout', f'{model.dropout_rate:.0%}',
                  tuple(shapes['avgpool'][1:])))
  rows.append(child_row('classifier', 'linear'))

  total_params = googlenet.count_params(variables['params'])
  if sum(r.params for r in rows) != total_params:
    raise AssertionError('summary rows do not cover every parameter')
  aux_params = sum(r.params for r in rows if r.is_aux)
  total_macs = flops.count_macs(
      lambda v, x: model.apply(v, x, train=False), variables, image)
  train_macs = flops.count_macs(
      lambda v, x: model.apply(v, x, train=True, rngs={'dropout': key},
                               mutable=['batch_stats']), variables, image)
  in_bounds = flops.count_macs(
      lambda v, x: model.apply(v, x, train=False), variables, image,
      exclude_padding=True)
  return Summary(rows, image_size, total_params, total_params - aux_params,
                 total_macs, train_macs, in_bounds)


def xla_forward_flops(model: googlenet.GoogLeNet, image_size: int) -> float:
  """XLA's FLOP count for one image through the compiled inference pass."""
  image = jnp.zeros((1, image_size, image_size, 3), jnp.float32)
  variables = jax.eval_shape(
      lambda x: model.init(jax.random.PRNGKey(0), x, train=False), image)
  variables = jax.tree_util.tree_map(
      lambda s: jnp.zeros(s.shape, s.dtype), variables)
  return flops.xla_flops(lambda v, x: model.apply(v, x, train=False)[0],
                         variables, image)


def _fmt_shape(shape: Sequence[int]) -> str:
  return 'x'.join(str(d) for d in shape)


def format_summary(summary: Summary, model: googlenet.GoogLeNet,
                   xla: Optional[float] = None) -> str:
  head = (f'{"layer":<14}{"type":<18}{"output":>14}{"params":>13}'
          f'{"paper":>9}{"mult-adds":>16}{"paper":>8}')
  lines = [
      f'GoogLeNet module={model.module} aux={model.aux} norm={model.norm} '
      f'variant={model.variant} width={model.width} '
      f'classes={model.num_classes} input={summary.image_size}x'
      f'{summary.image_size}x3',
      head, '-' * len(head)]
  for r in summary.rows:
    paper_p = paper_o = ''
    if r.paper:
      paper_p, paper_o = f'{r.paper[0]:g}K', f'{r.paper[1]:g}M'
    params = f'{r.params:,}' if r.params else ''
    macs = f'{r.macs:,}' if r.macs else ''
    lines.append(f'{r.name:<14}{r.kind:<18}{_fmt_shape(r.output):>14}'
                 f'{params:>13}{paper_p:>9}{macs:>16}{paper_o:>8}')
  lines.append('-' * len(head))
  lines.append(f'total params: {summary.total_params:,}')
  lines.append(f'total params without aux heads: '
               f'{summary.total_params_no_aux:,}')
  lines.append(f'total multiply-adds: {summary.total_macs:,} '
               '(inference, without aux heads)')
  lines.append(f'total multiply-adds with aux heads: '
               f'{summary.total_macs_with_aux:,} (training forward)')
  lines.append(f'multiply-adds that read a real pixel (taps on the zero '
               f'padding left out): {summary.total_macs_in_bounds:,}')
  if xla is not None:
    lines.append(
        f'XLA cost analysis of the inference pass: {xla:,.0f} FLOPs = '
        f'{xla / summary.total_macs:.3f} x multiply-adds = '
        f'{xla / summary.total_macs_in_bounds:.3f} x in-bounds multiply-adds '
        '(XLA counts 2 FLOPs per multiply-add, skips padding taps, and adds '
        'bias adds, ReLU, normalisation and pooling)')
  lines.append('Paper columns: params in K (1024), ops in M, as printed in '
               'Table 1; several of its rows disagree with its own channel '
               'counts by a few percent.')
  return '\n'.join(lines)


# Class counts of the named data sets, so a summary needs no prepared data.
KNOWN_NUM_CLASSES = {'imagenet2012': 1000, 'fashion_mnist': 10}


def model_from_config(config) -> googlenet.GoogLeNet:
  """The model a training config builds (shapes and counts do not depend on
  the compute dtype, so it is read as float32)."""
  num_classes = config.model.num_classes or KNOWN_NUM_CLASSES.get(
      config.data.name)
  if not num_classes:
    raise ValueError(f'set --config.model.num_classes for data.name='
                     f'{config.data.name!r} (its class count is only known '
                     'once it is prepared).')
  return googlenet.model_from_config(dict(config.model, dtype='float32'),
                                     num_classes)


def main(argv) -> None:
  del argv
  import copy  # pylint: disable=g-import-not-at-top
  from absl import flags  # pylint: disable=g-import-not-at-top
  from inception_jax import paths  # pylint: disable=g-import-not-at-top
  config = copy.deepcopy(flags.FLAGS.config)
  if 'by_image_size' in config:
    # An image folder's recipe (its model width too) follows the images'
    # size. (The data layer imports TensorFlow: only when needed.)
    from inception_jax.data import datasets  # pylint: disable=g-import-not-at-top
    paths.resolve_config_paths(config)
    config = datasets.resolve_config(config)
  model = model_from_config(config)
  image_size = int(flags.FLAGS.image_size or config.data.image_size)
  summary = summarize(model, image_size)
  xla = xla_forward_flops(model, image_size) if flags.FLAGS.xla else None
  print(format_summary(summary, model, xla))


def define_flags() -> None:
  from absl import flags  # pylint: disable=g-import-not-at-top
  from ml_collections import config_flags  # pylint: disable=g-import-not-at-top
  config_flags.DEFINE_config_file('config', None, 'Config file (with :args).',
                                  lock_config=True)
  flags.DEFINE_integer('image_size', None,
                       'Input size; default: the config\'s data.image_size.')
  flags.DEFINE_bool('xla', True,
                    'Also compile the forward pass and print XLA\'s FLOPs.')
  flags.mark_flag_as_required('config')


if __name__ == '__main__':
  from inception_jax import cli  # pylint: disable=g-import-not-at-top
  cli.run(main, define_flags)
