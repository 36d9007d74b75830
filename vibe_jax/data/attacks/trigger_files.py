"""Trigger images read from files (config field attack.params.trigger_file).

Why files: the reference's and BackdoorBench's triggers are images (hello_kitty.png,
apple-logo-imagenet.png, imagenet_blend_trigger.png; docs/triggers.md says where to get
them), and reproducing their runs needs those exact pixels. The rules follow the
reference's code (datasets/backdoor/attacks/BadNets.py and Blend.py):

- a patch (BadNets) is pasted where it is non-zero, channel by channel (the reference's
  `mask = trigger != 0` on the RGB tensor), unless the file has an alpha channel that is
  not fully opaque: then every pixel with alpha > 0 is pasted whole;
- a blend image is resized to the image size with PIL's `Image.resize((w, h))` and its
  default filter for the file's mode (bicubic for RGB, nearest for palette images), as the
  reference calls it.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np
from PIL import Image

__all__ = ["TriggerPatch", "read_blend_image", "read_patch"]

FIELD = "attack.params.trigger_file"


@dataclasses.dataclass(frozen=True)
class TriggerPatch:
  """An RGB patch (uint8 (h, w, 3)) and where it is pasted (bool (h, w, 3))."""

  pixels: np.ndarray
  mask: np.ndarray


def _open(path: str) -> Image.Image:
  full = os.path.expanduser(path)
  if not os.path.isfile(full):
    raise FileNotFoundError(
        f"{FIELD}={path!r} does not exist; give an image file (PNG, JPEG, ...) or leave "
        "it empty for the generated trigger (docs/triggers.md)."
    )
  try:
    image = Image.open(full)
    image.load()
  except (OSError, Image.DecompressionBombError) as error:
    raise ValueError(f"{FIELD}={path!r} is not an image PIL can read: {error}") from error
  return image


def _alpha(image: Image.Image) -> np.ndarray | None:
  """The alpha channel (uint8 (h, w)) if the image has one, else None."""
  if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
    return np.asarray(image.convert("RGBA"))[..., 3]
  return None


def read_patch(path: str) -> TriggerPatch:
  """A BadNets patch from an image file, with its paste mask (module docstring)."""
  image = _open(path)
  pixels = np.asarray(image.convert("RGB"), dtype=np.uint8)
  alpha = _alpha(image)
  if alpha is not None and np.any(alpha < 255):
    mask = np.repeat((alpha > 0)[..., None], 3, axis=-1)
  else:
    mask = pixels != 0
  if not mask.any():
    raise ValueError(
        f"{FIELD}={path!r} pastes nothing: every pixel is black (or transparent). A patch "
        "is pasted where it is non-zero, or where its alpha channel is above 0."
    )
  return TriggerPatch(pixels, mask)


def read_blend_image(path: str, height: int, width: int) -> np.ndarray:
  """A Blend trigger (uint8 (height, width, 3)), resized as the reference resizes it."""
  image = _open(path)
  resized = image.resize((width, height))  # PIL's default filter for the mode, on purpose
  return np.asarray(resized.convert("RGB"), dtype=np.uint8)
