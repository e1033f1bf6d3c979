"""The training command line with faults injected through the trainer's seams.

  python -m tests.runner --config=... --workdir=... [--nan_at_step=N]
      [--kill_at_step=N --kill_after_checkpoint=M] [--paired_processes=2]
      [--record_batches=DIR]

`train.train_and_evaluate` takes the training input (`make_train_iter`) and
a per-step callback (`on_step`) as arguments; these flags use them, so no
test patches the trainer's internals:

* ``--nan_at_step=N``: the N-th batch of this session is all NaN.
* ``--kill_at_step=N``: SIGKILL after step N, once the checkpoint of step
  ``--kill_after_checkpoint`` is complete on disk (a crash between saves).
* ``--signal_at_step=N --signal=TERM|KILL --signal_processes=0,1``: the
  listed processes send themselves the signal after step N (once the
  checkpoint of ``--kill_after_checkpoint``, if given, is on disk), printing
  ``signalled at step N at <unix time>`` first: a preemption notice on some
  hosts, or a host lost.
* ``--paired_processes=P``: one process is fed the concatenated batches of
  P processes' input shards (process 0's first), i.e. the global batches of
  a P-process run, to compare a multi-process run with a single process.
* ``--record_batches=DIR``: each process appends, per batch it trains on, one
  line of its examples' digests (image and label bytes) to
  ``DIR/process_<i>.jsonl``.
"""

import hashlib
import json
import os
import signal
import sys
import time

from absl import flags
import numpy as np

from inception_jax import cli
from inception_jax import main as main_lib
from inception_jax.data import pipeline
from inception_jax.data import position

FLAGS = flags.FLAGS


class InputWrapper:
  """A training input that passes the wrapped one's batches and state on."""

  def __init__(self, iterator):
    self.iterator = iterator

  def __iter__(self):
    return self

  def __next__(self):
    return next(self.iterator)

  def get_state(self):
    return self.iterator.get_state()

  def set_state(self, state):
    self.iterator.set_state(state)


class PoisonedInput(InputWrapper):
  """Passes batches through, the `nan_at`-th one (1-based) made NaN."""

  def __init__(self, iterator, nan_at: int):
    super().__init__(iterator)
    self.nan_at, self.count = nan_at, 0

  def __next__(self):
    batch = next(self.iterator)
    self.count += 1
    # uint8 pixels cannot hold a NaN: every batch comes as float32 pixels
    # (the step normalises them as it does uint8, and compiles once).
    image = batch['image'].astype(np.float32)
    if self.count == self.nan_at:
      image[...] = np.nan
    return dict(batch, image=image)


class PairedInput:
  """The global batches of a multi-process run, read by one process."""

  def __init__(self, iterators):
    self.iterators = iterators

  def __iter__(self):
    return self

  def __next__(self):
    batches = [next(it) for it in self.iterators]
    return {k: np.concatenate([b[k] for b in batches]) for k in batches[0]}

  def get_state(self):
    return json.dumps([position.iterator_state_to_text(it.get_state())
                       for it in self.iterators])

  def set_state(self, state):
    raise NotImplementedError('a paired reference run does not resume')


class RecordedInput:
  """Passes batches through, writing down which examples each one holds."""

  def __init__(self, iterator, directory):
    import jax  # pylint: disable=g-import-not-at-top
    os.makedirs(directory, exist_ok=True)
    self.iterator = iterator
    self.path = os.path.join(directory, f'process_{jax.process_index()}.jsonl')

  def __iter__(self):
    return self

  def __next__(self):
    batch = next(self.iterator)
    digests = [hashlib.sha1(image.tobytes() + label.tobytes()).hexdigest()[:16]
               for image, label in zip(batch['image'], batch['label'])]
    with open(self.path, 'a', encoding='utf-8') as f:
      f.write(json.dumps(digests) + '\n')
    return batch

  def get_state(self):
    return self.iterator.get_state()

  def set_state(self, state):
    self.iterator.set_state(state)


def make_train_iter(data_cfg, *, global_batch_size, seed):
  count = FLAGS.paired_processes
  if count:
    iterator = PairedInput([
        pipeline.create_train_iterator(
            data_cfg, global_batch_size=global_batch_size, seed=seed,
            process_index=i, process_count=count) for i in range(count)])
  else:
    iterator = pipeline.create_train_iterator(
        data_cfg, global_batch_size=global_batch_size, seed=seed)
  if FLAGS.nan_at_step:
    iterator = PoisonedInput(iterator, FLAGS.nan_at_step)
  if FLAGS.record_batches:
    iterator = RecordedInput(iterator, FLAGS.record_batches)
  return iterator


def _wait_for_checkpoint():
  """Until the checkpoint of step --kill_after_checkpoint is on disk."""
  if not FLAGS.kill_after_checkpoint:
    return
  done = os.path.join(FLAGS.workdir, 'checkpoints',
                      str(FLAGS.kill_after_checkpoint))
  for _ in range(600):
    if os.path.isdir(done):
      break
    time.sleep(0.1)


def on_step(step, metrics):
  del metrics
  if step == FLAGS.signal_at_step:
    import jax  # pylint: disable=g-import-not-at-top
    if str(jax.process_index()) in FLAGS.signal_processes.split(','):
      _wait_for_checkpoint()
      print(f'signalled at step {step} at {time.time():.3f}', flush=True)
      os.kill(os.getpid(), getattr(signal, f'SIG{FLAGS.signal}'))
  if step == FLAGS.kill_at_step:
    _wait_for_checkpoint()
    sys.stdout.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def define_flags():
  main_lib.define_flags()
  flags.DEFINE_integer('nan_at_step', 0, 'Batch made NaN (1-based), or 0.')
  flags.DEFINE_integer('kill_at_step', 0, 'Step after which to SIGKILL.')
  flags.DEFINE_integer('kill_after_checkpoint', 0,
                       'Checkpoint step that must be on disk first.')
  flags.DEFINE_integer('signal_at_step', 0,
                       'Step after which the listed processes get --signal.')
  flags.DEFINE_enum('signal', 'TERM', ['TERM', 'KILL'], 'Signal to send.')
  flags.DEFINE_string('signal_processes', '0',
                      'Comma-separated process indices that signal.')
  flags.DEFINE_integer('paired_processes', 0,
                       'Feed the global batches of this many processes.')
  flags.DEFINE_string('record_batches', None,
                      'Write each batch\'s example digests under this dir.')


def main(argv):
  del argv
  main_lib.train(FLAGS.config, FLAGS.workdir,
                 make_train_iter=make_train_iter, on_step=on_step)


if __name__ == '__main__':
  cli.run(main, define_flags)
