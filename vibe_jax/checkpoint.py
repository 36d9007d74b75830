"""Checkpoint files: the only module that imports orbax.

Why one module: orbax's API moves (the v1 switch is coming), so every save and restore goes
through here and a change touches one file.

A backbone checkpoint is a directory:

    <directory>/backbone.json   {"format": "vibe_jax.backbone", "version": 1,
                                 "model_config": {"arch": ..., "stem": ..., "width": ...}}
    <directory>/state/          orbax StandardCheckpointer tree: params and BatchNorm stats
                                as nested dicts with string keys ("layer1" -> "0" -> "conv1")

It is written into a temporary sibling directory and renamed into place, so a crash never
leaves a half-written checkpoint under the final name.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import tempfile
from collections.abc import Mapping
from typing import Any

import orbax.checkpoint as ocp
from flax import nnx

__all__ = ["BACKBONE_FORMAT", "load_backbone_checkpoint", "save_backbone"]

BACKBONE_FORMAT = "vibe_jax.backbone"
_BACKBONE_VERSION = 1
_BACKBONE_METADATA = "backbone.json"
_BACKBONE_STATE = "state"


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
    must be JSON-serialisable, since it is what rebuilds the module. Single-process: the
    staging directory and rename are local file operations (conversion runs on one host).
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
        with ocp.StandardCheckpointer() as checkpointer:
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
    with ocp.StandardCheckpointer() as checkpointer:
        state = checkpointer.restore(directory / _BACKBONE_STATE)
    return dict(metadata["model_config"]), state
