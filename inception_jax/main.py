"""Command line: train and evaluate GoogLeNet.

  python -m inception_jax.main --config=configs/fashion_mnist.py \
      --workdir=runs/fashion_mnist [--config.key=value ...]

Rerunning the same command on the same workdir resumes from its newest
checkpoint, from any current directory (the workdir is made absolute when it
is parsed). Mistakes in the config or the input are reported in one line on
stderr with exit status 1 (`--traceback` shows the Python traceback).
"""

import os
import sys

# TensorFlow (used by the data pipeline and TensorBoard) prints C++ info lines
# on import; keep stderr for what the user needs to read.
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

# pylint: disable=g-import-not-at-top,wrong-import-position
from absl import flags
from ml_collections import config_flags

from inception_jax import cli

FLAGS = flags.FLAGS
# The exit status of a process whose run lost another process.
PEER_LOST_STATUS = 3


def define_flags() -> None:
  config_flags.DEFINE_config_file(
      'config', None,
      'Training config file, e.g. configs/fashion_mnist.py[:args].',
      lock_config=True)
  cli.DEFINE_path('workdir', None,
                  'Directory for checkpoints, metrics and TensorBoard logs.')
  flags.mark_flags_as_required(['config', 'workdir'])


def train(config, workdir: str, **seams) -> None:
  """`train.train_and_evaluate`, as a command: exit status 0 also after
  SIGTERM (the checkpoint is saved); with several processes, a lost one
  ends this one with one line and exit status 3 (`PEER_LOST_STATUS`)."""
  from inception_jax import mesh
  from inception_jax import train as train_lib
  try:
    train_lib.train_and_evaluate(config, workdir, **seams)
  except mesh.PeerLostError as e:
    print(f'error: {e}', file=sys.stderr, flush=True)
    sys.stdout.flush()
    # Not sys.exit: JAX's exit handler would wait at a shutdown barrier for
    # the process that is gone, then abort with a C++ stack trace.
    os._exit(PEER_LOST_STATUS)  # pylint: disable=protected-access


def main(argv) -> None:
  del argv
  train(FLAGS.config, FLAGS.workdir)


if __name__ == '__main__':
  cli.run(main, define_flags)
