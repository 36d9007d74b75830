"""Backbones by config: build one, check a weight tree against it, load one from a checkpoint.

A backbone's model_config is the small JSON-able dict {"arch", "stem", "width"} stored with
every backbone checkpoint, so a checkpoint alone is enough to rebuild its module.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from vibe_jax import checkpoint
from vibe_jax.models.resnet import ResNet, check_args

__all__ = [
    "StateMismatchError",
    "abstract_backbone",
    "backbone_config",
    "build_backbone",
    "check_state_shapes",
    "flat_state",
    "load_backbone",
    "load_backbone_model",
    "unflatten_state",
]

_CONFIG_KEYS = ("arch", "stem", "width")


class StateMismatchError(ValueError):
  """A weight tree does not fit the module: missing, unexpected or wrongly shaped entries.

  Lists every problem at once (not just the first), so one run shows the whole fix.
  """

  def __init__(
      self,
      source: str,
      *,
      missing: Sequence[str] = (),
      unexpected: Sequence[str] = (),
      mismatched: Sequence[str] = (),
  ):
    self.missing = sorted(missing)
    self.unexpected = sorted(unexpected)
    self.mismatched = sorted(mismatched)
    problems = []
    if self.missing:
      problems.append(f"missing ({len(self.missing)}): {self.missing}")
    if self.unexpected:
      problems.append(f"unexpected ({len(self.unexpected)}): {self.unexpected}")
    if self.mismatched:
      problems.append(f"shape mismatch ({len(self.mismatched)}): {self.mismatched}")
    super().__init__(f"{source} does not fit the backbone:\n  " + "\n  ".join(problems))


def backbone_config(arch: str, stem: str = "cifar", width: int = 64) -> dict[str, Any]:
  """Validated model_config dict; bad values fail here, before any file is read or written."""
  check_args(arch, stem, width)
  return {"arch": arch, "stem": stem, "width": width}


def _checked_config(model_config: Mapping[str, Any]) -> dict[str, Any]:
  unknown = sorted(set(model_config) - set(_CONFIG_KEYS))
  missing = [key for key in _CONFIG_KEYS if key not in model_config]
  if unknown or missing:
    raise ValueError(
        f"backbone model_config must have exactly the keys {list(_CONFIG_KEYS)}; "
        f"missing {missing}, unknown {unknown}"
    )
  return backbone_config(model_config["arch"], model_config["stem"], model_config["width"])


def build_backbone(arch: str, stem: str = "cifar", width: int = 64, *, seed: int = 0) -> ResNet:
  """A freshly initialised backbone (train mode), e.g. for self-supervised pretraining."""
  config = backbone_config(arch, stem, width)
  return ResNet(config["arch"], stem=config["stem"], width=config["width"], rngs=nnx.Rngs(seed))


def abstract_backbone(model_config: Mapping[str, Any]) -> ResNet:
  """The module with ShapeDtypeStruct leaves: shapes without initialising any weights."""
  config = _checked_config(model_config)
  return nnx.eval_shape(
      lambda: ResNet(config["arch"], stem=config["stem"], width=config["width"], rngs=nnx.Rngs(0))
  )


def flat_state(tree: nnx.Module | Mapping[Any, Any]) -> dict[str, Any]:
  """Flattens a state tree to torch-style dotted names: {"layer1.0.conv1.kernel": leaf}.

  Accepts a module, an nnx.State or nested dicts; int and str keys flatten alike, so a tree
  restored from orbax (string keys) and the module's own state (int list indices) compare
  directly.
  """
  if isinstance(tree, nnx.Module):
    tree = nnx.state(tree)
  if isinstance(tree, nnx.State):
    tree = nnx.to_pure_dict(tree)
  flat: dict[str, Any] = {}

  def visit(prefix: str, node: Any) -> None:
    if isinstance(node, Mapping):
      for key, value in node.items():
        visit(f"{prefix}{key}.", value)
    else:
      flat[prefix[:-1]] = node

  visit("", tree)
  return flat


def check_state_shapes(
    expected: Mapping[str, tuple[int, ...]],
    actual: Mapping[str, tuple[int, ...]],
    source: str,
) -> None:
  """Raises StateMismatchError listing every missing, unexpected and mis-shaped entry."""
  missing = set(expected) - set(actual)
  unexpected = set(actual) - set(expected)
  mismatched = [
      f"{name}: expected {tuple(expected[name])}, got {tuple(actual[name])}"
      for name in set(expected) & set(actual)
      if tuple(expected[name]) != tuple(actual[name])
  ]
  if missing or unexpected or mismatched:
    raise StateMismatchError(source, missing=missing, unexpected=unexpected, mismatched=mismatched)


def unflatten_state(flat: Mapping[str, Any]) -> dict[str, Any]:
  """Inverse of flat_state: dotted names -> nested dicts with string keys."""
  tree: dict[str, Any] = {}
  for name, leaf in flat.items():
    *parents, last = name.split(".")
    node = tree
    for part in parents:
      node = node.setdefault(part, {})
    node[last] = leaf
  return tree


def load_backbone_model(path: str | os.PathLike[str]) -> ResNet:
  """The backbone stored at `path` (a vibe_jax backbone checkpoint), in eval mode.

  The module is rebuilt from the checkpoint's model_config; a weight tree whose names or
  shapes do not fit it is a StateMismatchError naming each offending entry.
  """
  model_config, stored = checkpoint.load_backbone_checkpoint(path)
  graphdef, abstract_state = nnx.split(abstract_backbone(model_config))
  expected = flat_state(abstract_state)
  loaded = flat_state(stored)
  check_state_shapes(
      {name: leaf.shape for name, leaf in expected.items()},
      {name: jnp.shape(leaf) for name, leaf in loaded.items()},
      source=f"backbone checkpoint {path} (model_config {model_config})",
  )
  values = {name: jnp.asarray(loaded[name], dtype=leaf.dtype) for name, leaf in expected.items()}
  nnx.replace_by_pure_dict(abstract_state, unflatten_state(values))  # "0" -> list index 0
  model = nnx.merge(graphdef, abstract_state)
  model.eval()
  return model


def _apply(graphdef: nnx.GraphDef, state: nnx.State, images: jax.Array) -> jax.Array:
  return nnx.merge(graphdef, state)(images)


def load_backbone(path: str | os.PathLike[str]) -> Callable[[jax.Array], jax.Array]:
  """A jitted eval-mode feature function: normalised float32 NHWC (B,H,W,3) -> (B, D).

  The weights are an argument of the jitted function rather than closed-over constants,
  which jit would copy into every compiled program (one per batch shape).
  """
  graphdef, state = nnx.split(load_backbone_model(path))
  forward = jax.jit(functools.partial(_apply, graphdef))

  def features(images: jax.Array) -> jax.Array:
    return forward(state, images)

  return features
