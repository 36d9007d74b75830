"""Checkpoint files: the only module that imports orbax.

Why one module: orbax's API moves (the v1 switch is coming), so every save and restore goes
through here and a change touches one file.

A backbone checkpoint is a directory:

    <directory>/backbone.json   {"format": "vibe_jax.backbone", "version": 1,
                                 "model_config": {"arch": ..., "stem": ..., "width": ...}}
    <directory>/state/          orbax StandardCheckpointer tree: params and BatchNorm stats
                                as nested dicts with string keys ("layer1" -> "0" -> "conv1")

It is written into a temporary sibling directory and renamed into place, so a crash never
leaves a half-written checkpoint under the final name. The rename is ours, not orbax's
atomic save: orbax 0.12.8's Checkpointer.save(force=True) deletes an existing checkpoint
before writing the new one, so an interrupted --overwrite would lose both.

Training state (params, BatchNorm statistics, optimizer state, pseudo-labels, step, RNG) is
saved by `TrainCheckpoints`, an orbax CheckpointManager: every N steps and at the end, each
step written to a temporary directory and renamed when complete (a run killed mid-save
resumes from the previous step). All processes call it; orbax lets only the primary write
the shared metadata.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import tempfile
from collections.abc import Mapping
from typing import Any

import jax
import orbax.checkpoint as ocp
from absl import logging
from flax import nnx
from jax.experimental import multihost_utils

__all__ = [
    "BACKBONE_FORMAT",
    "CheckpointMismatchError",
    "CorruptCheckpointError",
    "TrainCheckpoints",
    "load_backbone_checkpoint",
    "save_backbone",
    "saved_steps",
]

BACKBONE_FORMAT = "vibe_jax.backbone"
_BACKBONE_VERSION = 1
_BACKBONE_METADATA = "backbone.json"
_BACKBONE_STATE = "state"
_FINGERPRINT = "experiment_fingerprint"  # TrainCheckpoints' key in orbax's custom metadata


def _string_keyed(tree: Mapping[Any, Any]) -> dict[str, Any]:
  """Nested dict with str keys (orbax stores keys as strings; int keys would not round-trip)."""
  if isinstance(tree, nnx.State):
    tree = nnx.to_pure_dict(tree)  # Variables -> their values
  return {
      str(key): _string_keyed(value) if isinstance(value, Mapping) else value
      for key, value in tree.items()
  }


def save_backbone(
    directory: str | os.PathLike[str],
    model_config: Mapping[str, Any],
    state: Mapping[Any, Any],
    *,
    overwrite: bool = False,
) -> pathlib.Path:
  """Writes a backbone checkpoint atomically and returns its absolute path.

  `state` is a nested mapping of arrays (a pure dict, or an `nnx.State`); `model_config`
  must be JSON-serialisable, since it is what rebuilds the module. One process writes it
  (the staging directory and rename are local file operations), also inside a multi-host
  job, whose other processes do not take part: give it host arrays, not global ones.
  """
  directory = pathlib.Path(directory).absolute()
  if directory.exists() and not overwrite:
    raise FileExistsError(
        f"backbone checkpoint output {directory} already exists; "
        "choose another output directory or pass overwrite=True (--overwrite)"
    )
  metadata = {
      "format": BACKBONE_FORMAT,
      "version": _BACKBONE_VERSION,
      "model_config": dict(model_config),
  }
  metadata_text = json.dumps(metadata, indent=2, sort_keys=True)  # fails before any write

  directory.parent.mkdir(parents=True, exist_ok=True)
  staging = pathlib.Path(tempfile.mkdtemp(prefix=f".{directory.name}.tmp-", dir=directory.parent))
  try:
    staging.chmod(0o755)  # mkdtemp makes it owner-only; the checkpoint is for sharing
    with ocp.StandardCheckpointer(multiprocessing_options=_this_process_only()) as checkpointer:
      checkpointer.save(staging / _BACKBONE_STATE, _string_keyed(state))
      checkpointer.wait_until_finished()
    (staging / _BACKBONE_METADATA).write_text(metadata_text + "\n")
    if directory.exists():  # overwrite: move the old one aside only once the new one is whole
      retired = directory.with_name(f".{directory.name}.old-{os.getpid()}")
      directory.rename(retired)
      staging.rename(directory)
      shutil.rmtree(retired)
    else:
      staging.rename(directory)
  except BaseException:
    shutil.rmtree(staging, ignore_errors=True)
    raise
  return directory


def _this_process_only() -> ocp.options.MultiprocessingOptions:
  """Orbax's options for a backbone save or load by this process alone (by default it waits
  at barriers for every process of a multi-host job): process 0 writes the pretrained
  backbone by itself, and each host reads one on its own."""
  process = jax.process_index()
  return ocp.options.MultiprocessingOptions(primary_host=process, active_processes={process})


def load_backbone_checkpoint(
    directory: str | os.PathLike[str],
) -> tuple[dict[str, Any], dict[str, Any]]:
  """Reads a backbone checkpoint: (model_config, state as nested dicts with string keys)."""
  directory = pathlib.Path(directory).absolute()
  metadata_path = directory / _BACKBONE_METADATA
  if not metadata_path.is_file():
    raise FileNotFoundError(
        f"{directory} is not a vibe_jax backbone checkpoint (no {_BACKBONE_METADATA}); "
        "convert a PyTorch checkpoint first with convert_torch_ckpt.py"
    )
  metadata = json.loads(metadata_path.read_text())
  if metadata.get("format") != BACKBONE_FORMAT or metadata.get("version") != _BACKBONE_VERSION:
    raise ValueError(
        f"{metadata_path} has format {metadata.get('format')!r} version "
        f"{metadata.get('version')!r}; expected {BACKBONE_FORMAT!r} version {_BACKBONE_VERSION}"
    )
  with ocp.StandardCheckpointer(multiprocessing_options=_this_process_only()) as checkpointer:
    path = directory / _BACKBONE_STATE
    # Onto this process's first device, whatever devices wrote it (in a multi-host job
    # the writer's device may belong to another process).
    device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    target = jax.tree.map(
        lambda leaf: jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=device),
        checkpointer.metadata(path).item_metadata.tree,
    )
    state = checkpointer.restore(path, target)
  return dict(metadata["model_config"]), state


class CheckpointMismatchError(ValueError):
  """A saved training state does not fit the model the config builds."""


class CorruptCheckpointError(ValueError):
  """A saved training state whose files cannot be read back (truncated, zeroed, missing)."""

  def __init__(self, step: int, reason: str):
    super().__init__(f"the checkpoint at iteration {step} is corrupt: {reason}")
    self.step = step
    self.reason = reason


def _first_line(error: BaseException) -> str:
  """The root cause of an orbax error, one line: tensorstore's own message says what is
  wrong ("Requested byte range ... is not valid"), orbax's wrappers only where."""
  while (error.__cause__ or error.__context__) is not None:
    error = error.__cause__ or error.__context__
  text = str(error).strip().split("\n")[0].split(" [tensorstore_spec")[0]
  return text[:300] or type(error).__name__


def _key_name(key: Any) -> str:
  for attribute in ("key", "name", "idx"):
    if hasattr(key, attribute):
      return str(getattr(key, attribute))
  return str(key)


def _shapes_by_path(tree: Any) -> dict[str, tuple[int, ...]]:
  """Dotted leaf paths -> shapes, spelled alike for live pytrees and orbax metadata."""
  leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
  return {
      ".".join(_key_name(key) for key in path): tuple(getattr(leaf, "shape", ()))
      for path, leaf in leaves
  }


def saved_steps(directory: str | os.PathLike[str]) -> list[int]:
  """The steps saved in a TrainCheckpoints directory, without opening it (which creates it)."""
  if not os.path.isdir(directory):
    return []
  return sorted(int(name) for name in os.listdir(directory) if name.isdigit())


class TrainCheckpoints:
  """Periodic, atomic, resumable training-state checkpoints in one directory."""

  def __init__(
      self,
      directory: str | os.PathLike[str],
      *,
      save_every: int,
      keep: int = 2,
      fingerprint: str | None = None,
  ):
    """`fingerprint`: the experiment's (vibe_jax.workdir), stored with every save and
    checked on restore, so that another experiment's checkpoint is refused."""
    if save_every <= 0:
      raise ValueError(f"checkpoint.every={save_every} must be positive.")
    self.directory = pathlib.Path(directory).absolute()
    self.save_every = save_every
    self.fingerprint = fingerprint
    self._manager = ocp.CheckpointManager(
        self.directory,
        item_handlers=ocp.StandardCheckpointHandler(),  # metadata readable in a new process
        options=ocp.CheckpointManagerOptions(
            max_to_keep=keep, create=True, enable_async_checkpointing=False
        ),
    )

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def due(self, step: int, *, force: bool = False) -> bool:
    """Whether `save` would write `step`: a multiple of save_every (any step with `force`,
    e.g. the last), not saved yet. Lets callers skip building a state nobody saves."""
    return (force or step % self.save_every == 0) and step not in self._manager.all_steps()

  def save(self, step: int, state: Any) -> None:
    """Writes `state` as `step` (a step already saved is kept as it is)."""
    if step not in self._manager.all_steps():
      metadata = {_FINGERPRINT: self.fingerprint} if self.fingerprint else None
      self._manager.save(
          step, args=ocp.args.StandardSave(state), force=True, custom_metadata=metadata
      )

  def restore(self, step: int, like: Any) -> Any:
    """Restores `step` into the structure of `like`; a shape mismatch lists every entry
    (CheckpointMismatchError), unreadable files are a CorruptCheckpointError."""
    try:
      metadata = self._manager.item_metadata(step)
    except Exception as error:  # pylint: disable=broad-except  # orbax raises many kinds
      raise CorruptCheckpointError(step, f"its metadata cannot be read ({_first_line(error)})")
    if metadata is None:
      raise CorruptCheckpointError(step, "its tree metadata (default/_METADATA) is missing")
    self._check_fingerprint(step)
    saved = _shapes_by_path(metadata)
    expected = _shapes_by_path(like)
    problems = [
        f"{path}: checkpoint {saved.get(path)} vs config {shape}"
        for path, shape in expected.items()
        if saved.get(path) != shape
    ] + [f"{path}: only in the checkpoint" for path in saved if path not in expected]
    if problems:
      raise CheckpointMismatchError(
          f"checkpoint {self.directory / str(step)} does not fit the model this config "
          "builds (use the config it was trained with, or a fresh --workdir):\n  "
          + "\n  ".join(problems[:20])
          + (f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else "")
      )
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like)
    try:
      return self._manager.restore(step, args=ocp.args.StandardRestore(abstract))
    except Exception as error:  # pylint: disable=broad-except  # tensorstore's errors vary
      raise CorruptCheckpointError(step, f"its arrays cannot be read ({_first_line(error)})")

  def _check_fingerprint(self, step: int) -> None:
    """Refuses a checkpoint saved by another experiment (one saved before checkpoints had
    fingerprints passes: the workdir's experiment.json was checked already)."""
    if self.fingerprint is None:
      return
    try:
      saved = (self._manager.metadata(step).custom_metadata or {}).get(_FINGERPRINT)
    except Exception:  # pylint: disable=broad-except  # unreadable step metadata: no claim
      saved = None
    if saved is not None and saved != self.fingerprint:
      raise CheckpointMismatchError(
          f"checkpoint {self.directory / str(step)} belongs to another experiment "
          f"(fingerprint {saved}, this config's {self.fingerprint}); use the --workdir and "
          "config it was trained with, a fresh --workdir, or --restart to start over."
      )

  def restore_latest(self, like: Any, *, move_corrupt: bool = True) -> tuple[int, Any] | None:
    """(step, state) of the newest checkpoint that reads back whole, or None when there is
    none. A newer, corrupt one (a truncated file, lost metadata) is skipped with a warning
    naming it and why, and with `move_corrupt` moved aside to <directory>.corrupt/ (nothing
    is deleted), so that the resumed run can save that step again. When every checkpoint is
    corrupt the error names each; nothing is moved then."""
    steps = sorted(self._manager.all_steps(), reverse=True)
    skipped = []
    for step in steps:
      try:
        state = self.restore(step, like)
      except CorruptCheckpointError as error:
        skipped.append(error)
        continue
      for corrupt in skipped:
        moved = f"moved it to {self._move_aside(corrupt.step)}, " if move_corrupt else ""
        logging.warning(
            "%s: skipped the corrupt checkpoint at iteration %d (%s); %susing the one at "
            "iteration %d.",
            self.directory,
            corrupt.step,
            corrupt.reason,
            moved,
            step,
        )
      return step, state
    if skipped:
      raise CorruptCheckpointError(
          skipped[0].step,
          f"no checkpoint in {self.directory} reads back whole ("
          + "; ".join(f"iteration {e.step}: {e.reason}" for e in skipped)
          + f"); move {self.directory} aside to start this phase over, or rerun with "
          "--restart to start the whole experiment over",
      )
    return None

  def _move_aside(self, step: int) -> pathlib.Path:
    """Moves a step's directory to <directory>.corrupt/<step>[-n] (process 0; the others
    wait), and makes the manager forget it."""
    aside = self.directory.with_name(f"{self.directory.name}.corrupt")
    target = aside / str(step)
    if jax.process_index() == 0:
      aside.mkdir(exist_ok=True)
      count = 1
      while target.exists():
        target, count = aside / f"{step}-{count}", count + 1
      (self.directory / str(step)).rename(target)
    if jax.process_count() > 1:
      multihost_utils.sync_global_devices(f"vibe_jax checkpoint moved aside {step}")
    self._manager.reload()
    return target

  def close(self) -> None:
    self._manager.close()
