"""convert_torch_ckpt.py suggests --allow_unsafe_pickle only for a well-formed pickle that
names Python globals weights-only loading refuses, and names them; garbage, a truncated or
corrupt zip, an empty file or an npz are one line without that suggestion."""

from __future__ import annotations

import argparse
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest

from vibe_jax import convert, errors

from . import digits

torch = pytest.importorskip("torch")


def state_dict():
  return {"conv1.weight": torch.zeros(2, 3, 3, 3)}


def garbage(path):
  data = bytearray(np.random.default_rng(0).bytes(4096))
  data[0] = 0x42  # not a pickle's protocol byte
  path.write_bytes(bytes(data))


def truncated(path):
  torch.save(state_dict(), path)
  data = path.read_bytes()
  path.write_bytes(data[: len(data) // 2])


def lightning_truncated(path):
  torch.save({"state_dict": state_dict(), "hp": argparse.Namespace(lr=1.0)}, path)
  data = path.read_bytes()
  path.write_bytes(data[: len(data) // 2])


BAD = {
    "garbage": (garbage, "neither a zip archive (torch.save's format) nor a pickle"),
    "truncated zip": (truncated, "a truncated or corrupt zip archive"),
    "truncated lightning": (lightning_truncated, "a truncated or corrupt zip archive"),
    "empty": (lambda path: path.write_bytes(b""), "the file is empty"),
    "npz": (
        lambda path: np.savez(open(path, "wb"), a=np.zeros(3)),
        "without torch.save's data.pkl",
    ),
    "text": (lambda path: path.write_text("hello\n" * 20), "neither a zip archive"),
    "plain pickle": (lambda path: path.write_bytes(pickle.dumps({"a": 1})), "a pickle that torch"),
}


@pytest.mark.parametrize("case", BAD)
def test_unreadable_file_is_one_line_without_the_unsafe_suggestion(tmp_path, case):
  make, expected = BAD[case]
  path = tmp_path / "model.ckpt"
  make(path)
  with pytest.raises(ValueError) as error:
    convert.read_torch_checkpoint(path)
  message = str(error.value)
  assert expected in message and str(path) in message and "\n" not in message
  assert "unsafe" not in message and "weights_only" not in message


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_pickle_that_needs_a_global_names_it_and_suggests_the_flag(tmp_path, legacy):
  path = tmp_path / "lightning.ckpt"
  torch.save(
      {"state_dict": state_dict(), "hyper_parameters": argparse.Namespace(lr=1.0)},
      path,
      _use_new_zipfile_serialization=not legacy,
  )
  with pytest.raises(ValueError, match=r"globals argparse\.Namespace\).*--allow_unsafe_pickle"):
    convert.read_torch_checkpoint(path)
  assert "conv1.weight" in convert.read_torch_checkpoint(path, allow_unsafe_pickle=True)


def test_cli_corrupt_zip_is_one_line(tmp_path):
  truncated(tmp_path / "model.pth")
  done = subprocess.run(
      [
          sys.executable,
          "convert_torch_ckpt.py",
          f"--input={tmp_path / 'model.pth'}",
          f"--output={tmp_path / 'out'}",
          "--arch=resnet18",
          "--stem=cifar",
      ],
      cwd=digits.ROOT,
      capture_output=True,
      text=True,
      timeout=300,
      env={k: v for k, v in os.environ.items() if k != errors.TRACEBACK_ENV},
  )
  lines = [line for line in done.stderr.splitlines() if line.strip()]
  assert done.returncode == 2 and len(lines) == 1, done.stderr[-3000:]
  assert lines[0].startswith("convert_torch_ckpt.py: error: ")
  assert "truncated or corrupt zip archive" in lines[0] and "unsafe" not in lines[0]
  assert not (tmp_path / "out").exists()
