"""Device mesh and shardings: the batch on a 'data' axis, state replicated."""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

DATA_AXIS = "data"


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


def check_batch_divides(batch_size: int, mesh: Mesh, field: str) -> None:
  devices = mesh.shape[DATA_AXIS]
  if batch_size % devices:
    raise ValueError(f"{field}={batch_size} does not divide over {devices} devices; use a "
                     f"multiple of {devices}.")
