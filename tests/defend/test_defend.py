"""--mode defend end to end on an image folder the test writes (digits 0-2 with a planted
trigger and flipped labels): the planted images rank at the top of the suspicious list,
relabel.csv names every file, the defended model is read back by --mode eval and by
vibe_jax.load_predictor; a bad folder is one line naming it."""

import csv
import json
import os

import numpy as np
import pytest

import vibe_jax
from configs import own_data
from helpers.cli import run_main
from vibe_jax import relabel
from vibe_jax.data.datasets import load_dataset

from .folders import CLASSES, planted_digits_folder


@pytest.mark.slow
def test_defend_ranks_the_planted_images_first(tmp_path):
  planted = planted_digits_folder(str(tmp_path / "data"))
  workdir = str(tmp_path / "work")
  common = (
      "--config",
      "configs/own_data.py:a,runlocal",
      f"--config.dataset.data_dir={tmp_path / 'data' / 'train'}",
      f"--config.dataset.options.validation_dir={tmp_path / 'data' / 'validation'}",
      "--config.report.tensorboard=False",
      "--config.train.steps=120",  # runlocal's 40 leave a clean image or two among the top
      "--config.estep.period=40",
      f"--workdir={workdir}",
  )
  run_main(*common, "--mode", "defend")

  with open(os.path.join(workdir, "relabel.csv")) as f:
    rows = list(csv.DictReader(f))
  train_files = sorted(
      f"{c}/{name}"
      for c in os.listdir(tmp_path / "data" / "train")
      for name in os.listdir(tmp_path / "data" / "train" / c)
  )
  assert tuple(rows[0]) == relabel.RELABEL_COLUMNS
  assert sorted(row["file"] for row in rows) == train_files
  assert {row["given_label"] for row in rows} == set(CLASSES)
  with open(os.path.join(workdir, "suspicious.csv")) as f:
    ranked = [row["file"] for row in csv.DictReader(f)]
  # The first half of the list is planted images (a clean 1 that looks like a 2 may sit
  # among them), and VIBE moves most planted images out of 'zero'.
  top = ranked[: len(planted) // 2]
  assert sum(name not in planted for name in top) <= 1, top
  assert np.mean([name in ranked for name in planted]) >= 0.8
  # AUROC of the suspicion over all images: the chance that a planted image scores above a
  # clean one (ties half), counted over all pairs.
  suspicion = {row["file"]: float(row["suspicion"]) for row in rows}
  hit = np.array([suspicion[name] for name in planted])
  clean = np.array([v for name, v in suspicion.items() if name not in planted])
  pairs = (hit[:, None] > clean[None]) + 0.5 * (hit[:, None] == clean[None])
  assert pairs.mean() >= 0.97

  results = json.load(open(os.path.join(workdir, "results.json")))
  summary = json.load(open(os.path.join(workdir, "defense.json")))
  assert summary["validation_accuracy"]["after"] == results["vibe"]["acc"]
  assert "asr" not in results["vibe"]  # nothing triggered to score
  report = open(os.path.join(workdir, "report.md")).read()
  assert "## Suspicious training samples" in report
  assert os.path.exists(os.path.join(workdir, "plots", "suspicious.png"))

  run_main(*common, "--mode", "eval")
  assert (
      json.load(open(os.path.join(workdir, "eval.json")))["vibe"]["acc"] == results["vibe"]["acc"]
  )
  validation = load_dataset(
      "image_folder",
      str(tmp_path / "data" / "train"),
      validation_dir=str(tmp_path / "data" / "validation"),
  )
  predict = vibe_jax.load_predictor(workdir)
  accuracy = np.mean(predict(validation.test_images) == validation.test_labels)
  assert accuracy == pytest.approx(results["vibe"]["acc"])


def test_defend_names_an_empty_class_folder_in_one_line(tmp_path, capsys):
  planted_digits_folder(str(tmp_path / "data"), num_planted=0, num_validation=0)
  os.makedirs(tmp_path / "data" / "train" / "three")
  with pytest.raises(SystemExit) as exit_info:
    run_main(
        "--config",
        "configs/own_data.py:a,runlocal",
        f"--config.dataset.data_dir={tmp_path / 'data' / 'train'}",
        "--mode",
        "defend",
        f"--workdir={tmp_path / 'work'}",
    )
  assert exit_info.value.code == 2
  error = capsys.readouterr().err.strip().splitlines()
  assert len(error) == 1 and "three holds no image" in error[0]


def test_defend_api_refuses_an_attack_and_other_images_in_its_workdir(tmp_path):
  images, labels = np.zeros((4, 4, 4), np.uint8), np.array([0, 1, 0, 1])
  with pytest.raises(ValueError, match="attack 'none'"):
    vibe_jax.defend(images, labels, own_data_config("a", attack="badnets"))
  (tmp_path / "own_data.npz.sha256").write_text("the digest of other images")
  with pytest.raises(FileExistsError, match="restart=True"):
    vibe_jax.defend(images, labels, own_data_config("a"), workdir=str(tmp_path))


def own_data_config(variant, attack="none"):
  config = own_data.get_config(f"{variant},npz,runlocal")
  config.attack.name = attack
  return config
