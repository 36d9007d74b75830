"""The metric writers: log.jsonl reading, TensorBoard scalars, silence on other processes."""

import json
import os

from vibe_jax.report import writers


def test_writer_is_silent_on_other_processes(tmp_path, monkeypatch):
  monkeypatch.setattr(writers.jax, "process_index", lambda: 1)
  with writers.MetricWriter(str(tmp_path)) as writer:
    writer.writer("vibe")({"step": 1, "kind": "train", "loss": 1.0})
  assert os.listdir(tmp_path) == []


def test_scalars_skip_what_is_not_a_finite_number():
  record = {
      "phase": "vibe",
      "step": 3,
      "kind": "estep",
      "agree_true": 0.5,
      "iterations": 7,
      "converged": True,
      "note": "x",
      "error": float("nan"),
  }
  assert writers.scalars_of(record) == {"estep/agree_true": 0.5, "estep/iterations": 7.0}


def test_read_log_skips_a_torn_line_and_keeps_the_latest_repeat(tmp_path):
  lines = [
      {"phase": "vibe", "step": 50, "kind": "train", "loss": 2.0},
      {"phase": "vibe", "step": 100, "kind": "train", "loss": 1.0},
      {"phase": "vibe", "step": 100, "kind": "train", "loss": 1.5},
  ]  # a resumed run
  (tmp_path / "log.jsonl").write_text(
      "".join(json.dumps(line) + "\n" for line in lines) + '{"phase": "vibe", "st'
  )
  records = writers.read_log(str(tmp_path / "log.jsonl"))
  assert [(r["step"], r["loss"]) for r in records] == [(50, 2.0), (100, 1.5)]
