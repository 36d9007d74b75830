"""Device mesh and shardings: the batch on a 'data' axis, state replicated."""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

DATA_AXIS = "data"


def initialize_distributed(config) -> None:
  """Joins a multi-process job (config field parallel.coordinator_address; 'auto' lets JAX
  detect it, as on TPU pods and SLURM). Must run before any other JAX call."""
  address = config.coordinator_address
  if not address or jax.distributed.is_initialized():
    return
  # CPU collectives across processes (harmless on GPU/TPU, which bring their own).
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  if address == "auto":
    jax.distributed.initialize()
  else:
    jax.distributed.initialize(
        address, num_processes=config.num_processes, process_id=config.process_id
    )


def make_mesh(num_devices: int | None = None) -> Mesh:
  """A 1-D mesh over the first `num_devices` devices (all of them by default)."""
  devices = jax.devices()
  if num_devices is not None:
    if not 0 < num_devices <= len(devices):
      raise ValueError(f"parallel.num_devices={num_devices} but {len(devices)} devices exist.")
    devices = devices[:num_devices]
  return Mesh(np.asarray(devices), (DATA_AXIS,))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def data_sharded(mesh: Mesh) -> NamedSharding:
  """Leading axis split over the 'data' axis."""
  return NamedSharding(mesh, P(DATA_AXIS))


def padded_length(length: int, mesh: Mesh) -> int:
  """The smallest multiple of the device count that holds `length` rows."""
  devices = mesh.shape[DATA_AXIS]
  return -(-length // devices) * devices


def shard_rows(array: np.ndarray, mesh: Mesh) -> jax.Array:
  """Places a host array, already padded to divide over the devices, sharded on rows.

  Every process holds the same host array; each transfers only the rows its own devices
  own, so with several hosts no device receives another host's rows.
  """
  sharding = data_sharded(mesh)
  return jax.make_array_from_callback(array.shape, sharding, lambda index: array[index])


def replicate(array: np.ndarray, mesh: Mesh) -> jax.Array:
  """The same host array on every device of the mesh (every process passes the same array)."""
  return jax.make_array_from_callback(array.shape, replicated(mesh), lambda index: array[index])


def replicate_tree(tree, mesh: Mesh):
  """Every array leaf of `tree` replicated over the mesh as a global array (the training
  state, so that multi-host jit and checkpointing see one array, not per-host copies)."""
  return jax.tree.map(lambda leaf: replicate(np.asarray(leaf), mesh), tree)


def to_host(array: jax.Array) -> np.ndarray:
  """The whole array on every host (an all-gather when it spans several processes)."""
  if jax.process_count() > 1 and not array.is_fully_addressable:
    from jax.experimental import multihost_utils

    return np.asarray(multihost_utils.process_allgather(array, tiled=True))
  return np.asarray(array)


def check_batch_divides(batch_size: int, mesh: Mesh, field: str) -> None:
  devices = mesh.shape[DATA_AXIS]
  if batch_size % devices:
    raise ValueError(
        f"{field}={batch_size} does not divide over {devices} devices; use a "
        f"multiple of {devices}."
    )
