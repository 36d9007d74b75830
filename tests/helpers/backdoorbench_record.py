"""A BackdoorBench attack record written as BackdoorBench v2 writes one (utils/bd_dataset_v2.py
prepro_cls_DatasetBD_v2.retrieve_state, utils/save_load_attack.py save_attack_result):
torch.save of the state dicts, poisoned images as <save folder>/<original label>/<index>.png.
Needs torch (tests only)."""

from __future__ import annotations

import collections
import os

import numpy as np
from PIL import Image


def _dataset_state(record, folder_name, images, labels, poisoned, target, keep_only_poisoned):
  """What prepro_cls_DatasetBD_v2.retrieve_state() returns, with images saved to disk."""
  save_folder = f"./record/{os.path.basename(record)}/{folder_name}"  # where the attack ran
  indicator = np.zeros(len(labels))  # BackdoorBench's indicator: float 0/1 per sample
  data_dict = {}
  for index in np.arange(len(labels))[poisoned]:  # numpy int64 keys, as BackdoorBench's loop
    label = int(labels[index])
    os.makedirs(os.path.join(record, folder_name, str(label)), exist_ok=True)
    Image.fromarray(images[index]).save(
        os.path.join(record, folder_name, str(label), f"{index}.png")
    )
    data_dict[index] = {"path": f"{save_folder}/{label}/{index}.png", "other_info": [target, label]}
    indicator[index] = 1
  original_index_array = np.arange(len(labels))
  if keep_only_poisoned:
    original_index_array = original_index_array[np.where(indicator == 1)[0]]
  return {
      "bd_data_container": {
          "save_folder_path": save_folder,
          "data_dict": data_dict,
          "save_file_format": ".png",
      },
      "getitem_all": True,
      "getitem_all_switch": False,
      "original_index_array": original_index_array,
      "poison_indicator": indicator,
      "save_folder_path": save_folder,
  }


def write_record(
    record: str,
    train: tuple[np.ndarray, np.ndarray, np.ndarray],
    test: tuple[np.ndarray, np.ndarray, np.ndarray],
    *,
    target: int,
    num_classes: int,
    clean_data: str = "cifar10",
    extra: dict | None = None,
) -> None:
  """train/test: (triggered images for every sample, original labels, poisoned mask)."""
  import torch

  os.makedirs(record, exist_ok=True)
  model = collections.OrderedDict(
      [("conv1.weight", torch.randn(4, 3, 3, 3)), ("fc.bias", torch.zeros(num_classes))]
  )
  result = {
      "model_name": "preactresnet18",
      "num_classes": num_classes,
      "model": model,
      "data_path": "./data",
      "img_size": [32, 32, 3],
      "clean_data": clean_data,
      "bd_train": _dataset_state(record, "bd_train_dataset", *train, target, False),
      "bd_test": _dataset_state(record, "bd_test_dataset", *test, target, True),
      **(extra or {}),
  }
  torch.save(result, os.path.join(record, "attack_result.pt"))
