"""Command line: train and evaluate GoogLeNet.

  python -m inception_jax.main --config=configs/fashion_mnist.py \
      --workdir=runs/fashion_mnist [--config.key=value ...]

Rerunning the same command on the same workdir resumes from its newest
checkpoint. Mistakes in the config or the input are reported in one line on
stderr with exit status 1 (`--traceback` shows the Python traceback).
"""

import os
import sys

# TensorFlow (used by the data pipeline and TensorBoard) prints C++ info lines
# on import; keep stderr for what the user needs to read.
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

# pylint: disable=g-import-not-at-top,wrong-import-position
from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from inception_jax import cli

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file(
    'config', None,
    'Training config file, e.g. configs/fashion_mnist.py[:args].',
    lock_config=True)
flags.DEFINE_string('workdir', None,
                    'Directory for checkpoints, metrics and TensorBoard logs.')
flags.DEFINE_bool('traceback', False,
                  'Show the full Python traceback for errors in the input.')


fail = cli.fail
parse_flags = cli.parse_flags


def main(argv):
  if len(argv) > 1:
    fail(f'unexpected arguments: {" ".join(argv[1:])}')
  if FLAGS.config is None or FLAGS.workdir is None:
    fail('--config and --workdir are required, e.g. '
         '--config=configs/fashion_mnist.py --workdir=runs/fashion_mnist')
  if not FLAGS['verbosity'].present:
    # Orbax and TFDS log every file they write at INFO; the progress lines
    # say what matters. --verbosity=0 brings the logs back.
    logging.set_verbosity(logging.WARNING)
  from inception_jax import train
  try:
    train.train_and_evaluate(FLAGS.config, FLAGS.workdir)
  except (ValueError, train.NonFiniteError) as e:
    if FLAGS.traceback:
      raise
    fail(str(e))
  # Exit status 0 also after SIGTERM: the checkpoint is saved.


if __name__ == '__main__':
  app.run(main, flags_parser=parse_flags)
