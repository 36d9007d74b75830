"""Atomic writes: the file appears whole under its name, or the old one stays."""

from __future__ import annotations

import json

import numpy as np
import pytest

from vibe_jax import files


def test_writes_land_under_the_exact_name(tmp_path):
  files.write_json_atomically(tmp_path / "a.json", {"x": [1, 2]})
  files.write_text_atomically(tmp_path / "b.md", "hello\n")
  files.save_npz_atomically(tmp_path / "c.npz", x=np.arange(3))
  assert json.loads((tmp_path / "a.json").read_text()) == {"x": [1, 2]}
  assert (tmp_path / "b.md").read_text() == "hello\n"
  with np.load(tmp_path / "c.npz") as npz:
    np.testing.assert_array_equal(npz["x"], np.arange(3))
  assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "b.md", "c.npz"]


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
  path = tmp_path / "results.json"
  files.write_json_atomically(path, {"old": True})
  with pytest.raises(TypeError):
    files.write_json_atomically(path, {"new": object()})  # fails mid-write
  assert json.loads(path.read_text()) == {"old": True}
  assert [p.name for p in tmp_path.iterdir()] == ["results.json"]
