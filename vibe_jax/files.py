"""Atomic file writes: a temporary file beside the target, renamed over it when complete.

A reader (the report, a resumed run, a sweep) then sees the previous file or the new one,
never a torn one, even when the writer is killed mid-write. Also the one checked read of
an npz file that came from elsewhere (`read_npz`), and the content digest of a file or a
directory (`content_digest`) that keys what was computed from it.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import json
import math
import os
import zipfile
import zlib
from collections.abc import Iterator
from typing import IO, Any

import numpy as np

__all__ = [
    "content_digest",
    "json_safe",
    "move_contents_aside",
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


def json_safe(payload: Any) -> Any:
  """`payload` with every non-finite float (NaN, inf) as None, so that json.dumps writes
  standard JSON (null) instead of the NaN / Infinity tokens other readers reject."""
  if isinstance(payload, float) and not math.isfinite(payload):
    return None
  if isinstance(payload, dict):
    return {key: json_safe(value) for key, value in payload.items()}
  if isinstance(payload, (list, tuple)):
    return [json_safe(value) for value in payload]
  return payload


def write_json_atomically(path: str | os.PathLike[str], payload: Any) -> None:
  """`payload` as indented, standard JSON (non-finite numbers as null)."""
  with open_atomically(path) as f:
    json.dump(json_safe(payload), f, indent=2, allow_nan=False)


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


def content_digest(path: str | os.PathLike[str]) -> str:
  """SHA-256 of a file's bytes, or of a directory's files (relative names and contents, in
  sorted order): what a checkpoint holds, not where it lies, so that a backbone
  re-pretrained at the same path gets a new digest and a moved one keeps its own."""
  path = os.path.abspath(os.path.expanduser(os.fspath(path)))
  if os.path.isfile(path):
    return _file_digest(path)
  if not os.path.isdir(path):
    raise FileNotFoundError(f"{path} does not exist.")
  digest = hashlib.sha256()
  for root, dirs, names in os.walk(path):
    dirs.sort()
    for name in sorted(names):
      full = os.path.join(root, name)
      digest.update(os.path.relpath(full, path).replace(os.sep, "/").encode() + b"\0")
      digest.update(_file_digest(full).encode())
  return digest.hexdigest()


_DIGESTS: dict[tuple[str, int, int], str] = {}


def _file_digest(path: str) -> str:
  """One file's SHA-256, remembered per (path, size, mtime) for the process."""
  stat = os.stat(path)
  key = (path, stat.st_size, stat.st_mtime_ns)
  if key not in _DIGESTS:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
      for block in iter(lambda: f.read(1 << 20), b""):
        digest.update(block)
    _DIGESTS[key] = digest.hexdigest()
  return _DIGESTS[key]


def move_contents_aside(directory: str | os.PathLike[str], prefix: str = "replaced-") -> str | None:
  """Moves everything in `directory` (but earlier `prefix`* folders) into a new folder
  directory/<prefix><time>/ and returns its path (None when there was nothing): starting
  over without deleting anything."""
  directory = os.fspath(directory)
  if not os.path.isdir(directory):
    return None
  names = [name for name in os.listdir(directory) if not name.startswith(prefix)]
  if not names:
    return None
  stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
  aside, count = os.path.join(directory, f"{prefix}{stamp}"), 1
  while os.path.exists(aside):
    aside, count = os.path.join(directory, f"{prefix}{stamp}-{count}"), count + 1
  os.makedirs(aside)
  for name in names:
    os.rename(os.path.join(directory, name), os.path.join(aside, name))
  return aside
