"""Every numeric field with a meaning is checked before any data are loaded; the backbone,
the features file and the batch sizes are checked before features are extracted; an attack
that poisons nothing warns; the Sinkhorn E-step stops on a non-finite error and warns when it
does not converge; log.jsonl stays standard JSON."""

from __future__ import annotations

import json
import logging
import math
import types

import jax.numpy as jnp
import pytest

from vibe_jax import experiment, features, run
from vibe_jax.data import datasets
from vibe_jax.em import estep, loop
from vibe_jax.report import report, writers

from . import digits


@pytest.fixture
def no_data(monkeypatch):
  """Fails the test if anything loads the data set."""

  def refuse(*args, **kwargs):
    raise AssertionError("the data set was loaded before the config was checked")

  monkeypatch.setattr(datasets, "load_dataset", refuse)


NUMBERS = [
    ("train.lr", -0.1, r"train\.lr=-0\.1 must be a finite number >= 0"),
    ("baseline.lr", -1.0, r"baseline\.lr=-1\.0 must be a finite number >= 0"),
    ("train.lr", math.nan, r"train\.lr=nan must be a finite number"),
    ("train.prior_lr", math.inf, r"train\.prior_lr=inf must be a finite number"),
    ("train.momentum", 1.0, r"train\.momentum=1\.0 must be a finite number >= 0 and < 1"),
    ("baseline.weight_decay", -5e-4, r"baseline\.weight_decay=-0\.0005 must be"),
    ("vibe.kappa", 1e30, r"vibe\.kappa=1e\+30 must be a finite number > 0 and <= 10000"),
    ("vibe.nu", 0.0, r"vibe\.nu=0\.0 must be a finite number > 0"),
    ("baseline.kappa", -1.0, r"baseline\.kappa=-1\.0 must be"),
    ("vibe.prior_temperature", 0.0, r"vibe\.prior_temperature=0\.0 must be"),
    ("estep.lam", 1e12, r"estep\.lam=1000000000000\.0 must be a finite number > 0 and <= 10000"),
    ("estep.threshold", 0.0, r"estep\.threshold=0\.0 must be"),
    ("estep.max_iterations", 0, r"estep\.max_iterations=0 must be positive"),
    ("estep.semi_dual_steps", -1, r"estep\.semi_dual_steps=-1 must be a whole number >= 0"),
    ("features.batch_size", 0, r"features\.batch_size=0 must be positive"),
    ("filter.num_neighbors", 0, r"filter\.num_neighbors=0 must be positive"),
    ("filter.delta", -0.1, r"filter\.delta=-0\.1 must be"),
    ("checkpoint.every", 0, r"checkpoint\.every=0 must be positive"),
    ("parallel.num_devices", -1, r"parallel\.num_devices=-1 must be >= 0"),
    ("victim.kappa", 0.0, r"victim\.kappa=0\.0 must be a finite number > 0"),  # even off
    ("victim.eval_every", 0, r"victim\.eval_every=0 must be positive"),
]


@pytest.mark.parametrize("field,value,message", NUMBERS, ids=[f"{f}={v}" for f, v, _ in NUMBERS])
def test_numeric_field_checked_before_any_data(no_data, tmp_path, field, value, message):
  with pytest.raises(ValueError, match=message) as error:
    run.train_and_evaluate(digits.config(**{field: value}), str(tmp_path))
  assert "\n" not in str(error.value)
  assert not (tmp_path / "config.json").exists()


@pytest.mark.parametrize(
    "arg,fields,error,message",
    [
        ("ss_a,runlocal", {}, ValueError, r"variant 'ss_a' fine-tunes .*set backbone\.checkpoint"),
        (
            "ss_f,runlocal",
            {"backbone.checkpoint": "/nonexistent/bb"},
            FileNotFoundError,
            r"backbone\.checkpoint='/nonexistent/bb' is not .*\(it does not exist\)",
        ),
        (
            "fm_a,runlocal",
            {"features.extractor": "backbone"},
            ValueError,
            r"features\.extractor='backbone' .*set backbone\.checkpoint",
        ),
        (
            "fm_a,runlocal",
            {"features.file": "/nonexistent/f.npz"},
            FileNotFoundError,
            r"features\.file='/nonexistent/f\.npz' does not exist",
        ),
        (
            "a,runlocal",
            {"victim.enabled": True, "victim.init": "backbone"},
            ValueError,
            r"victim\.init='backbone' .*set backbone\.checkpoint",
        ),
        (
            "a,runlocal",
            {"victim.enabled": True, "victim.init": "pretrained"},
            ValueError,
            r"victim\.init='pretrained'; use 'scratch'",
        ),
        (
            "a,runlocal",
            {"victim.enabled": True, "victim.schedule": "step"},
            ValueError,
            r"victim\.schedule='step'; use one of \('constant', 'cosine'\)",
        ),
        (
            "fm_f,runlocal",
            {},
            ValueError,
            r"variant 'fm_f' .*features\.extractor='pixels' and features\.file is empty",
        ),
        (
            "f,runlocal",
            {"vibe.feature_likelihood": "unit"},
            ValueError,
            r"vibe\.feature_likelihood='unit'; use one of \('reference', 'normalized'\)",
        ),
    ],
    ids=[
        "ss_a-unset",
        "ss_f-missing",
        "extractor-unset",
        "features-file-missing",
        "victim-backbone-unset",
        "victim-init",
        "victim-schedule",
        "fm-pixels",
        "feature-likelihood",
    ],
)
def test_missing_files_named_before_any_data(no_data, tmp_path, arg, fields, error, message):
  with pytest.raises(error, match=message):
    run.train_and_evaluate(digits.config(arg, **fields), str(tmp_path))


def test_backbone_directory_without_metadata(no_data, tmp_path):
  (tmp_path / "bb").mkdir()
  config = digits.config("ss_a,runlocal", **{"backbone.checkpoint": str(tmp_path / "bb")})
  with pytest.raises(FileNotFoundError, match=r"no backbone\.json in it"):
    run.train_and_evaluate(config, str(tmp_path / "run"))


def test_batch_checks_come_before_feature_extraction(monkeypatch, tmp_path):
  def refuse(*args, **kwargs):
    raise AssertionError("features were extracted before the batch sizes were checked")

  monkeypatch.setattr(features, "experiment_feature_arrays", refuse)
  with pytest.raises(ValueError, match=r"train\.batch_size=5000 exceeds the 1258 training"):
    run.train_and_evaluate(digits.config(**{"train.batch_size": 5000}), str(tmp_path))
  # Eight devices (a stand-in mesh: only its device count is read) and a batch of 60.
  monkeypatch.setattr(
      experiment, "setup_devices", lambda config: types.SimpleNamespace(shape={"data": 8})
  )
  with pytest.raises(ValueError, match=r"baseline\.batch_size=60 does not divide over 8"):
    run.train_and_evaluate(digits.config(**{"baseline.batch_size": 60}), str(tmp_path))


def test_attack_that_poisons_nothing_warns(caplog):
  with caplog.at_level(logging.WARNING):
    built = experiment.build_experiment(digits.config(**{"attack.rate": 1e-4}))
  assert not built.poisoned_train.poison_mask.any()
  assert "poisons 0 of the 1258 training samples" in caplog.text


def strict_json(line: str):
  """json.loads that refuses NaN / Infinity, as standard JSON readers do."""

  def refuse(token):
    raise ValueError(f"non-standard JSON token {token}")

  return json.loads(line, parse_constant=refuse)


def test_sinkhorn_that_does_not_converge_is_a_warning_in_the_log(tmp_path, caplog):
  config = digits.config(
      "f,runlocal",
      **{"baseline.enabled": False, "estep.max_iterations": 2, "estep.semi_dual_steps": 0},
  )
  with caplog.at_level(logging.WARNING):
    run.train_and_evaluate(config, str(tmp_path))
  assert "Sinkhorn did not converge" in caplog.text and "estep.max_iterations=2" in caplog.text
  records = [strict_json(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
  esteps = [r for r in records if r["kind"] == "estep"]
  assert esteps and all(r["sinkhorn_converged"] == 0 for r in esteps)
  text = open(report.write_report(str(tmp_path))).read()
  assert "Sinkhorn did not converge at the E-step(s) of iteration(s) 0, 20" in text


def test_sinkhorn_non_finite_error_stops_the_run(tmp_path, monkeypatch):
  solve = estep.sinkhorn_pseudo_labels

  def diverging(*args, **kwargs):
    labels, result = solve(*args, **kwargs)
    return labels, result._replace(marginal_error=jnp.inf, converged=jnp.asarray(False))

  monkeypatch.setattr(loop.estep, "sinkhorn_pseudo_labels", diverging)
  config = digits.config("f,runlocal", **{"baseline.enabled": False})
  with pytest.raises(FloatingPointError, match=r"E-step at iteration 0: the Sinkhorn .* inf"):
    run.train_and_evaluate(config, str(tmp_path))
  (line,) = (tmp_path / "log.jsonl").read_text().splitlines()
  assert strict_json(line)["sinkhorn_error"] is None  # logged, as standard JSON


def test_log_jsonl_is_standard_json(tmp_path):
  with writers.MetricWriter(str(tmp_path), tensorboard=False) as log:
    log.write("vibe", {"step": 1, "kind": "train", "loss": math.nan, "lr": math.inf})
  record = strict_json((tmp_path / "log.jsonl").read_text())
  assert record["loss"] is None and record["lr"] is None
