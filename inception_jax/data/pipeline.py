"""Training and evaluation iterators: grain over TFDS random-access sources.

Why grain rather than tf.data: grain's order is a pure function of the seed
and the position in the stream (an index sampler plus a per-record seed), so
the iterator state is a few integers that go into the checkpoint, and a
resumed run sees exactly the batches an uninterrupted one would have seen,
with any number of worker processes. A saved tf.data iterator would have to
serialise its shuffle buffer and is tied to the pipeline's graph.

Each JAX process reads only its own contiguous shard of a split (TFDS
shuffled the records when it prepared them) and yields its
``global_batch_size // process_count`` examples per step; the trainer
assembles the global array.

The order depends on the seed, the process count and ``worker_count`` (grain
deals records to workers round-robin); a checkpointed state restores only
into an iterator made with the same three (the trainer refuses to resume
with another ``worker_count``).
"""

from __future__ import annotations

import math
from typing import Dict, Optional, Tuple

from absl import flags
import grain.python as grain
import jax
import numpy as np

from inception_jax.data import datasets
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


def create_train_iterator(data_cfg, *, global_batch_size: int, seed: int,
                          process_index: Optional[int] = None,
                          process_count: Optional[int] = None,
                          split: Optional[str] = None):
  """An endless, resumable iterator of this process's training batches.

  ``next()`` gives {'image': float32 [B, S, S, 3], 'label': int32 [B]} with
  ``B = global_batch_size // process_count``. Epochs follow each other with a
  fresh shuffle each; batches run across epoch boundaries. The iterator's
  ``get_state()`` (bytes) restores with ``set_state()`` on an iterator made
  with the same arguments.
  """
  index, count = _process(process_index, process_count)
  local_batch = _local_batch_size(global_batch_size, count)
  if not 0 <= seed < 2**32:
    raise ValueError(f'The data seed must be in [0, 2**32), got {seed}.')
  split = split or datasets.resolve_splits(data_cfg)[0]
  source = datasets.data_source(data_cfg, split)
  # No drop_remainder: shards differ by at most one record, and every record
  # of the split is seen every epoch.
  shard = grain.ShardOptions(shard_index=index, shard_count=count,
                             drop_remainder=False)
  sampler = grain.IndexSampler(num_records=len(source), shard_options=shard,
                               shuffle=True, num_epochs=None, seed=seed)
  _allow_workers(data_cfg.worker_count)
  loader = grain.DataLoader(
      data_source=source, sampler=sampler,
      operations=[
          transforms.TrainPreprocess.from_config(data_cfg),
          grain.Batch(local_batch, drop_remainder=True),
      ],
      worker_count=data_cfg.worker_count,
      worker_buffer_size=data_cfg.worker_buffer_size,
      shard_options=shard,
      read_options=_read_options(data_cfg))
  return iter(loader)


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

  Yields {'image': float32 [B, S, S, 3] (or [B, crops, S, S, 3] for 10 or
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
  example = {'image': np.zeros(image_shape, np.float32),
             'label': np.zeros((), np.int32)}
  return EvalIterator(loader, num_batches, local_batch, example)
