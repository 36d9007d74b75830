"""Atomic file writes: a temporary file beside the target, renamed over it when complete.

A reader (the report, a resumed run, a sweep) then sees the previous file or the new one,
never a torn one, even when the writer is killed mid-write.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from typing import IO, Any

import numpy as np

__all__ = [
    "open_atomically",
    "save_npz_atomically",
    "write_json_atomically",
    "write_text_atomically",
]


@contextlib.contextmanager
def open_atomically(path: str | os.PathLike[str], mode: str = "w", **kwargs: Any) -> Iterator[IO]:
  """`open(path, mode)` whose file appears at `path` only when the block completes; on an
  exception the temporary file is removed and `path` is left as it was."""
  temporary = f"{os.fspath(path)}.tmp"
  try:
    with open(temporary, mode, **kwargs) as f:
      yield f
    os.replace(temporary, path)
  except BaseException:
    with contextlib.suppress(FileNotFoundError):
      os.remove(temporary)
    raise


def write_text_atomically(path: str | os.PathLike[str], text: str) -> None:
  with open_atomically(path) as f:
    f.write(text)


def write_json_atomically(path: str | os.PathLike[str], payload: Any) -> None:
  """`payload` as indented JSON."""
  with open_atomically(path) as f:
    json.dump(payload, f, indent=2)


def save_npz_atomically(path: str | os.PathLike[str], **arrays: Any) -> None:
  """`np.savez(path, **arrays)`, written under exactly `path` (no ".npz" appended)."""
  with open_atomically(path, "wb") as f:
    np.savez(f, **arrays)
