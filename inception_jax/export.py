r"""Write a training checkpoint's weights as a parameters-only checkpoint.

  python -m inception_jax.export --checkpoint=runs/fashion_mnist \
      --out=runs/fashion_mnist_params [--raw]

A training checkpoint also holds the optimiser state, the RNG and the input
position (about three times the weights); what is shared or served needs only
the variables and the description of the model. The result is the format of
`inception_jax.checkpoints.params` (the torchvision converter's too), which
`inception_jax.load` reads like a training checkpoint. Its ``extra`` records
the source step, which weights were taken, the evaluation preprocessing and
the training config, so `predict` preprocesses exactly as before.
"""

from __future__ import annotations

import json
import os
from typing import Sequence

from inception_jax import paths
from inception_jax import predict
from inception_jax.checkpoints import loader
from inception_jax.checkpoints import params


def export(checkpoint: str, out_dir: str, *, raw: bool = False,
           overwrite: bool = False) -> str:
  """Exports the Polyak-averaged (or, with `raw`, the raw) weights.

  Returns:
    The written checkpoint directory.

  Raises:
    ValueError: no checkpoint at `checkpoint`, or `out_dir` already holds
      one and not `overwrite`.
  """
  out_dir = paths.resolve(out_dir)
  restored = loader.load(checkpoint, polyak=not raw)
  config = loader.config_of(restored)
  prep = predict.preprocessing_of(restored)
  extra = dict((restored.meta.get('extra') or {})
               if restored.kind == 'params' else {})
  extra.update({
      'exported_from': restored.path,
      'step': restored.step,
      'weights': ('raw' if raw else 'polyak') if restored.kind ==
                 'train_state' else extra.get('weights', 'as saved'),
      'preprocessing': {'image_size': prep.image_size,
                        'crop_fraction': prep.crop_fraction,
                        'normalization': prep.normalization},
  })
  if config is not None:
    extra['config'] = json.loads(config.to_json())
  if restored.kind == 'train_state':
    extra['dataset'] = restored.meta.get('dataset')
  path = params.save(
      out_dir, restored.variables, restored.model,
      image_size=restored.image_size, class_names=restored.class_names,
      extra=extra, overwrite=overwrite)
  return os.fspath(path)


def main(argv: Sequence[str]) -> None:
  del argv
  from absl import flags  # pylint: disable=g-import-not-at-top
  f = flags.FLAGS
  path = export(f.checkpoint, f.out, raw=f.raw, overwrite=f.overwrite)
  print(f'Wrote the {"raw" if f.raw else "Polyak-averaged"} weights of '
        f'{f.checkpoint} to {path}.')


def define_flags() -> None:
  from absl import flags  # pylint: disable=g-import-not-at-top
  from inception_jax import cli  # pylint: disable=g-import-not-at-top
  cli.DEFINE_path('checkpoint', None,
                  'A workdir, step directory or parameters-only checkpoint '
                  '(local or gs://).')
  cli.DEFINE_path('out', None, 'Directory to write the checkpoint to.')
  flags.DEFINE_bool('raw', False,
                    'Export the raw weights instead of their Polyak average.')
  flags.DEFINE_bool('overwrite', False, 'Replace a checkpoint in --out.')
  flags.mark_flags_as_required(['checkpoint', 'out'])


if __name__ == '__main__':
  from inception_jax import cli  # pylint: disable=g-import-not-at-top
  cli.run(main, define_flags)
