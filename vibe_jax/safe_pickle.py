"""Pickles read without running code from them.

CIFAR's python batches and torch.save files (BackdoorBench's attack records) hold only
numpy arrays, tensors and builtin containers. An unpickler that admits exactly the globals
those need reads them, and refuses any other global (a malicious pickle names os.system or
the like) before it is called. torch.save's zip format is parsed here without torch: each
tensor becomes a numpy array read from the archive, so no training process imports torch.
"""

from __future__ import annotations

import functools
import io
import pickle
import zipfile
from typing import Any, Callable

import numpy as np

from vibe_jax import errors

__all__ = ["NUMPY_GLOBALS", "UnsafePickleError", "load_torch_file", "loads"]

# What numpy arrays, numpy scalars and builtin containers pickle as. `_codecs.encode` turns
# a string back into bytes (Python 3 writes bytes that way in protocol 2, torch.save's).
NUMPY_GLOBALS = frozenset(
    {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),
        ("collections", "OrderedDict"),
    }
)


class UnsafePickleError(errors.UserError):
  """A pickle names a global outside the allowed ones; nothing of it was run."""


class _RestrictedUnpickler(pickle.Unpickler):

  def __init__(
      self,
      stream,
      where: str,
      allowed: frozenset[tuple[str, str]],
      replacements: dict[tuple[str, str], Any],
      persistent_load: Callable[[Any], Any] | None,
      encoding: str,
  ):
    super().__init__(stream, encoding=encoding)
    self._where, self._allowed, self._replacements = where, allowed, replacements
    self._persistent_load = persistent_load

  def find_class(self, module: str, name: str) -> Any:
    if (module, name) in self._replacements:
      return self._replacements[(module, name)]
    if (module, name) in self._allowed:
      return super().find_class(module, name)
    raise UnsafePickleError(
        f"{self._where} pickles the Python global {module}.{name}, which a file of this kind "
        "never holds; refused without running it (the file may be malicious or of another "
        "kind)."
    )

  def persistent_load(self, pid: Any) -> Any:
    if self._persistent_load is None:
      raise pickle.UnpicklingError(f"{self._where}: unexpected persistent id {pid!r}.")
    return self._persistent_load(pid)


def loads(
    data: bytes,
    where: str,
    *,
    allowed: frozenset[tuple[str, str]] = NUMPY_GLOBALS,
    replacements: dict[tuple[str, str], Any] | None = None,
    persistent_load: Callable[[Any], Any] | None = None,
    encoding: str = "latin1",
) -> Any:
  """Unpickles `data`, admitting only the globals in `allowed` (and `replacements`, which
  stand in for a global by name). latin1 reads Python 2 pickles (CIFAR's) as numpy's docs
  advise. A refused global is an UnsafePickleError; a broken pickle a ValueError, both
  naming `where`."""
  unpickler = _RestrictedUnpickler(
      io.BytesIO(data), where, allowed, replacements or {}, persistent_load, encoding
  )
  try:
    return unpickler.load()
  except UnsafePickleError:
    raise
  except (pickle.UnpicklingError, EOFError, AttributeError, IndexError, TypeError) as error:
    raise ValueError(
        f"{where} is not a readable pickle ({type(error).__name__}: {error})."
    ) from error


# torch's storage classes by name (torch.save records a tensor's storage as one of these).
_TORCH_STORAGE_DTYPES = {
    "DoubleStorage": np.float64,
    "FloatStorage": np.float32,
    "HalfStorage": np.float16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}


@functools.cache
def _bfloat16() -> np.dtype:
  import ml_dtypes  # installed with jax

  return np.dtype(ml_dtypes.bfloat16)


def _storage_dtype(name: str) -> np.dtype:
  if name == "BFloat16Storage":
    return _bfloat16()
  return np.dtype(_TORCH_STORAGE_DTYPES[name])


def _rebuild_tensor(storage, offset, size, stride, *unused) -> np.ndarray:
  """torch._utils._rebuild_tensor_v2 as numpy: the view of `storage` (a flat array) that
  the tensor is, copied so that it owns its memory."""
  del unused  # requires_grad, backward hooks, metadata
  itemsize = storage.dtype.itemsize
  view = np.lib.stride_tricks.as_strided(
      storage[offset:], shape=tuple(size), strides=tuple(s * itemsize for s in stride)
  )
  return np.array(view)


def _rebuild_parameter(data, requires_grad, backward_hooks, *unused) -> np.ndarray:
  del requires_grad, backward_hooks, unused
  return data


def load_torch_file(path: str, where: str | None = None) -> Any:
  """The object a torch.save file holds (zip format, torch >= 1.6's default), read without
  torch: tensors come back as numpy arrays, and globals other than tensors, numpy arrays
  and builtin containers are refused (UnsafePickleError)."""
  where = where or path
  if not zipfile.is_zipfile(path):
    raise ValueError(
        f"{where} is not a torch.save zip archive (torch >= 1.6's format); vibe_jax reads "
        "only that format without torch. Re-save it with torch.save(torch.load(path), path) "
        "in a recent torch."
    )
  with zipfile.ZipFile(path) as archive:
    pickles = [n for n in archive.namelist() if n.endswith("data.pkl") and n.count("/") == 1]
    if len(pickles) != 1:
      raise ValueError(f"{where}: expected one <name>/data.pkl in the archive, found {pickles}.")
    prefix = pickles[0][: -len("data.pkl")]
    byteorder = "little"
    if prefix + "byteorder" in archive.namelist():
      byteorder = archive.read(prefix + "byteorder").decode().strip()
    storages: dict[str, np.ndarray] = {}

    def storage(pid: Any) -> np.ndarray:
      kind, storage_type, key, _, numel = pid
      if kind != "storage":
        raise ValueError(f"{where}: unknown persistent id {pid!r}.")
      if key not in storages:
        dtype = storage_type.newbyteorder("<" if byteorder == "little" else ">")
        flat = np.frombuffer(archive.read(f"{prefix}data/{key}"), dtype)
        storages[key] = flat[:numel] if numel is not None else flat
      return storages[key]

    replacements = {
        ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
        ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    }
    for name in (*_TORCH_STORAGE_DTYPES, "BFloat16Storage"):
      replacements[("torch", name)] = _LazyDtype(name)
    return loads(
        archive.read(pickles[0]),
        where,
        replacements=replacements,
        persistent_load=storage,
        encoding="utf-8",
    )


class _LazyDtype:
  """A storage class named in the pickle: its numpy dtype, resolved when a storage of it
  is read (bfloat16 needs ml_dtypes)."""

  def __init__(self, name: str):
    self.name = name

  def newbyteorder(self, order: str) -> np.dtype:
    return _storage_dtype(self.name).newbyteorder(order)
