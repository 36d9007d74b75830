"""The benchmarks keep running (quick mode) and compare like with like (no speed asserts)."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize("likelihood", ["a", "f"])
def test_torch_head_has_vibe_head_formulas(likelihood):
  """The PyTorch M-step of benchmarks/mstep.py computes the same ln P as VibeHead."""
  import jax.numpy as jnp
  from flax import nnx
  from benchmarks import mstep as mstep_bench
  from vibe_jax.models.vibe import VibeHead

  rng = np.random.default_rng(0)
  num_classes, dim, batch = 7, 16, 32
  mu_z, mu_y = rng.standard_normal((2, num_classes, dim)).astype(np.float32)
  prior_logits = rng.standard_normal(num_classes).astype(np.float32)
  features = rng.standard_normal((batch, dim)).astype(np.float32)
  given = rng.integers(num_classes, size=batch)
  head = VibeHead(
      num_classes,
      dim,
      kappa=10.0,
      nu=10.0,
      prior_temperature=0.02,
      likelihood=likelihood,
      rngs=nnx.Rngs(0),
      mu_z=mu_z,
      mu_y=mu_y,
  )
  head.prior_logits[...] = jnp.asarray(prior_logits)
  torch_head = mstep_bench.torch_head(
      num_classes, dim, likelihood, mu_z=mu_z, mu_y=mu_y, prior_logits=prior_logits
  )
  expected = np.asarray(head.ln_joint(jnp.asarray(features), jnp.asarray(given)))
  with torch.no_grad():
    got = torch_head.ln_joint(torch.from_numpy(features), torch.from_numpy(given)).numpy()
  np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


def test_torch_sinkhorn_transcription_agrees_with_ours():
  """Converged, the reference transcription and ott give the same pseudo-labels; the
  fixed mode runs exactly the iterations it is told to, like the reference."""
  import jax.numpy as jnp
  from benchmarks import common, estep as estep_bench
  from vibe_jax.em import estep

  ln_p, prior = common.make_ln_p("dirichlet", 3_000, 10)
  fixed = estep_bench.torch_sinkhorn(ln_p, prior, 25.0, max_iterations=37)
  assert fixed["iterations"] == 37 and not fixed["converged"]
  converged = estep_bench.torch_sinkhorn(ln_p, prior, 25.0, max_iterations=10_001, threshold=1e-6)
  assert converged["converged"] and converged["iterations"] % estep_bench.CHECK_EVERY == 0
  labels, result = estep.sinkhorn_pseudo_labels(
      jnp.asarray(ln_p), jnp.asarray(prior), 25.0, threshold=1e-6
  )
  assert bool(result.converged)
  assert np.mean(np.asarray(labels) == converged["labels"]) >= 0.999


def test_make_ln_p_kinds():
  from benchmarks import common

  for kind in ("dirichlet", "late_em"):
    ln_p, prior = common.make_ln_p(kind, 500, 10)
    assert ln_p.shape == (500, 10) and ln_p.dtype == np.float32
    assert np.all(np.isfinite(ln_p)) and np.all(ln_p <= 0)
    np.testing.assert_allclose(prior.sum(), 1.0, rtol=1e-5)
  with pytest.raises(ValueError, match="dirichlet"):
    common.make_ln_p("uniform", 10, 3)


@pytest.mark.slow
def test_quick_benchmarks_produce_tables(tmp_path):
  """`python -m benchmarks --quick` runs end to end and writes its tables (CI smoke test;
  figures are not checked: the machine is shared)."""
  output = tmp_path / "RESULTS.md"
  result = subprocess.run(
      [sys.executable, "-m", "benchmarks", "--quick", "--output", str(output)],
      cwd=REPO_ROOT,
      capture_output=True,
      text=True,
      timeout=600,
  )
  assert result.returncode == 0, result.stderr[-3000:]
  text = output.read_text()
  for heading in (
      "## Machine",
      "## E-step",
      "## M-step",
      "## EM block",
      "| N | C | solver | iterations | time |",
      "samples/s",
      "reference (torch, 1,001 it)",
      "ours (L-BFGS + ott, tol 1e-4)",
      "E-step sequence",
      "streaming bound",
      "ours (vibe_jax M-step)",
      "One EM block",
      "## GPU",
      "## How the grid is capped",
  ):
    assert heading in text, heading
  assert (tmp_path / "RESULTS.json").exists()


def test_iteration_cap_fits_the_time_and_the_ceiling():
  """A solve that does not converge must stop near its time budget, never past 10,001 it."""
  from benchmarks import estep as estep_bench

  assert estep_bench.iteration_cap(0.01, 60.0, 10_001) == 6_000
  assert estep_bench.iteration_cap(1e-6, 60.0, 10_001) == 10_001
  assert estep_bench.iteration_cap(100.0, 60.0, 10_001) == estep_bench.CHECK_EVERY


def _facts(speedup, agree, ours_rate):
  """Facts shaped like estep.run / mstep.run return them, for the acceptance table."""
  estep_facts = {
      "kind": "late_em",
      "N": 50_000,
      "C": 10,
      "speedup": speedup,
      "reference_extrapolated": False,
      "ours_extrapolated": False,
      "ours_iterations": 500,
      "agree_reference": agree,
      "agree_tight": 1.0,
      "reference_agree_tight": agree,
      "ours_ms_per_iteration": 1.0,
      "torch_ms_per_iteration": 10.0,
  }
  mstep_facts = {
      "C": 10,
      "likelihood": "a",
      "torch": {"samples_per_s": 100.0},
      "ours (vibe_jax M-step)": {"samples_per_s": ours_rate},
  }
  return {"estep": {"facts": [estep_facts]}, "mstep": {"facts": [mstep_facts]}}


def test_acceptance_verdicts_say_why_a_target_is_missed():
  """RESULTS.md must not claim a missed target, and must explain the miss."""
  from benchmarks import run_all

  met = _facts(speedup=80.0, agree=0.9995, ours_rate=150.0)
  assert [verdict for _, _, verdict in run_all.acceptance(met)] == ["MET", "MET"]
  assert run_all.acceptance_notes(met) == []
  missed = _facts(speedup=None, agree=0.99, ours_rate=50.0)
  assert [verdict for _, _, verdict in run_all.acceptance(missed)] == ["MISSED", "MISSED"]
  notes = " ".join(run_all.acceptance_notes(missed))
  assert "99.000 %" in notes and "50 samples/s against PyTorch's 100" in notes


def test_results_markdown_flags_a_loaded_machine_and_the_missing_gpu():
  """Figures from a shared CPU are pessimistic and CPU-only; RESULTS.md has to say so."""
  from benchmarks import run_all

  info = {"date": "today", "cpu": "test", "load average (1, 5, 15 min) at start": "9.00 1 1"}
  text = run_all.render_markdown(
      info, {}, [], "python -m benchmarks", 60.0, "1 1 1", {"E-step": "2 2 2"}
  )
  assert "pessimistic" in text and "GPU figures are still to be taken" in text
  assert "load average at the start of 'E-step' | 2 2 2" in text
  quiet = dict(info, **{"load average (1, 5, 15 min) at start": "0.00 0 0"})
  assert "pessimistic" not in run_all.render_markdown(quiet, {}, [], "x", 1.0, "0 0 0")


def test_likelihood_benchmark_shows_the_feature_norm_effect():
  """benchmarks/likelihood.py on a tiny clustered set, 16 of 120 labels poisoned to class 0
  with a shared offset (the trigger): at |v| = 1 the two F forms are the same E-step; at
  |v| = 10 the reference's form holds the poison at its given label, v/|v| does not."""
  from benchmarks import likelihood
  from configs import digits_badnets
  from vibe_jax.prepare import TrainingSet

  rng = np.random.default_rng(0)
  true = np.repeat(np.arange(3), 40)
  features = rng.normal(size=(3, 8))[true] * 2 + rng.normal(size=(120, 8))
  poison = (true != 0) & (rng.random(120) < 0.2)
  features[poison] += 1.0
  training = TrainingSet(
      inputs=None,
      features=(features / np.linalg.norm(features, axis=1, keepdims=True)).astype(np.float32),
      given_labels=np.where(poison, 0, true).astype(np.int32),
      true_labels=true,
      poison_mask=poison,
      num_classes=3,
  )
  config = digits_badnets.get_config("f")
  restored = {
      (norm, form): record["poison_restored"]
      for norm in (1.0, 10.0)
      for (form, estep), record in likelihood.second_estep_diagnostics(
          config, training, norm
      ).items()
      if estep == "second"
  }
  reference, normalized = "F reference (v)", "F normalized (v/|v|)"
  assert restored[1.0, reference] == restored[1.0, normalized] == restored[10.0, normalized]
  assert restored[10.0, reference] < 0.2 < restored[10.0, normalized]
