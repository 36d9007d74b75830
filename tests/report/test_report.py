"""Reports: log.jsonl with learning rates, TensorBoard events, snapshots, predictions, plots,
report.md (of finished and interrupted runs) and the sweep table."""

import csv
import json
import os
import shutil
import struct
import subprocess
import sys

import numpy as np
import pytest

from configs import digits_badnets
from vibe_jax import run, sweep
from vibe_jax.report import plots, report, snapshots, writers

from helpers import ROOT
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PLOTS = ("loss.png", "estep.png", "eval.png", "features.png", "confusion.png")
TINY = {"train.steps": 100, "baseline.steps": 100, "estep.period": 50, "train.log_every": 25}


def tiny_config():
  config = digits_badnets.get_config("a")
  for field, value in TINY.items():
    section, name = field.split(".")
    config[section][name] = value
  return config


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
  """A tiny digits run: (workdir, config, results)."""
  workdir = tmp_path_factory.mktemp("report") / "run"
  config = tiny_config()
  results = run.train_and_evaluate(config, str(workdir))
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
  assert [r["step"] for r in train if r["phase"] == "vibe"] == [25, 50, 75, 100]


def test_final_eval_records_match_results(finished):
  workdir, _, results = finished
  final = {r["phase"]: r for r in records_of(workdir) if r["kind"] == "eval" and r["step"] == 100}
  for name in ("baseline", "vibe"):
    assert {m: final[name][m] for m in ("acc", "asr", "ra")} == results[name]


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


def test_snapshots_at_the_first_and_last_estep(finished):
  workdir, _, _ = finished
  assert sorted(os.listdir(workdir / "snapshots")) == ["estep_0.npz", "estep_50.npz"]
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


def test_snapshot_subsample_is_fixed_and_bounded():
  class Data:  # the fields EstepSnapshots reads
    num_valid = 40
    given_labels = np.arange(40) % 3
    true_labels = np.arange(40) % 3
    poison_mask = np.zeros(40, bool)

  first = snapshots.EstepSnapshots("unused", Data, steps=100, period=30, max_points=7)
  again = snapshots.EstepSnapshots("unused", Data, steps=100, period=30, max_points=7)
  assert first.snapshot_steps == {0, 90}
  assert len(first._indices) == 7 and np.array_equal(first._indices, again._indices)


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
      if line.startswith("| ") and line.count("|") == 6
  ]
  assert estep_rows[-2:] == ["| 0", "| 50"]  # the E-step table, one row per E-step
  for name in PLOTS:
    assert f"(plots/{name})" in text
  assert "Skipped" not in text


def test_report_of_an_interrupted_run(finished, tmp_path):
  source, _, _ = finished
  workdir = tmp_path / "interrupted"
  shutil.copytree(source, workdir, ignore=shutil.ignore_patterns("checkpoints", "features.npz"))
  for name in ("results.json", "predictions.npz", "report.md", "snapshots/estep_50.npz"):
    os.remove(workdir / name)
  for name in ("loss.png", "estep.png", "eval.png", "features.png"):
    os.remove(workdir / "plots" / name)  # to be regenerated
  assert (workdir / "plots" / "confusion.png").exists()  # stale without predictions: removed
  # Cut the log in the middle of VIBE's training, mid-line, as a kill would.
  lines = (workdir / "log.jsonl").read_text().splitlines(keepends=True)
  cut = next(i for i, line in enumerate(lines) if '"phase": "vibe", "step": 75' in line)
  (workdir / "log.jsonl").write_text("".join(lines[:cut]) + lines[cut][:20])

  done = subprocess.run(
      [sys.executable, "main.py", "--mode=report", f"--workdir={workdir}"],
      cwd=ROOT,
      capture_output=True,
      text=True,
      timeout=300,
      env={**os.environ, "JAX_PLATFORMS": "cpu"},
  )
  assert done.returncode == 0, done.stderr[-3000:]
  text = (workdir / "report.md").read_text()
  assert "Unfinished run" in text and "vibe 50 / 100 iterations" in text
  assert "baseline @ iteration 100" in text  # the baseline's final evaluation was logged
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


def test_confusion_counts_match_sklearn():
  from sklearn.metrics import confusion_matrix

  rng = np.random.default_rng(0)
  true, predicted = rng.integers(0, 5, 200), rng.integers(0, 5, 200)
  np.testing.assert_array_equal(
      plots._confusion(true, predicted, 5), confusion_matrix(true, predicted, labels=range(5))
  )


def fake_run(directory, acc, baseline_acc=0.9, label_mode="all_to_one", attack="badnets"):
  os.makedirs(directory)
  results = {
      "config": {"dataset": "digits", "attack": attack, "variant": "?"},
      "baseline": {"acc": baseline_acc, "asr": 0.95, "ra": 0.05},
      "vibe": {"acc": acc, "asr": 0.01, "ra": acc - 0.01},
  }
  with open(os.path.join(directory, "results.json"), "w") as f:
    json.dump(results, f)
  with open(os.path.join(directory, "config.json"), "w") as f:
    json.dump({"attack": {"label_mode": label_mode}}, f)


def test_sweep_table_from_results(tmp_path):
  runs = sweep.plan(["/c/digits_badnets.py", "/c/digits_bn_all2all.py"], ["a", "f"], str(tmp_path))
  fake_run(runs[0].workdir, 0.931)
  fake_run(runs[1].workdir, 0.912, baseline_acc=0.8)  # e.g. a Leiden-filtered variant
  fake_run(runs[2].workdir, 0.944, label_mode="all_to_all")  # runs[3] is missing
  md_path, csv_path = sweep.write_tables(runs, ["a", "f"], str(tmp_path))
  with open(csv_path) as f:
    rows = list(csv.DictReader(f))
  assert [r["config"] for r in rows] == ["digits_badnets", "digits_bn_all2all"]
  assert float(rows[0]["a_acc"]) == 0.931 and float(rows[0]["f_acc"]) == 0.912
  assert float(rows[0]["baseline_acc"]) == 0.9 and rows[1]["f_acc"] == ""
  text = open(md_path).read()
  assert "| digits_badnets | badnets | 90.00 | 95.00 | 5.00 | 93.10 | 1.00 | 92.10 | 91.20" in text
  assert "| digits_bn_all2all | badnets (all_to_all) |" in text and "| - | - | - |" in text
  assert "baseline of variant f" in text


@pytest.mark.slow
def test_sweep_runs_resumes_and_tabulates(tmp_path):
  command = [
      sys.executable,
      "-m",
      "vibe_jax.sweep",
      "--configs",
      "configs/digits_badnets.py",
      "configs/digits_blend.py",
      "--variants",
      "a,f",
      f"--workdir={tmp_path}",
      "--overrides",
      "--config.train.steps=60 --config.baseline.steps=60 "
      "--config.estep.period=30 --config.train.batch_size=64",
  ]
  env = {**os.environ, "JAX_PLATFORMS": "cpu"}
  done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=900, env=env)
  assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
  assert "[4/4] digits_blend:f done" in done.stdout
  with open(tmp_path / "sweep.csv") as f:
    rows = {r["config"]: r for r in csv.DictReader(f)}
  text = (tmp_path / "sweep.md").read_text()
  for name in ("digits_badnets", "digits_blend"):
    for variant in ("a", "f"):
      results = json.loads((tmp_path / f"{name}_{variant}" / "results.json").read_text())
      config = json.loads((tmp_path / f"{name}_{variant}" / "config.json").read_text())
      assert config["train"]["steps"] == 60 and config["variant"] == variant
      for metric in ("acc", "asr", "ra"):
        assert float(rows[name][f"{variant}_{metric}"]) == results["vibe"][metric]
        assert f"{100 * results['vibe'][metric]:.2f}" in text
    baseline = json.loads((tmp_path / f"{name}_a" / "results.json").read_text())["baseline"]
    assert [float(rows[name][f"baseline_{m}"]) for m in ("acc", "asr", "ra")] == [
        baseline[m] for m in ("acc", "asr", "ra")
    ]
  again = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
  assert again.returncode == 0 and again.stdout.count("skipped") == 4, again.stdout[-2000:]


@pytest.mark.slow
def test_snapshots_of_a_fine_tuned_backbone(tmp_path):
  """ss_a: the snapshot holds eval-mode backbone features (width-4 ResNet-18: D = 32)."""
  from flax import nnx

  from vibe_jax.checkpoint import save_backbone
  from vibe_jax.models import backbone_config, build_backbone

  save_backbone(
      tmp_path / "backbone",
      backbone_config("resnet18", "cifar", 4),
      nnx.state(build_backbone("resnet18", "cifar", 4)),
  )
  config = digits_badnets.get_config("ss_a")
  config.backbone.checkpoint = str(tmp_path / "backbone")
  config.baseline.enabled = False
  config.train.steps, config.estep.period, config.train.batch_size = 20, 10, 64
  workdir = tmp_path / "run"
  run.train_and_evaluate(config, str(workdir))
  found = snapshots.load_snapshots(str(workdir / "snapshots"))
  assert [int(s["step"]) for s in found] == [0, 10]
  esteps = {r["step"]: r for r in records_of(workdir) if r["kind"] == "estep"}
  for snapshot in found:
    assert snapshot["features"].shape[1] == snapshot["mu_z"].shape[1] == 32
    assert np.mean(snapshot["pseudo_labels"] == snapshot["true_labels"]) == pytest.approx(
        esteps[int(snapshot["step"])]["agree_true"]
    )
  assert not np.array_equal(found[0]["features"], found[1]["features"])  # fine-tuned
  assert (workdir / "plots" / "features.png").read_bytes().startswith(PNG_SIGNATURE)
