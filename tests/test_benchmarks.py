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
  head = VibeHead(num_classes, dim, kappa=10.0, nu=10.0, prior_temperature=0.02,
                  likelihood=likelihood, rngs=nnx.Rngs(0), mu_z=mu_z, mu_y=mu_y)
  head.prior_logits.value = jnp.asarray(prior_logits)
  torch_head = mstep_bench.torch_head(num_classes, dim, likelihood, mu_z=mu_z, mu_y=mu_y,
                                      prior_logits=prior_logits)
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
  converged = estep_bench.torch_sinkhorn(ln_p, prior, 25.0, max_iterations=10_001,
                                         threshold=1e-6)
  assert converged["converged"] and converged["iterations"] % estep_bench.CHECK_EVERY == 0
  labels, result = estep.sinkhorn_pseudo_labels(jnp.asarray(ln_p), jnp.asarray(prior), 25.0,
                                                threshold=1e-6)
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
  result = subprocess.run([sys.executable, "-m", "benchmarks", "--quick", "--output",
                           str(output)], cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]
  text = output.read_text()
  for heading in ("## Machine", "## E-step", "## M-step", "## EM block",
                  "| N | C | solver | iterations | time |", "samples/s",
                  "reference (torch, 1,001 it)", "ours (ott, tol 1e-4, momentum)",
                  "ours (vibe_jax train_steps)", "One EM block"):
    assert heading in text, heading
  assert (tmp_path / "RESULTS.json").exists()
