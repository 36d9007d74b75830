"""PyTorch ResNet checkpoints -> vibe_jax backbone checkpoints (docs/conversion.md).

Reads solo-learn Lightning `.ckpt` files, plain torchvision state dicts and MoCo-style
checkpoints, keeps the backbone, and maps it name for name onto vibe_jax.models.ResNet, whose
parameter tree mirrors torchvision's. The mapping is strict: every backbone tensor must land
on exactly one Flax parameter or BatchNorm statistic of the right shape, and every Flax leaf
must be filled, so a wrong arch/stem/width fails loudly instead of loading half a model.

torch is imported only inside `read_torch_checkpoint`, so importing vibe_jax never needs it.
"""

from __future__ import annotations

import dataclasses
import io
import os
import pathlib
import pickletools
import re
import zipfile
import zlib
from collections.abc import Mapping
from typing import Any

import numpy as np

from vibe_jax import checkpoint
from vibe_jax.models.backbone import (
    StateMismatchError,
    abstract_backbone,
    backbone_config,
    flat_state,
    unflatten_state,
)

__all__ = [
    "BACKBONE_PREFIXES",
    "BackboneTensors",
    "ConversionReport",
    "convert_torch_checkpoint",
    "read_torch_checkpoint",
    "split_backbone",
    "torch_to_flax",
    "unwrap_state_dict",
]

# Where the backbone lives in each supported layout, tried in order: the first prefix under
# which the stem conv `conv1.weight` exists is the backbone. Order matters: MoCo's
# 'module.encoder_q.' must win over the bare 'module.', and solo-learn's 'backbone.' over
# its 'momentum_backbone.' (which is not in the list at all). solo-learn before about
# December 2021 named the backbone 'encoder.' (and 'momentum_encoder.'; its issue #127).
BACKBONE_PREFIXES = (
    "module.encoder_q.backbone.",
    "module.encoder_q.",
    "encoder_q.",
    "module.backbone.",
    "backbone.",
    "module.encoder.",
    "encoder.",
    "module.",
    "",
)
# Modules under the backbone prefix that are not part of the feature extractor.
_DROPPED_BACKBONE_MODULES = ("fc",)
_DROPPED_LEAVES = ("num_batches_tracked",)
# Torch parameter/buffer name -> Flax leaf name; 'weight' is 'kernel' on a conv (OIHW ->
# HWIO) and 'scale' on a BatchNorm, decided by which one the Flax module has.
_TORCH_TO_FLAX_LEAF = {"bias": "bias", "running_mean": "mean", "running_var": "var"}
_FLAX_TO_TORCH_LEAF = {
    "kernel": "weight",
    "scale": "weight",
    "bias": "bias",
    "mean": "running_mean",
    "var": "running_var",
}
_STATE_DICT_WRAPPERS = ("state_dict", "model")


@dataclasses.dataclass(frozen=True)
class BackboneTensors:
  """The backbone part of a checkpoint, under torchvision names (prefix stripped)."""

  tensors: dict[str, np.ndarray]
  prefix: str
  dropped_keys: list[str]  # original keys deliberately left out (heads, momentum copies, ...)


@dataclasses.dataclass(frozen=True)
class ConversionReport:
  """What a conversion did, for the CLI to print: where, from which prefix, what it dropped."""

  output: pathlib.Path
  model_config: dict[str, Any]
  prefix: str
  num_converted: int
  dropped_keys: list[str]


def _is_state_dict(obj: Mapping[str, Any]) -> bool:
  return bool(obj) and all(
      isinstance(key, str) and hasattr(value, "shape") for key, value in obj.items()
  )


def unwrap_state_dict(obj: Any) -> dict[str, Any]:
  """The tensor dict inside a checkpoint: the object itself, or under 'state_dict'/'model'."""
  while isinstance(obj, Mapping) and not _is_state_dict(obj):
    wrapper = next((key for key in _STATE_DICT_WRAPPERS if isinstance(obj.get(key), Mapping)), None)
    if wrapper is None:
      raise ValueError(
          "checkpoint is neither a state dict (names -> tensors) nor a dict holding one "
          f"under {list(_STATE_DICT_WRAPPERS)}; its top-level keys are "
          f"{sorted(map(str, obj))}"
      )
    obj = obj[wrapper]
  if not isinstance(obj, Mapping):
    raise ValueError(f"checkpoint holds a {type(obj).__name__}, not a state dict")
  return dict(obj)


def split_backbone(state_dict: Mapping[str, Any]) -> BackboneTensors:
  """Keeps the backbone tensors (prefix stripped); reports everything else as dropped."""
  prefix = next((p for p in BACKBONE_PREFIXES if f"{p}conv1.weight" in state_dict), None)
  if prefix is None:
    raise ValueError(
        "found no ResNet stem conv ('conv1.weight') under any known backbone prefix "
        f"{list(BACKBONE_PREFIXES)}; keys look like {sorted(state_dict)[:10]}"
    )
  tensors: dict[str, np.ndarray] = {}
  dropped: list[str] = []
  for key, value in state_dict.items():
    name = key[len(prefix) :] if key.startswith(prefix) else None
    if (
        name is None
        or name.split(".", 1)[0] in _DROPPED_BACKBONE_MODULES
        or name.rsplit(".", 1)[-1] in _DROPPED_LEAVES
    ):
      dropped.append(key)
    else:
      tensors[name] = value
  return BackboneTensors(tensors=tensors, prefix=prefix, dropped_keys=sorted(dropped))


def _torch_layout(flax_name: str, shape: tuple[int, ...]) -> tuple[int, ...]:
  """A Flax leaf's shape as PyTorch stores it (HWIO kernels back to OIHW), for messages."""
  if flax_name.endswith(".kernel") and len(shape) == 4:
    height, width, in_channels, out_channels = shape
    return (out_channels, in_channels, height, width)
  return tuple(shape)


def _torch_name(flax_name: str) -> str:
  module, _, leaf = flax_name.rpartition(".")
  return f"{module}.{_FLAX_TO_TORCH_LEAF[leaf]}"


def torch_to_flax(
    tensors: Mapping[str, Any], model_config: Mapping[str, Any]
) -> dict[str, np.ndarray]:
  """Maps torchvision-named tensors onto the backbone's flat Flax names, strictly.

  Returns {"layer1.0.conv1.kernel": HWIO float32 array, ...}. Any missing, unexpected or
  mis-shaped tensor raises StateMismatchError listing all of them under torch names.
  """
  abstract_leaves = flat_state(abstract_backbone(model_config))
  expected = {name: tuple(leaf.shape) for name, leaf in abstract_leaves.items()}
  converted: dict[str, np.ndarray] = {}
  matched: set[str] = set()
  unexpected: list[str] = []
  mismatched: list[str] = []
  for name, value in tensors.items():
    module, _, leaf = name.rpartition(".")
    if leaf == "weight":
      flax_leaf = "kernel" if f"{module}.kernel" in expected else "scale"
    else:
      flax_leaf = _TORCH_TO_FLAX_LEAF.get(leaf, "")
    target = f"{module}.{flax_leaf}"
    if not flax_leaf or target not in expected or target in matched:
      unexpected.append(name)
      continue
    matched.add(target)
    array = np.asarray(value)
    if array.shape != _torch_layout(target, expected[target]):
      mismatched.append(
          f"{name}: checkpoint has {tuple(array.shape)}, the backbone needs "
          f"{_torch_layout(target, expected[target])}"
      )
      continue
    if flax_leaf == "kernel":
      array = array.transpose(2, 3, 1, 0)  # OIHW -> HWIO
    converted[target] = np.ascontiguousarray(array, dtype=np.float32)
  missing = [_torch_name(name) for name in expected if name not in matched]
  if missing or unexpected or mismatched:
    raise StateMismatchError(
        f"PyTorch backbone tensors (torchvision names) for model_config {dict(model_config)}",
        missing=missing,
        unexpected=unexpected,
        mismatched=mismatched,
    )
  return converted


def read_torch_checkpoint(
    path: str | os.PathLike[str], *, allow_unsafe_pickle: bool = False
) -> dict[str, np.ndarray]:
  """Loads a .ckpt/.pth file and returns its state dict as float32/int numpy arrays.

  By default torch.load runs with weights_only=True, which refuses arbitrary pickled
  objects; Lightning checkpoints that pickle config objects need allow_unsafe_pickle=True,
  which executes code from the file, so only use it on files you trust.
  """
  import torch  # lazy: only conversion needs torch

  path = pathlib.Path(path)
  if not path.is_file():
    raise FileNotFoundError(f"PyTorch checkpoint {path} does not exist (--input)")
  try:
    obj = torch.load(path, map_location="cpu", weights_only=not allow_unsafe_pickle)
  except Exception as error:  # pylint: disable=broad-except  # torch raises many kinds
    raise ValueError(_unreadable(path, error, allow_unsafe_pickle)) from error
  state_dict = unwrap_state_dict(obj)
  arrays: dict[str, np.ndarray] = {}
  for key, value in state_dict.items():
    if isinstance(value, torch.Tensor):
      value = value.detach().cpu()
      if value.is_floating_point():
        value = value.float()
      value = value.numpy()
    arrays[key] = value
  return arrays


def _unreadable(path: pathlib.Path, error: Exception, unsafe: bool) -> str:
  """Why torch.load failed, in one line. Unsafe loading is suggested only when the file is
  a well-formed pickle that names Python globals outside torch (a Lightning checkpoint's
  hyper-parameters, say), which weights-only loading refuses: never for garbage or a
  truncated file, where it would only run whatever the bytes hold."""
  needed = None if unsafe else _pickled_globals(path)
  if needed:
    return (
        f"{path} pickles Python objects that weights-only loading refuses (globals "
        f"{', '.join(needed[:5])}); if you trust the file, retry with --allow_unsafe_pickle "
        "(allow_unsafe_pickle=True), which runs code from it"
    )
  return f"{path} is not a readable PyTorch checkpoint: {_diagnosis(path, error)} (--input)"


def _diagnosis(path: pathlib.Path, error: Exception) -> str:
  """What the file is, from its own bytes; torch's first sentence where that says more."""
  text = next((line.strip() for line in str(error).splitlines() if line.strip()), "")
  text = re.sub(r"^\[enforce fail at [^\]]*\]\s*\.?\s*", "", text).split(". ")[0]
  torch_says = f"{type(error).__name__}: {text}" if text else type(error).__name__
  with open(path, "rb") as f:
    head = f.read(4)
  if not head:
    return "the file is empty"
  if zipfile.is_zipfile(path):
    with zipfile.ZipFile(path) as archive:
      if not any(name.endswith("data.pkl") for name in archive.namelist()):
        return "a zip archive without torch.save's data.pkl (not a torch.save file)"
    return f"a corrupt torch.save archive ({torch_says})"
  if head.startswith(b"PK"):
    return "a truncated or corrupt zip archive (torch.save's format)"
  if head.startswith(b"\x80"):
    return f"a pickle that torch.load cannot read ({torch_says})"
  return "neither a zip archive (torch.save's format) nor a pickle"


def _pickled_globals(path: pathlib.Path) -> list[str]:
  """The Python globals outside torch that the checkpoint's pickles name, read without
  unpickling (pickletools): [] when there are none or the file holds no complete pickle."""
  data = path.read_bytes()
  if zipfile.is_zipfile(path):  # torch.save's format: the object pickled in <name>/data.pkl
    with zipfile.ZipFile(path) as archive:
      names = [n for n in archive.namelist() if n.endswith("data.pkl")]
      if not names:
        return []
      try:
        data = archive.read(names[0])
      except (zipfile.BadZipFile, OSError, EOFError, zlib.error):
        return []
  found = []
  stream = io.BytesIO(data)
  while stream.tell() < len(data):  # the legacy format holds several pickles in a row
    strings: list[str] = []
    try:
      for opcode, argument, _ in pickletools.genops(stream):
        if opcode.name == "GLOBAL":
          found.append(str(argument).replace(" ", "."))
        elif opcode.name == "STACK_GLOBAL" and len(strings) >= 2:
          found.append(".".join(strings[-2:]))
        elif isinstance(argument, str):
          strings.append(argument)
    except Exception:  # pylint: disable=broad-except  # not (or no longer) a pickle
      break
  return sorted({g for g in found if not g.startswith("torch") and g != "collections.OrderedDict"})


def convert_torch_checkpoint(
    input_path: str | os.PathLike[str],
    output_dir: str | os.PathLike[str],
    *,
    arch: str,
    stem: str,
    width: int = 64,
    allow_unsafe_pickle: bool = False,
    overwrite: bool = False,
) -> ConversionReport:
  """Converts a PyTorch ResNet checkpoint into a vibe_jax backbone checkpoint directory."""
  model_config = backbone_config(arch, stem, width)  # bad flags fail before reading a file
  state_dict = read_torch_checkpoint(input_path, allow_unsafe_pickle=allow_unsafe_pickle)
  backbone = split_backbone(state_dict)
  converted = torch_to_flax(backbone.tensors, model_config)
  output = checkpoint.save_backbone(
      output_dir, model_config, unflatten_state(converted), overwrite=overwrite
  )
  return ConversionReport(
      output=output,
      model_config=model_config,
      prefix=backbone.prefix,
      num_converted=len(converted),
      dropped_keys=backbone.dropped_keys,
  )
