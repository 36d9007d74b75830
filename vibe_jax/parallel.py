"""Device mesh and shardings: the batch on a 'data' axis, state replicated."""

from __future__ import annotations

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

DATA_AXIS = "data"


def initialize_distributed(config) -> None:
  """Joins a multi-process job (config field parallel.coordinator_address; 'auto' lets JAX
  detect it, as on TPU pods and SLURM). Must run before any other JAX call."""
  address = config.coordinator_address
  if not address or jax.distributed.is_initialized():
    return
  if config.heartbeat_timeout_s <= 0:
    raise ValueError(
        f"parallel.heartbeat_timeout_s={config.heartbeat_timeout_s} must be positive "
        "(seconds without a heartbeat before a process counts as dead; JAX's default is 100)."
    )
  # CPU collectives across processes (harmless on GPU/TPU, which bring their own).
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  timeout = {"heartbeat_timeout_seconds": int(config.heartbeat_timeout_s)}
  if address == "auto":
    jax.distributed.initialize(**timeout)
  else:
    jax.distributed.initialize(
        address, num_processes=config.num_processes, process_id=config.process_id, **timeout
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


def shard_rows(array, mesh: Mesh) -> jax.Array:
  """Places rows, already padded to divide over the devices, sharded on rows. `array` is
  anything with a shape that NumPy-style indexing reads (an ndarray, or data.rows.Rows).

  Each process transfers only the rows its own devices own, so with several hosts no device
  receives another host's rows; from Rows (per-host loading) it reads only those rows.
  """
  sharding = data_sharded(mesh)
  return jax.make_array_from_callback(array.shape, sharding, lambda index: array[index])


def replicate(array: np.ndarray, mesh: Mesh) -> jax.Array:
  """The same host array on every device of the mesh (every process passes the same array)."""
  return jax.make_array_from_callback(array.shape, replicated(mesh), lambda index: array[index])


def replicate_tree(tree, mesh: Mesh):
  """Every array leaf of `tree` replicated over the mesh as a global array (the training
  state, so that multi-host jit and checkpointing see one array, not per-host copies)."""

  def leaf_on_mesh(leaf):
    if jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):  # keys travel as their data
      data = replicate(np.asarray(jax.random.key_data(leaf)), mesh)
      return jax.random.wrap_key_data(data, impl=jax.random.key_impl(leaf))
    return replicate(np.asarray(leaf), mesh)

  return jax.tree.map(leaf_on_mesh, tree)


def to_host(array: jax.Array) -> np.ndarray:
  """The whole array on every host (an all-gather when it spans several processes)."""
  if jax.process_count() > 1 and not array.is_fully_addressable:
    return np.asarray(multihost_utils.process_allgather(array, tiled=True))
  return np.asarray(array)


def process_rows(length: int, mesh: Mesh) -> np.ndarray:
  """The rows of a (length, ...) row-sharded array that this process's devices hold."""
  index_map = data_sharded(mesh).addressable_devices_indices_map((length,))
  all_rows = np.arange(length)
  return np.unique(np.concatenate([all_rows[index[0]] for index in index_map.values()]))


def gather_rows(values: np.ndarray, rows: np.ndarray, length: int) -> np.ndarray:
  """Every process's `values` (its `rows` of a (length, ...) array, from process_rows)
  put together on every host."""
  if jax.process_count() == 1:
    whole = np.empty((length, *values.shape[1:]), values.dtype)
    whole[rows] = values
    return whole
  all_values = multihost_utils.process_allgather(values)  # (processes, len(rows), ...)
  all_rows = multihost_utils.process_allgather(rows)
  whole = np.empty((length, *values.shape[1:]), values.dtype)
  whole[np.asarray(all_rows).reshape(-1)] = np.asarray(all_values).reshape(-1, *values.shape[1:])
  return whole


def mean_over_processes(rows: np.ndarray) -> np.ndarray:
  """The mean over axis 0 of the rows all processes hold together (each passes its own)."""
  if jax.process_count() == 1:
    return rows.mean(0)
  total = multihost_utils.process_allgather(rows.sum(0, dtype=np.float64)).sum(0)
  count = multihost_utils.process_allgather(np.asarray(len(rows))).sum()
  return (total / count).astype(rows.dtype)


def check_batch_divides(batch_size: int, mesh: Mesh, field: str) -> None:
  devices = mesh.shape[DATA_AXIS]
  if batch_size % devices:
    raise ValueError(
        f"{field}={batch_size} does not divide over {devices} devices; use a "
        f"multiple of {devices}."
    )


def sync(name: str) -> None:
  """Waits until every process of a multi-process job gets here (nothing in one process):
  after process 0 alone changed shared files that the others read next."""
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices(name)
