"""A run's report: log.jsonl with learning rates, TensorBoard events, snapshots, predictions,
plots, report.md (of finished and interrupted runs, the latter by `main.py --mode report`)."""

import json
import os
import pathlib
import shutil
import struct
import subprocess
import sys

import numpy as np
import pytest

from helpers.cli import run_main
from helpers.configs import tiny_config
from helpers.shared import once_per_session, session_dir
from vibe_jax import run
from vibe_jax.report import plots, report, snapshots

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PLOTS = ("loss.png", "estep.png", "eval.png", "features.png", "confusion.png", "triggers.png")


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
  """A tiny digits run with its report, made once per session for all workers (the tests
  only read it): (workdir, config, results). 40 steps a phase, logged every 10, an E-step
  every 20."""
  config = tiny_config("digits_badnets", "a", report=True)
  workdir = pathlib.Path(session_dir(tmp_path_factory)) / "report_run"
  results = once_per_session(
      tmp_path_factory, "report_run", lambda: run.train_and_evaluate(config, str(workdir))
  )
  return workdir, config, results


def records_of(workdir):
  with open(workdir / "log.jsonl") as f:
    return [json.loads(line) for line in f]


def read_events(path):
  """Scalars of a TensorBoard event file, parsed from its TFRecord framing (uint64 length,
  uint32 crc, payload, uint32 crc) without TensorBoard: {tag: [(step, value), ...]}."""
  from tensorboardX.proto import event_pb2

  data = path.read_bytes()
  scalars, position = {}, 0
  while position < len(data):
    (length,) = struct.unpack("<Q", data[position : position + 8])
    event = event_pb2.Event.FromString(data[position + 12 : position + 12 + length])
    position += 12 + length + 4
    for value in event.summary.value:
      scalars.setdefault(value.tag, []).append((event.step, value.simple_value))
  assert position == len(data)
  return scalars


def test_train_records_carry_the_learning_rates(finished):
  workdir, config, _ = finished
  train = [r for r in records_of(workdir) if r["kind"] == "train"]
  assert {r["phase"] for r in train} == {"baseline", "vibe"}
  for record in train:
    optimizer = config.baseline if record["phase"] == "baseline" else config.train
    assert record["lr"] == optimizer.lr and record["prior_lr"] == optimizer.prior_lr
  assert [r["step"] for r in train if r["phase"] == "vibe"] == [10, 20, 30, 40]


def test_final_eval_records_match_results(finished):
  workdir, _, results = finished
  final = {r["phase"]: r for r in records_of(workdir) if r["kind"] == "eval" and r["step"] == 40}
  for name in ("baseline", "vibe"):
    assert {m: final[name][m] for m in results[name]} == results[name]


def test_writing_metrics_leaves_torch_unimported(tmp_path):
  """tensorboardX's SummaryWriter imports torch (seconds at every run's start); the
  MetricWriter writes its event files without it."""
  code = (
      "import sys\n"
      "from vibe_jax.report import writers\n"
      f"w = writers.MetricWriter({str(tmp_path)!r})\n"
      "w.write('vibe', {'step': 1, 'kind': 'train', 'loss': 0.5})\n"
      "w.close()\n"
      "print('torch' in sys.modules)\n"
  )
  root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  result = subprocess.run(
      [sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True
  )
  assert result.stdout.strip() == "False", result.stderr
  (events,) = (tmp_path / "tensorboard" / "vibe").glob("events.out.tfevents.*")
  assert read_events(events) == {"train/loss": [(1, 0.5)]}


def test_timing_sums_the_logged_esteps_per_phase(finished):
  workdir, _, results = finished
  esteps = [r for r in records_of(workdir) if r["kind"] == "estep"]
  assert [r["step"] for r in esteps] == [0, 20] and all(r["seconds"] > 0 for r in esteps)
  timing = results["timing"]
  assert set(timing) == {"prepare", "baseline", "vibe"}
  assert timing["baseline"]["estep_seconds"] == 0  # the baseline has no E-step
  assert timing["vibe"]["estep_seconds"] == pytest.approx(
      sum(r["seconds"] for r in esteps), abs=1e-3
  )
  assert timing["vibe"]["estep_seconds"] <= timing["vibe"]["seconds"]
  assert results["seconds"] >= timing["prepare"] + timing["baseline"]["seconds"] - 0.2
  assert "Wall time" in (workdir / "report.md").read_text()


def test_tensorboard_events_hold_every_record(finished):
  workdir, _, _ = finished
  records = records_of(workdir)
  for phase in ("baseline", "vibe"):
    files = list((workdir / "tensorboard" / phase).glob("events.out.tfevents.*"))
    assert len(files) == 1 and files[0].stat().st_size > 0
    scalars = read_events(files[0])
    expected = {}
    for record in records:
      if record["phase"] != phase:
        continue
      for key, value in record.items():
        if key not in ("phase", "step", "kind"):
          expected.setdefault(f"{record['kind']}/{key}", []).append((record["step"], value))
    assert set(scalars) == set(expected)
    for tag, points in expected.items():
      assert [s for s, _ in scalars[tag]] == [s for s, _ in points], tag
      np.testing.assert_allclose(
          [v for _, v in scalars[tag]], [v for _, v in points], rtol=1e-6, err_msg=tag
      )  # float32 in the event file
  assert "estep/poison_restored" in read_events(
      next((workdir / "tensorboard" / "vibe").glob("events*"))
  )


def test_snapshots_at_the_first_and_last_estep(finished):
  workdir, _, _ = finished
  assert sorted(os.listdir(workdir / "snapshots")) == ["estep_0.npz", "estep_20.npz"]
  found = snapshots.load_snapshots(str(workdir / "snapshots"))
  esteps = {r["step"]: r for r in records_of(workdir) if r["kind"] == "estep"}
  for snapshot in found:
    n = len(snapshot["pseudo_labels"])
    assert snapshot["features"].shape == (n, 32 * 32 * 3)
    assert snapshot["mu_z"].shape == snapshot["mu_y"].shape == (10, 32 * 32 * 3)
    np.testing.assert_allclose(
        np.linalg.norm(snapshot["features"].astype(np.float32), axis=1), 1.0, atol=2e-3
    )
    # All rows are shown (n < 5,000), so the E-step's logged diagnostics follow from them.
    record = esteps[int(snapshot["step"])]
    poisoned = snapshot["poison_mask"]
    assert np.mean(snapshot["pseudo_labels"] == snapshot["true_labels"]) == pytest.approx(
        record["agree_true"]
    )
    assert np.mean(
        snapshot["pseudo_labels"][poisoned] == snapshot["true_labels"][poisoned]
    ) == pytest.approx(record["poison_restored"])
    assert np.all(snapshot["given_labels"][~poisoned] == snapshot["true_labels"][~poisoned])


def test_predictions_reproduce_the_results(finished):
  workdir, _, results = finished
  with np.load(workdir / "predictions.npz") as npz:
    p = dict(npz)
  for name in ("baseline", "vibe"):
    assert np.mean(p[f"{name}_clean"] == p["clean_labels"]) == results[name]["acc"]
    assert np.mean(p[f"{name}_poisoned"] == p["poisoned_attacker_labels"]) == results[name]["asr"]
    assert np.mean(p[f"{name}_poisoned"] == p["poisoned_true_labels"]) == results[name]["ra"]


def test_plots_and_report_of_a_finished_run(finished):
  workdir, _, results = finished
  for name in PLOTS:
    data = (workdir / "plots" / name).read_bytes()
    assert data.startswith(PNG_SIGNATURE) and len(data) > 10_000, name
  text = (workdir / "report.md").read_text()
  assert "Finished run" in text
  assert "| model | ACC | ASR | RA |" in text
  for name, label in (("baseline", "baseline"), ("vibe", "VIBE (a)")):
    row = (
        f"| {label} | "
        + " | ".join(f"{100 * results[name][m]:.2f}" for m in ("acc", "asr", "ra"))
        + " |"
    )
    assert row in text
  estep_rows = [
      line.split(" | ")[0]
      for line in text.splitlines()
      if line.startswith("| ") and line.count("|") == 7
  ]
  assert estep_rows[-2:] == ["| 0", "| 20"]  # the E-step table, one row per E-step
  for name in PLOTS:
    assert f"(plots/{name})" in text
  assert "Skipped" not in text
  visibility = results["trigger_visibility"]  # BadNets' 2x2 patch: visible, but small
  assert 20 < visibility["train"]["psnr"] < 60 and 0.9 < visibility["test"]["ssim"] < 1
  row = (
      f"| test (triggered) | {visibility['test']['psnr']:.2f} | {visibility['test']['ssim']:.4f} |"
  )
  assert row in text


def test_report_of_an_interrupted_run(finished, tmp_path):
  source, _, _ = finished
  workdir = tmp_path / "interrupted"
  shutil.copytree(source, workdir, ignore=shutil.ignore_patterns("checkpoints", "features.npz"))
  for name in ("results.json", "predictions.npz", "report.md", "snapshots/estep_20.npz"):
    os.remove(workdir / name)
  for name in ("loss.png", "estep.png", "eval.png", "features.png"):
    os.remove(workdir / "plots" / name)  # to be regenerated
  assert (workdir / "plots" / "confusion.png").exists()  # stale without predictions: removed
  # Cut the log in the middle of VIBE's training, mid-line, as a kill would.
  lines = (workdir / "log.jsonl").read_text().splitlines(keepends=True)
  cut = next(i for i, line in enumerate(lines) if '"phase": "vibe", "step": 30' in line)
  (workdir / "log.jsonl").write_text("".join(lines[:cut]) + lines[cut][:20])

  run_main("--mode=report", f"--workdir={workdir}")
  text = (workdir / "report.md").read_text()
  assert "Unfinished run" in text and "vibe 20 / 40 iterations" in text
  assert "baseline @ iteration 40" in text  # the baseline's final evaluation was logged
  assert "Skipped: no predictions.npz" in text
  for name in ("loss.png", "estep.png", "features.png"):
    assert (workdir / "plots" / name).read_bytes().startswith(PNG_SIGNATURE)
  assert not (workdir / "plots" / "confusion.png").exists()


def test_report_needs_an_existing_workdir(tmp_path):
  with pytest.raises(FileNotFoundError, match="workdir"):
    report.write_report(str(tmp_path / "missing"))


def test_report_of_an_empty_workdir_says_what_is_missing(tmp_path):
  text = open(report.write_report(str(tmp_path), config=tiny_config().to_dict())).read()
  assert "no log.jsonl" in text and "no snapshots" in text and "| attack | badnets |" in text


@pytest.mark.skipif(plots.umap_available(), reason="umap-learn is installed")
def test_umap_without_umap_is_a_clear_error(tmp_path):
  with pytest.raises(ImportError, match="umap-learn"):
    report.write_report(str(tmp_path), projection="umap")
