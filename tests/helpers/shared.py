"""A result computed once per test session, shared by the xdist workers."""

from __future__ import annotations

import fcntl
import json
import os
from typing import Any, Callable

import pytest


def session_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
  """A folder every worker of this session sees (the parent of the workers' own base
  temporary folders under xdist, the base folder itself without)."""
  base = tmp_path_factory.getbasetemp()
  return str(base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base)


def once_per_session(
    tmp_path_factory: pytest.TempPathFactory, name: str, compute: Callable[[], Any]
) -> Any:
  """compute()'s JSON-able result, computed by the first worker that asks and read back by
  the others (the others wait on a file lock meanwhile)."""
  path = os.path.join(session_dir(tmp_path_factory), f"{name}.json")
  with open(path + ".lock", "w") as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    if os.path.exists(path):
      with open(path) as f:
        return json.load(f)
    value = compute()
    with open(path, "w") as f:
      json.dump(value, f)
    return value
