"""Devices and processes (vibe_jax/parallel.py); several devices and processes: e2e/."""

import pytest

from configs import common
from vibe_jax import parallel


def test_heartbeat_timeout_reaches_jax_and_must_be_positive(monkeypatch):
  joined = []
  monkeypatch.setattr(parallel.jax.distributed, "is_initialized", lambda: False)
  monkeypatch.setattr(
      parallel.jax.distributed, "initialize", lambda *args, **kwargs: joined.append(kwargs)
  )
  monkeypatch.setattr(parallel.jax.config, "update", lambda *args: None)
  config = common.base_config().parallel
  config.coordinator_address = "127.0.0.1:1234"
  config.num_processes = 2
  config.heartbeat_timeout_s = 0
  with pytest.raises(ValueError, match=r"parallel\.heartbeat_timeout_s=0 must be positive"):
    parallel.initialize_distributed(config)
  assert not joined
  config.heartbeat_timeout_s = 600
  parallel.initialize_distributed(config)
  assert joined == [{"num_processes": 2, "process_id": 0, "heartbeat_timeout_seconds": 600}]
