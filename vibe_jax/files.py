"""Atomic file writes: a temporary file beside the target, then a rename."""

from __future__ import annotations

import json
import os

__all__ = ["write_json_atomically"]


def write_json_atomically(path: str, payload: dict) -> None:
  temporary = path + ".tmp"
  with open(temporary, "w") as f:
    json.dump(payload, f, indent=2)
  os.replace(temporary, path)
