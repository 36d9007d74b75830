"""Atomic file writes: a temporary file beside the target, renamed over it when complete.

A reader (the report, a resumed run, a sweep) then sees the previous file or the new one,
never a torn one, even when the writer is killed mid-write. Also the one checked read of
an npz file that came from elsewhere (`read_npz`).
"""

from __future__ import annotations

import contextlib
import json
import os
import zipfile
import zlib
from collections.abc import Iterator
from typing import IO, Any

import numpy as np

__all__ = [
    "open_atomically",
    "read_npz",
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


def read_npz(path: str | os.PathLike[str], where: str) -> dict[str, np.ndarray]:
  """Every array of an npz file, pickles refused; a file that is not one (random bytes, a
  truncated zip, pickled objects) is one error line naming `where` (a config field)."""
  try:
    stored = np.load(path, allow_pickle=False)
    if not isinstance(stored, np.lib.npyio.NpzFile):
      raise ValueError("it holds a single .npy array, not an .npz archive of named arrays")
    with stored:
      arrays = {name: stored[name] for name in stored.files}
    for name, value in arrays.items():
      if not isinstance(value, np.ndarray):  # numpy hands back a non-.npy member as bytes
        raise ValueError(f"its member {name!r} is not a .npy array")
    return arrays
  except FileNotFoundError:
    raise
  except (OSError, EOFError, ValueError, zipfile.BadZipFile, zlib.error) as error:
    raise ValueError(
        f"{where} cannot be read as an .npz file ({type(error).__name__}: {error})."
    ) from error
