"""Devices and processes: multi-host start-up, the mesh, global batches, SIGTERM.

The same code runs on one CPU, on 8 accelerators and on many hosts: the mesh
spans every device of every process, batches are split over its 'data' axis
and the state is replicated, so XLA inserts the gradient all-reduce and
BatchNorm's cross-device batch statistics by itself.
"""

from __future__ import annotations

import os
import signal
from typing import Dict, Mapping

import jax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
import numpy as np


def _cluster_environment() -> bool:
  """True where the environment describes more than one process."""
  env = os.environ
  if env.get('JAX_COORDINATOR_ADDRESS'):
    return True
  for name in ('SLURM_NTASKS', 'OMPI_COMM_WORLD_SIZE'):
    if int(env.get(name, '1') or 1) > 1:
      return True
  return ',' in env.get('TPU_WORKER_HOSTNAMES', '')


def initialize_distributed(multihost: bool = False) -> None:
  """`jax.distributed.initialize()` for multi-host runs, before any device use.

  With `multihost` or a multi-process cluster environment; the arguments come
  from that environment (TPU pod, SLURM, Open MPI, or
  JAX_COORDINATOR_ADDRESS / JAX_NUM_PROCESSES / JAX_PROCESS_ID).
  """
  if not (multihost or _cluster_environment()):
    return
  if jax.distributed.is_initialized():
    return
  # Multi-process CPU runs need a collectives backend; harmless elsewhere.
  jax.config.update('jax_cpu_collectives_implementation', 'gloo')
  # jax reads JAX_COORDINATOR_ADDRESS itself but not the process count and
  # index; without them it falls back to cluster auto-detection, which
  # fails outside a known cluster (e.g. processes started by hand).
  env = os.environ
  kwargs = {}
  if env.get('JAX_NUM_PROCESSES'):
    kwargs['num_processes'] = int(env['JAX_NUM_PROCESSES'])
  if env.get('JAX_PROCESS_ID'):
    kwargs['process_id'] = int(env['JAX_PROCESS_ID'])
  jax.distributed.initialize(**kwargs)


def create_mesh(devices=None) -> Mesh:
  """A one-axis mesh ('data',) over all devices of all processes."""
  devices = jax.devices() if devices is None else devices
  return Mesh(np.asarray(devices), ('data',))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def batch_sharded(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P('data'))


def check_divisible(batch_size: int, mesh: Mesh, key: str) -> None:
  n = mesh.devices.size
  if batch_size <= 0 or batch_size % n:
    raise ValueError(
        f'{key}={batch_size} cannot be split evenly over the {n} devices; '
        f'use a multiple of {n} (e.g. --config.{key}={max(n, batch_size // n * n)}).')


def to_global(batch: Mapping[str, np.ndarray],
              sharding: NamedSharding) -> Dict[str, jax.Array]:
  """This process's slice of the batch -> arrays sharded over the mesh."""
  return {k: jax.make_array_from_process_local_data(sharding, np.asarray(v))
          for k, v in batch.items()}


class PreemptionSignal:
  """Turns SIGTERM into a flag that the loop checks after every step."""

  def __init__(self):
    self.received = False
    self._previous = None

  def __enter__(self):
    try:
      self._previous = signal.signal(signal.SIGTERM, self._handle)
    except ValueError:  # not the main thread (e.g. a notebook worker)
      self._previous = None
    return self

  def _handle(self, signum, frame):
    del signum, frame
    self.received = True

  def reached(self, step: int) -> bool:
    if jax.process_count() > 1:
      # Every process must stop at the same step to save collectively.
      from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
      try:
        return multihost_utils.reached_preemption_sync_point(step)
      except RuntimeError:
        return self.received
    return self.received

  def __exit__(self, *exc):
    if self._previous is not None:
      signal.signal(signal.SIGTERM, self._previous)
