r"""How much the LRN layers change a model's output, at init and after training.

  python -m experiments.lrn_effect --workdir=runs/norm/norm-lrn_seed-0

For a run of an LRN model (`model.norm='lrn'`), evaluates the same variables
twice on the first `--num_images` evaluation images, preprocessed as the run
was: once with its LRNs and once with them removed (`norm='none'`, which has
the same variables), and prints the relative L2 difference of the logits,
``|lrn - none| / |none|``, for the freshly initialised variables of the run's
seed and for its newest checkpoint (Polyak weights). A difference near 0 means
the LRNs act as identities at that input scale.
"""

from __future__ import annotations

import json

from absl import flags
import jax
import jax.numpy as jnp
import numpy as np

from inception_jax import cli
from inception_jax.checkpoints import loader
from inception_jax.data import normalization
from inception_jax.data import pipeline
from inception_jax.models import googlenet

FLAGS = flags.FLAGS


def relative_change(model, variables, images) -> float:
  without = googlenet.create_model(
      **dict(googlenet.model_kwargs(model), norm='none'))
  a, _ = model.apply(variables, images, train=False)
  b, _ = without.apply(variables, images, train=False)
  return float(jnp.linalg.norm(a - b) / jnp.linalg.norm(b))


def lrn_effect(workdir: str, num_images: int = 256) -> dict:
  restored = loader.load(workdir)
  config = loader.config_of(restored)
  model = restored.model
  if model.normalization != 'lrn':
    raise ValueError(f'{workdir} trained norm={model.normalization}; this '
                     'measures models with LRN.')
  batch = next(iter(pipeline.create_eval_iterator(
      config.data, global_batch_size=num_images, process_index=0,
      process_count=1)))
  images = jnp.asarray(normalization.normalize(batch['image'][batch['mask']],
                                               config.data.normalization))
  init = googlenet.init_variables(
      model, jax.random.split(jax.random.PRNGKey(config.seed))[0],
      config.data.image_size)
  return {'workdir': workdir, 'normalization': config.data.normalization,
          'images': int(images.shape[0]), 'step': restored.step,
          'relative_logit_change_at_init': relative_change(model, init,
                                                           images),
          'relative_logit_change_trained': relative_change(
              model, restored.variables, images),
          'input_rms': float(np.sqrt(np.mean(np.square(images))))}


def main(argv) -> None:
  del argv
  print(json.dumps(lrn_effect(FLAGS.workdir, FLAGS.num_images)))


def define_flags() -> None:
  cli.DEFINE_path('workdir', None, 'A training run of an LRN model.')
  flags.DEFINE_integer('num_images', 256, 'Evaluation images to compare on.')
  flags.mark_flag_as_required('workdir')


if __name__ == '__main__':
  cli.run(main, define_flags)
