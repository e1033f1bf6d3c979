"""Training and evaluation iterators: grain over TFDS random-access sources.

Why grain rather than tf.data: grain reads records by index and runs the
per-example work in worker processes, so the training order is a pure
function of the seed and the position in the stream, and the iterator's
saved state is one number. A saved tf.data iterator would have to serialise
its shuffle buffer and is tied to the pipeline's graph.

Training reads one global order whatever the number of processes: epoch e is
a permutation of all the split's records drawn from ``(seed, e)``, the epochs
follow each other as one stream, and global step s takes the stream's
positions ``[s*B, (s+1)*B)`` (B the global batch). Process p of M takes the
p-th of M equal, consecutive parts of each step's positions, which is how the
trainer lays the local batches out in the global array. Each example's random
augmentation comes from ``(seed, its position in the stream)``. So the batches
do not depend on the process count or on ``worker_count``, and the saved
state, the count of examples the run has consumed, resumes on any number of
processes (and workers) with no example of the epoch repeated or skipped.

Evaluation: each process reads a contiguous shard of the split once, padded
so every process runs the same number of batches.
"""

from __future__ import annotations

import json
import math
import sys
from typing import Any, Dict, Optional, Tuple

from absl import flags
from absl import logging
import grain.python as grain
import jax
import numpy as np

from inception_jax.data import datasets
from inception_jax.data import position
from inception_jax.data import transforms

Batch = Dict[str, np.ndarray]


def _process(process_index: Optional[int],
             process_count: Optional[int]) -> Tuple[int, int]:
  if process_index is None:
    process_index = jax.process_index()
  if process_count is None:
    process_count = jax.process_count()
  if not 0 <= process_index < process_count:
    raise ValueError(f'process_index {process_index} is not in '
                     f'[0, {process_count}).')
  return process_index, process_count


def _read_options(data_cfg) -> grain.ReadOptions:
  threads, buffer_size = data_cfg.read_threads, data_cfg.read_buffer_size
  if threads < 1 or buffer_size < 1:
    raise ValueError(
        f'data.read_threads ({threads}) and data.read_buffer_size '
        f'({buffer_size}) must be >= 1.')
  return grain.ReadOptions(num_threads=threads,
                           prefetch_buffer_size=buffer_size)


def _batch_read_options(options: grain.ReadOptions,
                        batch_size: int) -> grain.ReadOptions:
  """``options`` for a source whose records are batches of ``batch_size``:
  the read-ahead, given in records, rounded up to whole batches."""
  return grain.ReadOptions(
      num_threads=options.num_threads,
      prefetch_buffer_size=-(-options.prefetch_buffer_size // batch_size))


def _allow_workers(worker_count: int) -> None:
  # grain's worker processes read absl flags; outside absl.app.run (a
  # notebook, a test) nobody has parsed them, so take their defaults.
  if worker_count > 0 and not flags.FLAGS.is_parsed():
    flags.FLAGS.mark_as_parsed()


def _local_batch_size(global_batch_size: int, process_count: int) -> int:
  if global_batch_size <= 0 or global_batch_size % process_count:
    raise ValueError(f'The global batch size {global_batch_size} must be a '
                     f'positive multiple of the process count '
                     f'{process_count}.')
  return global_batch_size // process_count


class GlobalOrderSource:
  """Process `process_index`'s share of the one global training order, a
  local batch per record: record k is the records of this process's part of
  global step k (from ``start``, the examples already consumed), with each
  one's stream position, from which its augmentation's generator comes.

  grain's per-record machinery (sampler, read hand-off, map, batching)
  then runs once per batch, not once per example. With worker processes,
  worker w reads records k = w, w + W, ... and grain takes its batches from
  the workers in turn, so the k-th batch this process yields is record k,
  whatever the worker count.
  """

  def __init__(self, source, *, seed: int, global_batch_size: int,
               process_index: int, process_count: int, start: int = 0):
    self._source = source
    self._num_records = len(source)
    self._seed = seed
    self._global_batch = global_batch_size
    self._local_batch = global_batch_size // process_count
    self._process_index = process_index
    self._process_count = process_count
    self._start = start
    self._order_epoch, self._order = None, None

  def __repr__(self) -> str:
    return (f'GlobalOrderSource(num_records={self._num_records}, '
            f'seed={self._seed}, global_batch_size={self._global_batch}, '
            f'process_index={self._process_index}, '
            f'process_count={self._process_count}, start={self._start})')

  def __len__(self) -> int:
    return sys.maxsize  # endless

  def positions(self, index: int) -> np.ndarray:
    """The global stream positions of this process's `index`-th batch."""
    first = (self._start + index * self._global_batch +
             self._process_index * self._local_batch)
    return first + np.arange(self._local_batch)

  def epoch_order(self, epoch: int) -> np.ndarray:
    if epoch != self._order_epoch:
      rng = np.random.default_rng([self._seed, epoch])
      self._order = rng.permutation(self._num_records)
      self._order_epoch = epoch
    return self._order

  def __getitem__(self, index: int) -> Dict[str, Any]:
    if index < 0:
      raise IndexError(index)
    positions = [int(p) for p in self.positions(index)]
    keys = []
    for p in positions:
      epoch, i = divmod(p, self._num_records)
      keys.append(int(self.epoch_order(epoch)[i]))
    # One at a time: TFDS's array_record __getitems__ reads through a
    # thread pool, twice the CPU per record here.
    return {'records': [self._source[k] for k in keys],
            'positions': positions}


class _BatchIndexSampler:
  """Record k of `GlobalOrderSource` in turn, endless."""

  def __len__(self) -> int:
    return sys.maxsize

  def __getitem__(self, index: int) -> grain.RecordMetadata:
    if index < 0:
      raise IndexError(index)
    return grain.RecordMetadata(index=index, record_key=index)


def example_rng(seed: int, position: int) -> np.random.Generator:
  """The generator of the example at ``position`` of the global stream."""
  return np.random.Generator(np.random.Philox(key=(seed << 64) | position))


class TrainBatchFn:
  """grain's batch function for a `GlobalOrderSource` record: the local
  batch, each example `transforms.TrainPreprocess` of its record and its
  position's generator, written to shared memory when grain asks (worker
  processes hand batches over through it)."""

  def __init__(self, transform: transforms.TrainPreprocess, seed: int):
    self._transform = transform
    self._seed = seed
    self._shared_memory = False

  def enable_shared_memory_output(self) -> None:
    self._shared_memory = True

  def __call__(self, values) -> Batch:
    (batch,) = values
    examples = self._transform.batch(
        batch['records'],
        [example_rng(self._seed, p) for p in batch['positions']])
    out = {}
    for key in examples[0]:
      first = examples[0][key]
      shape, dtype = (len(examples),) + np.shape(first), np.asarray(
          first).dtype
      stacked = (grain.SharedMemoryArray(shape, dtype=dtype)
                 if self._shared_memory else np.empty(shape, dtype))
      out[key] = np.stack([e[key] for e in examples], out=stacked)
    return out


class TrainIterator:
  """This process's training batches, resumable on any process count.

  ``get_state()`` is JSON text with ``examples``, the count of the global
  stream's examples consumed; ``set_state()`` restarts the loader there.
  """

  def __init__(self, data_cfg, source, *, global_batch_size: int, seed: int,
               process_index: int, process_count: int):
    self._data_cfg, self._source = data_cfg, source
    self._global_batch = global_batch_size
    self._seed = seed
    self._process_index, self._process_count = process_index, process_count
    self._examples = 0
    self._iterator = None  # made at the first batch: set_state may come first
    # Bad settings fail here, at creation, not at the first batch.
    self._transform = transforms.TrainPreprocess.from_config(data_cfg)
    self._read_options = _read_options(data_cfg)

  def _loader(self) -> grain.DataLoader:
    cfg = self._data_cfg
    source = GlobalOrderSource(
        self._source, seed=self._seed,
        global_batch_size=self._global_batch,
        process_index=self._process_index,
        process_count=self._process_count, start=self._examples)
    _allow_workers(cfg.worker_count)
    return grain.DataLoader(
        data_source=source, sampler=_BatchIndexSampler(),
        operations=[
            # One record is a whole local batch already.
            grain.Batch(1, batch_fn=TrainBatchFn(self._transform,
                                                 self._seed)),
        ],
        worker_count=cfg.worker_count,
        worker_buffer_size=cfg.worker_buffer_size,
        shard_options=grain.NoSharding(),
        read_options=_batch_read_options(self._read_options,
                                         self._global_batch //
                                         self._process_count))

  def __iter__(self) -> 'TrainIterator':
    return self

  def __next__(self) -> Batch:
    if self._iterator is None:
      self._iterator = iter(self._loader())
    batch = next(self._iterator)
    self._examples += self._global_batch
    return batch

  def get_state(self) -> str:
    return json.dumps({
        'format': position.INPUT_POSITION_FORMAT,
        'examples': self._examples, 'seed': self._seed,
        'num_records': len(self._source),
        'global_batch_size': self._global_batch,
        'process_count': self._process_count,
    })

  def set_state(self, state) -> None:
    saved = position.input_position(state)
    if saved is None:
      raise ValueError(f'not an input position of this pipeline: '
                       f'{position.iterator_state_to_text(state)[:100]}')
    for key, value in (('seed', self._seed),
                       ('num_records', len(self._source))):
      if saved[key] != value:
        raise ValueError(
            f'the saved input position is in the order of {key} '
            f'{saved[key]}, this run\'s is {value}; resume with the data '
            'and seed it was trained with (or use a new --workdir).')
    if saved['process_count'] != self._process_count and (
        self._process_index == 0):
      logging.warning(
          'Input saved by %d process(es) resumes on %d at example %d of the '
          'same global order: nothing of the epoch is repeated or skipped.',
          saved['process_count'], self._process_count, saved['examples'])
    self._examples = int(saved['examples'])
    self._iterator = None


def create_train_iterator(data_cfg, *, global_batch_size: int, seed: int,
                          process_index: Optional[int] = None,
                          process_count: Optional[int] = None,
                          split: Optional[str] = None) -> TrainIterator:
  """An endless, resumable iterator of this process's training batches.

  ``next()`` gives {'image': uint8 [B, S, S, 3], 'label': int32 [B]} with
  ``B = global_batch_size // process_count``: this process's part of the
  next global batch. Epochs follow each other with a fresh shuffle each;
  batches run across epoch boundaries. ``get_state()`` restores with
  ``set_state()`` on an iterator of any process count (and worker count)
  made with the same data, seed and global batch size.
  """
  index, count = _process(process_index, process_count)
  _local_batch_size(global_batch_size, count)
  if not 0 <= seed < 2**32:
    raise ValueError(f'The data seed must be in [0, 2**32), got {seed}.')
  split = split or datasets.resolve_splits(data_cfg)[0]
  source = datasets.data_source(data_cfg, split)
  return TrainIterator(data_cfg, source, global_batch_size=global_batch_size,
                       seed=seed, process_index=index, process_count=count)


def shard_bounds(num_records: int, process_index: int,
                 process_count: int) -> Tuple[int, int]:
  """The [start, end) records of a split that a process evaluates."""
  # The same split grain's IndexSampler makes without drop_remainder.
  per_shard, remainder = divmod(num_records, process_count)
  start = per_shard * process_index + min(process_index, remainder)
  end = per_shard * (process_index + 1) + min(process_index + 1, remainder)
  return start, end


class SliceSource:
  """Records [start, end) of a random-access source, as a source."""

  def __init__(self, source, start: int, end: int):
    self._source, self._start, self._end = source, start, end

  def __len__(self) -> int:
    return self._end - self._start

  def __getitem__(self, index: int):
    if not 0 <= index < len(self):
      raise IndexError(index)
    return self._source[self._start + index]


class EvalIterator:
  """This process's evaluation batches, the last ones padded and masked.

  Every process yields the same number of batches (``len(self)``), so
  collective evaluation steps line up; across all processes each record of
  the split appears exactly once with ``mask`` True.
  """

  def __init__(self, loader: Optional[grain.DataLoader], num_batches: int,
               local_batch: int, example: Batch):
    # No loader: this process's shard is empty and it only pads.
    self._loader_iter = iter(loader) if loader is not None else iter(())
    self._num_batches = num_batches
    self._local_batch = local_batch
    self._example = example
    self._produced = 0

  def __len__(self) -> int:
    return self._num_batches

  def __iter__(self) -> 'EvalIterator':
    return self

  def __next__(self) -> Batch:
    if self._produced >= self._num_batches:
      self._loader_iter = iter(())  # Lets grain stop its workers now.
      raise StopIteration
    self._produced += 1
    # Batching here rather than in grain: with worker processes grain makes
    # each worker's last batch short, and the count of batches would vary.
    examples = []
    for example in self._loader_iter:
      examples.append(example)
      if len(examples) == self._local_batch:
        break
    batch = {k: np.zeros((self._local_batch,) + v.shape, v.dtype)
             for k, v in self._example.items()}
    for i, example in enumerate(examples):
      for k in batch:
        batch[k][i] = example[k]
    mask = np.zeros(self._local_batch, np.bool_)
    mask[:len(examples)] = True
    return {**batch, 'mask': mask}


def create_eval_iterator(data_cfg, *, global_batch_size: int, crops: int = 1,
                         split: Optional[str] = None,
                         process_index: Optional[int] = None,
                         process_count: Optional[int] = None) -> EvalIterator:
  """One pass over this process's shard of the evaluation split.

  Yields {'image': uint8 [B, S, S, 3] (or [B, crops, S, S, 3] for 10 or
  144 crops), 'label': int32 [B], 'mask': bool [B]},
  ``B = global_batch_size // process_count``.
  """
  index, count = _process(process_index, process_count)
  local_batch = _local_batch_size(global_batch_size, count)
  split = split or datasets.resolve_splits(data_cfg)[1]
  source = datasets.data_source(data_cfg, split)
  transform = transforms.EvalPreprocess.from_config(data_cfg, crops)
  num_records = len(source)
  num_batches = math.ceil(math.ceil(num_records / count) / local_batch)
  # grain's DataLoader rounds a finite sharded sampler down to a multiple of
  # the shard count, which would drop up to count - 1 records; slicing the
  # source ourselves keeps every one.
  start, end = shard_bounds(num_records, index, count)
  shard_source = SliceSource(source, start, end)
  _allow_workers(data_cfg.worker_count)
  loader = None if not len(shard_source) else grain.DataLoader(
      data_source=shard_source,
      sampler=grain.IndexSampler(num_records=len(shard_source),
                                 shard_options=grain.NoSharding(),
                                 shuffle=False, num_epochs=1, seed=0),
      operations=[transform],
      worker_count=data_cfg.worker_count,
      worker_buffer_size=data_cfg.worker_buffer_size,
      shard_options=grain.NoSharding(),
      read_options=_read_options(data_cfg))
  # The shape and dtype of one example, for padding, without a decode.
  size = data_cfg.image_size
  image_shape = (size, size, 3) if crops == 1 else (crops, size, size, 3)
  example = {'image': np.zeros(image_shape, np.uint8),
             'label': np.zeros((), np.int32)}
  return EvalIterator(loader, num_batches, local_batch, example)
