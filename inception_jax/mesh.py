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

from absl import logging
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


def initialize_distributed(multihost: bool = False,
                           peer_timeout_s: int = 100) -> None:
  """`jax.distributed.initialize()` for multi-host runs, before any device use.

  With `multihost` or a multi-process cluster environment; the arguments come
  from that environment (TPU pod, SLURM, Open MPI, or
  JAX_COORDINATOR_ADDRESS / JAX_NUM_PROCESSES / JAX_PROCESS_ID).
  `peer_timeout_s` is the coordination service's heartbeat timeout: a
  process silent that long is lost, and JAX ends every other one.
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
  if peer_timeout_s <= 0:
    raise ValueError(f'peer_timeout_s must be > 0 seconds, got '
                     f'{peer_timeout_s}.')
  jax.distributed.initialize(heartbeat_timeout_seconds=int(peer_timeout_s),
                             **kwargs)


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


class PeerLostError(RuntimeError):
  """Another process of a multi-process run has gone; this one stops too."""


class PreemptionSignal:
  """Whether the run should save and stop after this step (SIGTERM).

  One process: a Python SIGTERM handler sets a flag that the loop reads
  after every step.

  Several processes: no Python handler is installed. Every process must stop
  at the same step to save collectively, and only JAX's preemption service
  can agree on one: `jax.distributed.initialize()` installs a C++ SIGTERM
  handler that tells the coordination service, which picks the step after
  the furthest any process has reached; `reached(step)` turns true at that
  step on every process. A Python handler would replace the C++ one, the
  notice would never leave the process that got it, and the sync point
  would never be reached (SIGTERM would save and stop nothing). So a notice
  on any one host stops them all at one step, as does one on every host.
  """

  def __init__(self):
    self.received = False
    self._previous = None
    self._multiprocess = False

  def __enter__(self):
    self._multiprocess = jax.process_count() > 1
    if self._multiprocess:
      return self  # JAX's own handler stays (see the class docstring).
    try:
      self._previous = signal.signal(signal.SIGTERM, self._handle)
    except ValueError:  # not the main thread (e.g. a notebook worker)
      self._previous = None
    return self

  def _handle(self, signum, frame):
    del signum, frame
    self.received = True

  def reached(self, step: int) -> bool:
    """True at the step every process stops at; call it after every step."""
    if self._multiprocess:
      from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
      self.received = multihost_utils.reached_preemption_sync_point(step)
      if self.received:
        logging.warning('SIGTERM on a process of this run: process %d of %d '
                        'saves and stops at step %d.', jax.process_index(),
                        jax.process_count(), step)
    return self.received

  def __exit__(self, *exc):
    if self._previous is not None:
      signal.signal(signal.SIGTERM, self._previous)
      self._previous = None
