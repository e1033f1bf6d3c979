"""Command line: train and evaluate GoogLeNet.

  python -m inception_jax.main --config=configs/fashion_mnist.py \
      --workdir=runs/fashion_mnist [--config.key=value ...]

Rerunning the same command on the same workdir resumes from its newest
checkpoint, from any current directory (the workdir is made absolute when it
is parsed). Mistakes in the config or the input are reported in one line on
stderr with exit status 1 (`--traceback` shows the Python traceback).
"""

import os

# TensorFlow (used by the data pipeline and TensorBoard) prints C++ info lines
# on import; keep stderr for what the user needs to read.
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

# pylint: disable=g-import-not-at-top,wrong-import-position
from absl import flags
from ml_collections import config_flags

from inception_jax import cli

FLAGS = flags.FLAGS


def define_flags() -> None:
  config_flags.DEFINE_config_file(
      'config', None,
      'Training config file, e.g. configs/fashion_mnist.py[:args].',
      lock_config=True)
  cli.DEFINE_path('workdir', None,
                  'Directory for checkpoints, metrics and TensorBoard logs.')
  flags.mark_flags_as_required(['config', 'workdir'])


def main(argv) -> None:
  del argv
  from inception_jax import train
  train.train_and_evaluate(FLAGS.config, FLAGS.workdir)
  # Exit status 0 also after SIGTERM: the checkpoint is saved.


if __name__ == '__main__':
  cli.run(main, define_flags)
