"""A BackdoorBench attack record (`record/<name>/`), read without torch.

BackdoorBench (github.com/SCLBD/BackdoorBench, utils/save_load_attack.py and
utils/bd_dataset_v2.py) saves an attack as:

* `attack_result.pt`: torch.save of a dict with `clean_data`, `num_classes`, `img_size`,
  the attacked model's state dict, and `bd_train` / `bd_test`, the states of its poisoned
  data sets: `poison_indicator` (0/1 per sample of the clean split), `original_index_array`
  (the samples the set holds; the test set keeps only the poisoned ones) and
  `bd_data_container.data_dict`: for each poisoned index, the saved image's `path` and
  `other_info` = [label given, original label];
* `bd_train_dataset/<original label>/<index>.png` and `bd_test_dataset/...`: the poisoned
  images themselves. Clean samples are not saved; they come from the clean data set.

The .pt file is parsed by vibe_jax/safe_pickle.py (tensors and numpy arrays only). Image
paths are taken relative to the record folder (the stored ones are where the attack ran).
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np
from PIL import Image

from vibe_jax import safe_pickle

__all__ = ["PoisonedSplit", "Record", "load_record", "read_images"]

RESULT_FILE = "attack_result.pt"


@dataclasses.dataclass(frozen=True)
class PoisonedSplit:
  """The poisoned samples of one split: their indices in the clean split (sorted), the
  labels the attacker gave them, their original labels, and their saved images."""

  size: int  # samples in the clean split
  indices: np.ndarray
  given_labels: np.ndarray
  original_labels: np.ndarray
  image_paths: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class Record:
  clean_data: str
  num_classes: int
  img_size: tuple[int, ...]
  train: PoisonedSplit
  test: PoisonedSplit


def load_record(folder: str, where: str = "attack.params.record") -> Record:
  """Reads `folder`/attack_result.pt and checks that every poisoned image is on disk."""
  folder = os.path.expanduser(folder)
  path = os.path.join(folder, RESULT_FILE)
  if not os.path.isfile(path):
    raise FileNotFoundError(
        f"{where}={folder!r} has no {RESULT_FILE}; point it at a BackdoorBench record folder "
        "(record/<attack_save_name>/, as its attack scripts write it)."
    )
  result = safe_pickle.load_torch_file(path, f"{where}: {path}")
  if not isinstance(result, dict):
    raise ValueError(f"{where}: {path} holds a {type(result).__name__}, not an attack result.")
  missing = [k for k in ("bd_train", "bd_test") if result.get(k) is None]
  if missing:
    raise ValueError(
        f"{where}: {path} has no {missing} state (a record of BackdoorBench before its v2 data "
        "sets, or one saved without the poisoned training set); re-run the attack with a "
        "current BackdoorBench."
    )
  return Record(
      clean_data=str(result.get("clean_data", "")),
      num_classes=int(result.get("num_classes", 0)),
      img_size=tuple(int(x) for x in result.get("img_size", ())),
      train=_split(result["bd_train"], folder, f"{where}: {path} bd_train"),
      test=_split(result["bd_test"], folder, f"{where}: {path} bd_test"),
  )


def _split(state: dict, folder: str, where: str) -> PoisonedSplit:
  try:
    indicator = np.asarray(state["poison_indicator"]).reshape(-1)
    data_dict = state["bd_data_container"]["data_dict"]
    image_format = state["bd_data_container"].get("save_file_format", ".png")
  except (KeyError, TypeError) as error:
    raise ValueError(f"{where} lacks {error} (not a BackdoorBench v2 data set state).") from error
  indices = np.flatnonzero(indicator == 1)
  stored = {int(k): v for k, v in data_dict.items()}
  if sorted(stored) != indices.tolist():
    raise ValueError(
        f"{where}: the poison_indicator marks {len(indices)} samples but the saved images "
        f"cover {len(stored)} (or other ones); the record is incomplete."
    )
  given, original, paths = [], [], []
  for index in indices.tolist():
    entry = stored[index]
    if not isinstance(entry, dict) or "path" not in entry:
      raise ValueError(
          f"{where}: sample {index} is kept inside the .pt, not as an image file; vibe_jax "
          "reads records whose poisoned images are saved to bd_*_dataset/ folders."
      )
    given_label, original_label = entry["other_info"][:2]
    given.append(int(given_label))
    original.append(int(original_label))
    # <save folder>/<original label>/<index><format>, under this record folder
    relative = entry["path"].replace("\\", "/").split("/")[-3:]
    image = os.path.join(folder, *relative)
    if not image.endswith(image_format) or not os.path.isfile(image):
      raise FileNotFoundError(
          f"{where}: the image of poisoned sample {index} is missing ({image}); copy the whole "
          "record folder, bd_train_dataset/ and bd_test_dataset/ included."
      )
    paths.append(image)
  return PoisonedSplit(
      len(indicator),
      indices,
      np.asarray(given, np.int64),
      np.asarray(original, np.int64),
      tuple(paths),
  )


def read_images(paths: tuple[str, ...] | list[str]) -> np.ndarray:
  """The saved images, uint8 (N, H, W, 3)."""
  images = []
  for path in paths:
    with Image.open(path) as image:
      images.append(np.asarray(image.convert("RGB")))
  shapes = {image.shape for image in images}
  if len(shapes) > 1:
    raise ValueError(f"The record's images differ in size: {sorted(shapes)}.")
  return np.stack(images) if images else np.zeros((0, 0, 0, 3), np.uint8)
