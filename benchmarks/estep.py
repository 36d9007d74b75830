"""E-step benchmark: our ott-jax Sinkhorn vs a PyTorch transcription of the reference E-step.

  python -m benchmarks.estep [--quick] [--budget-s 60] [--threads 1]

Three solvers on the same ln P (N x C) and prior:
  reference   PyTorch, log-domain Sinkhorn-Knopp on K = lambda ln P, row marginal 1/N,
              column marginal the prior: u = log r - logsumexp_l(K + v), then
              v = log c - logsumexp_i(K + u); exactly 10,001 iterations, no convergence
              test (the reference's quirk, VIBE_SPEC.md section 2); labels argmax(K + u + v).
  torch tol   the same transcription, stopped once the L1 row-marginal error < 1e-4
              (checked every 10 iterations, as ott does).
  ours        vibe_jax.em.estep.sinkhorn_pseudo_labels with the EM loop's defaults (L-BFGS
              on the semi-dual, then ott lse-mode Sinkhorn with adaptive momentum, tol 1e-4),
              compiled ahead of time; the compile is reported apart (the EM loop compiles
              it once per shape and reuses it every E-step). Iterations: "L-BFGS steps +
              Sinkhorn iterations" (each costs about two passes over ln P).
Agreement is the fraction of equal pseudo-labels with the reference-style run and with a
tightly converged run (ours at tol 1e-5).

Cells whose run would exceed the time budget are not run: their time is the per-iteration
cost (timed over a few iterations) times the iteration count, marked "(extrap.)".
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import tempfile
import time

import numpy as np

from benchmarks import common

REFERENCE_ITERATIONS = 10_001
THRESHOLD = 1e-4
TIGHT_THRESHOLD = 1e-5  # 10x tighter than ours; 1e-6 is below float32's floor on several cells
TIGHT_MAX_ITERATIONS = 20_000
OURS = "ours (L-BFGS + ott, tol 1e-4)"
LAM = 25.0
CHECK_EVERY = 10  # ott's default inner_iterations: the marginal error is computed every 10
KINDS = ("late_em", "dirichlet")
FULL_GRID = tuple((n, c) for c in (10, 100, 1000) for n in (10_000, 50_000, 250_000))
QUICK_GRID = ((2_000, 10),)
TARGET_CELL = (50_000, 10)  # the acceptance cell: >= 50x, >= 99.9 % agreement
KIND_NOTES = {
    "late_em": "ln P = late_em: a late-EM problem on synthetic clustered 128-d features "
    "(ln p(l|x) from the class centroids, ln p(y|l) with 10 % label noise): "
    "peaked, so plain Sinkhorn needs thousands of iterations at tol 1e-4.",
    "dirichlet": "ln P = dirichlet: ln of Dirichlet(1) rows, the random problems of the "
    "spec's agreement claim; easy for Sinkhorn.",
}


# ----------------------------------------------------------------------------- PyTorch


def torch_sinkhorn(
    ln_p: np.ndarray,
    prior: np.ndarray,
    lam: float,
    *,
    max_iterations: int,
    threshold: float | None = None,
    time_limit: float | None = None,
) -> dict:
  """The reference's E-step, transcribed: log-domain Sinkhorn-Knopp on K = lam * ln P.

  threshold None runs exactly `max_iterations` iterations (the reference). Otherwise the L1
  error of the row marginals is checked every CHECK_EVERY iterations and the loop stops
  below `threshold`. `time_limit` (seconds) stops a run that would take too long; the
  result then says so.
  """
  import torch

  start = time.perf_counter()
  with torch.no_grad():
    kernel = torch.from_numpy(ln_p) * lam
    num_samples, num_classes = kernel.shape
    log_r = torch.full((num_samples, 1), -math.log(num_samples))
    log_c = torch.log(torch.from_numpy(prior / prior.sum()))[None, :]
    u = torch.zeros(num_samples, 1)
    v = torch.zeros(1, num_classes)
    iterations, error, converged, timed_out = 0, float("nan"), False, False
    while iterations < max_iterations:
      u = log_r - torch.logsumexp(kernel + v, dim=1, keepdim=True)
      v = log_c - torch.logsumexp(kernel + u, dim=0, keepdim=True)
      iterations += 1
      if threshold is not None and iterations % CHECK_EVERY == 0:
        rows = torch.exp(u + torch.logsumexp(kernel + v, dim=1, keepdim=True))
        error = float((rows - 1.0 / num_samples).abs().sum())
        if error < threshold:
          converged = True
          break
      if time_limit is not None and time.perf_counter() - start > time_limit:
        timed_out = True
        break
    labels = torch.argmax(kernel + u + v, dim=1).numpy().astype(np.int32)
  return {
      "labels": labels,
      "iterations": iterations,
      "converged": converged,
      "error": error,
      "seconds": time.perf_counter() - start,
      "timed_out": timed_out,
  }


def torch_seconds_per_iteration(
    ln_p: np.ndarray, prior: np.ndarray, lam: float, probe_s: float
) -> tuple[float, int]:
  """Seconds per reference iteration, timed over as many iterations as fit in ~probe_s."""
  one = torch_sinkhorn(ln_p, prior, lam, max_iterations=1)["seconds"]
  iterations = int(min(max(probe_s / max(one, 1e-6), 2), 200))
  seconds = torch_sinkhorn(ln_p, prior, lam, max_iterations=iterations)["seconds"]
  return seconds / iterations, iterations


# ----------------------------------------------------------------------------- ours


def ours_compile(ln_p, prior, init_g=None, **static):
  """AOT-compiles sinkhorn_pseudo_labels for these shapes; (executable, seconds, XLA temp)."""
  from vibe_jax.em import estep

  start = time.perf_counter()
  warm = {} if init_g is None else {"init_g": init_g}
  compiled = estep.sinkhorn_pseudo_labels.lower(ln_p, prior, LAM, **warm, **static).compile()
  seconds = time.perf_counter() - start
  try:
    temp = int(compiled.memory_analysis().temp_size_in_bytes)
  except Exception:  # memory_analysis is optional for a backend
    temp = None
  return compiled, seconds, temp


def ours_run(compiled, ln_p, prior, init_g=None) -> dict:
  start = time.perf_counter()
  call = compiled(ln_p, prior, LAM) if init_g is None else compiled(ln_p, prior, LAM, init_g=init_g)
  labels, result = common.block(call)
  seconds = time.perf_counter() - start
  return {
      "labels": np.asarray(labels),
      "iterations": int(result.iterations) + int(result.semi_dual_steps),
      "semi_dual_steps": int(result.semi_dual_steps),
      "sinkhorn_iterations": int(result.iterations),
      "converged": bool(result.converged),
      "error": float(result.marginal_error),
      "seconds": seconds,
      "g": np.asarray(result.g),
  }


def ours_label(run: dict) -> str:
  """'L-BFGS steps + Sinkhorn iterations'."""
  return f"{run['semi_dual_steps']} + {run['sinkhorn_iterations']}"


def ours_seconds_per_iteration(ln_p, prior, probe_s: float) -> tuple[float, int]:
  """Seconds per plain (no momentum) ott iteration, convergence checks included."""
  iterations = CHECK_EVERY
  while True:
    compiled, _, _ = ours_compile(
        ln_p,
        prior,
        threshold=-1.0,
        max_iterations=iterations,
        adaptive_momentum=False,
        semi_dual_steps=0,
    )
    seconds = ours_run(compiled, ln_p, prior)["seconds"]
    if seconds > probe_s / 4 or iterations >= 400:
      return seconds / iterations, iterations
    iterations = int(
        min(
            400,
            max(
                2 * iterations,
                CHECK_EVERY * math.ceil(probe_s / max(seconds, 1e-6) * iterations / CHECK_EVERY),
            ),
        )
    )


def streaming_seconds(num_samples: int, num_classes: int, bandwidth: dict) -> float:
  """The memory-bound time of one Sinkhorn iteration: two reads of the N x C float32 cost."""
  return 2 * 4 * num_samples * num_classes / bandwidth["bytes_per_second"]


def iteration_cap(seconds_per_iteration: float, seconds: float, ceiling: int) -> int:
  """Iterations (a multiple of CHECK_EVERY) that fit in `seconds`, at most `ceiling`: keeps a
  solve that does not converge from running for half an hour."""
  fit = CHECK_EVERY * int(seconds / max(seconds_per_iteration, 1e-9) / CHECK_EVERY)
  return int(max(CHECK_EVERY, min(ceiling, fit)))


# ----------------------------------------------------------------------------- memory probes


def _memory_probe(framework: str, ln_p_path: str, prior_path: str) -> dict:
  """Runs in a fresh process: peak RSS growth of one solve beyond its loaded input."""
  ln_p = np.load(ln_p_path)
  prior = np.load(prior_path)
  tiny_ln_p, tiny_prior = common.make_ln_p("dirichlet", 64, ln_p.shape[1], seed=1)
  if framework == "torch":
    torch_sinkhorn(tiny_ln_p, tiny_prior, LAM, max_iterations=2)  # one-off runtime set-up
    with common.PeakRss() as peak:
      torch_sinkhorn(ln_p, prior, LAM, max_iterations=2)
    return {"delta": peak.delta, "method": peak.method}
  import jax.numpy as jnp

  warm, _, _ = ours_compile(
      jnp.asarray(tiny_ln_p),
      jnp.asarray(tiny_prior),
      threshold=-1.0,
      max_iterations=CHECK_EVERY,
      adaptive_momentum=True,
      semi_dual_steps=CHECK_EVERY,
  )
  ours_run(warm, jnp.asarray(tiny_ln_p), jnp.asarray(tiny_prior))  # one-off runtime set-up
  ln_p_device, prior_device = jnp.asarray(ln_p), jnp.asarray(prior)
  del ln_p
  # Same program as the benchmarked solve except the iteration cap (which only sizes the
  # (max_iterations / 10,) error history): memory does not depend on the iteration count.
  compiled, _, temp = ours_compile(
      ln_p_device,
      prior_device,
      threshold=-1.0,
      max_iterations=CHECK_EVERY,
      adaptive_momentum=True,
      semi_dual_steps=CHECK_EVERY,
  )
  with common.PeakRss() as peak:
    ours_run(compiled, ln_p_device, prior_device)
  return {"delta": peak.delta, "method": peak.method, "xla_temp": temp}


def measure_memory(ln_p: np.ndarray, prior: np.ndarray) -> dict:
  """{'torch': {...}, 'ours': {...}} from one fresh subprocess each."""
  out = {}
  with tempfile.TemporaryDirectory(prefix="vibe_bench_") as tmp:
    ln_p_path, prior_path = os.path.join(tmp, "ln_p.npy"), os.path.join(tmp, "prior.npy")
    np.save(ln_p_path, ln_p)
    np.save(prior_path, prior)
    for framework in ("torch", "ours"):
      try:
        out[framework] = common.run_probe(
            "benchmarks.estep", ["--memory-probe", framework, ln_p_path, prior_path]
        )
      except Exception as error:  # a probe that dies (e.g. out of memory) is reported
        out[framework] = {"delta": None, "method": f"failed: {str(error)[-200:]}"}
  return out


def torch_footprint(num_samples: int, num_classes: int) -> int:
  """Working set of the transcription beyond ln P: K, K + v, and logsumexp's two N x C
  temporaries (x - max, exp(x - max)): 4 N C float32."""
  return 4 * num_samples * num_classes * 4


# ----------------------------------------------------------------------------- the grid


@dataclasses.dataclass
class Row:
  kind: str
  num_samples: int
  num_classes: int
  method: str
  iterations: str
  seconds: float | None
  extrapolated: bool = False
  compile_seconds: float | None = None
  agree_reference: float | None = None
  agree_tight: float | None = None
  error: float | None = None
  note: str = ""


def _agreement(a, b) -> float | None:
  if a is None or b is None:
    return None
  return float(np.mean(np.asarray(a) == np.asarray(b)))


def run_cell(
    kind: str,
    num_samples: int,
    num_classes: int,
    *,
    budget_s: float,
    probe_s: float,
    expected_iterations: dict,
    reference_iterations: int = REFERENCE_ITERATIONS,
    torch_tol_s: float | None = None,
    log=print,
) -> tuple[list[Row], dict]:
  """One (kind, N, C) cell: reference, torch at tol, ours, tight. `torch_tol_s`: the time cap
  of the torch-at-tol run (default budget_s; at C = 1,000 it never converges, so a long cap
  only costs time)."""
  import jax.numpy as jnp

  ln_p, prior = common.make_ln_p(kind, num_samples, num_classes)
  ln_p_device, prior_device = jnp.asarray(ln_p), jnp.asarray(prior)
  cell = (num_samples, num_classes)
  facts = {"kind": kind, "N": num_samples, "C": num_classes}

  torch_per_it, torch_probe_its = torch_seconds_per_iteration(ln_p, prior, LAM, probe_s)
  ours_per_it, ours_probe_its = ours_seconds_per_iteration(ln_p_device, prior_device, probe_s)
  facts.update(
      torch_ms_per_iteration=1e3 * torch_per_it,
      ours_ms_per_iteration=1e3 * ours_per_it,
      torch_probe_iterations=torch_probe_its,
      ours_probe_iterations=ours_probe_its,
  )
  log(
      f"  [{kind} N={num_samples} C={num_classes}] per iteration: torch "
      f"{1e3 * torch_per_it:.2f} ms, ours {1e3 * ours_per_it:.2f} ms  "
      f"(load {common.load_average()})"
  )

  rows = []
  # Reference-style: exactly 10,001 iterations (fewer only in --quick mode, labelled).
  reference_name = f"reference (torch, {reference_iterations:,} it)"
  reference_estimate = torch_per_it * reference_iterations
  reference = None
  if reference_estimate <= budget_s or cell == TARGET_CELL:
    reference = torch_sinkhorn(ln_p, prior, LAM, max_iterations=reference_iterations)
    rows.append(Row(kind, *cell, reference_name, str(reference_iterations), reference["seconds"]))
    facts["reference_seconds"] = reference["seconds"]
  else:
    rows.append(
        Row(
            kind,
            *cell,
            reference_name,
            str(reference_iterations),
            reference_estimate,
            extrapolated=True,
            note=f"{1e3 * torch_per_it:.1f} ms/it over {torch_probe_its} it "
            f"x {reference_iterations:,}",
        )
    )
    facts["reference_seconds"] = reference_estimate
  facts["reference_extrapolated"] = reference is None
  log(f"    reference: {common.fmt_seconds(facts['reference_seconds'], reference is None)}")

  # Our solver: converged, adaptive momentum; capped at 3x the budget like the others.
  key = (kind, num_classes)
  measured_before = key in expected_iterations
  guess = expected_iterations.get(key, 2000 if kind == "late_em" else 100)
  # Seconds per (L-BFGS step or Sinkhorn iteration) over plain ms/it, at the smaller N.
  unit = expected_iterations.get((*key, "unit"), 1.0)
  ours_cap = iteration_cap(ours_per_it, 3 * budget_s, REFERENCE_ITERATIONS)
  ours = None
  compiled, compile_s, xla_temp = ours_compile(
      ln_p_device,
      prior_device,
      threshold=THRESHOLD,
      max_iterations=ours_cap,
      adaptive_momentum=True,
  )
  facts["ours_xla_temp_bytes"] = xla_temp
  if ours_per_it * guess * unit <= 3 * budget_s:
    ours = ours_run(compiled, ln_p_device, prior_device)
    capped = not ours["converged"] and ours_cap < REFERENCE_ITERATIONS
    if ours["converged"]:
      expected_iterations[key] = ours["iterations"]
      expected_iterations[(*key, "unit")] = ours["seconds"] / (ours["iterations"] * ours_per_it)
    facts.update(
        ours_semi_dual_steps=ours["semi_dual_steps"],
        ours_sinkhorn_iterations=ours["sinkhorn_iterations"],
    )
    facts.update(
        ours_seconds=ours["seconds"],
        ours_iterations=ours["iterations"],
        ours_extrapolated=False,
        ours_capped=capped,
    )
    if ours["converged"]:
      note = ""
    elif capped and ours["iterations"] > ours_cap:
      note = (
          f"momentum did not converge, then its plain fallback stopped by the iteration cap "
          f"({ours_cap:,} it, sized to {3 * budget_s:.0f} s): a lower bound, no speed-up"
      )
    elif capped:
      note = (
          f"stopped by the {3 * budget_s:.0f} s cap ({ours_cap:,} it): a lower bound, no "
          "speed-up"
      )
    else:
      note = f"NOT converged in {ours_cap:,} it"
    rows.append(
        Row(
            kind,
            *cell,
            OURS,
            ("> " if capped else "") + ours_label(ours),
            ours["seconds"],
            compile_seconds=compile_s,
            agree_reference=_agreement(ours["labels"], reference and reference["labels"]),
            error=ours["error"],
            note=note,
        )
    )
  elif measured_before:
    facts.update(
        ours_seconds=ours_per_it * guess * unit,
        ours_iterations=guess,
        ours_extrapolated=True,
        ours_capped=False,
    )
    rows.append(
        Row(
            kind,
            *cell,
            OURS,
            f"~{guess}",
            ours_per_it * guess * unit,
            extrapolated=True,
            compile_seconds=compile_s,
            note=f"steps + iterations from the next smaller N; {1e3 * ours_per_it:.1f} ms/it "
            f"x {unit:.2f} (cost of a step relative to a plain iteration there)",
        )
    )
  else:  # no converged smaller N to size it: no time and no speed-up to claim
    facts.update(ours_seconds=None, ours_iterations=None, ours_extrapolated=True, ours_capped=False)
    rows.append(
        Row(
            kind,
            *cell,
            OURS,
            "-",
            None,
            compile_seconds=compile_s,
            note=(
                f"not run: {1e3 * ours_per_it:.1f} ms/it, and no smaller N converged in this "
                "run to estimate the iterations"
            ),
        )
    )
  del compiled
  facts["ours_compile_seconds"] = compile_s
  facts["speedup"] = (
      None
      if facts["ours_capped"] or facts["ours_seconds"] is None
      else facts["reference_seconds"] / facts["ours_seconds"]
  )
  log(
      f"    ours: {facts['ours_iterations']} it, "
      f"{common.fmt_seconds(facts['ours_seconds'], facts['ours_extrapolated'])} "
      f"(+ compile {compile_s:.1f} s)"
  )

  # PyTorch stopped at convergence (same tolerance), under a time cap.
  converged_torch = torch_sinkhorn(
      ln_p,
      prior,
      LAM,
      max_iterations=reference_iterations,
      threshold=THRESHOLD,
      time_limit=torch_tol_s or budget_s,
  )
  note = ""
  if converged_torch["timed_out"]:
    note = (
        f"stopped by the {torch_tol_s or budget_s:.0f} s cap, error "
        f"{converged_torch['error']:.1e}"
    )
  elif not converged_torch["converged"]:
    note = (
        f"not converged in {reference_iterations:,} it " f"(error {converged_torch['error']:.1e})"
    )
  rows.insert(
      1,
      Row(
          kind,
          *cell,
          "torch, tol 1e-4",
          ("> " if converged_torch["timed_out"] else "") + str(converged_torch["iterations"]),
          converged_torch["seconds"],
          agree_reference=_agreement(converged_torch["labels"], reference and reference["labels"]),
          error=converged_torch["error"],
          note=note,
      ),
  )
  log(
      f"    torch tol: {converged_torch['iterations']} it, "
      f"{common.fmt_seconds(converged_torch['seconds'])} {note}"
  )

  # Tightly converged run: ours continued from its own g (warm start) to tol 1e-5, the labels
  # the others should approach. Its solver steps are capped by the time budget: in float32
  # L-BFGS can stall short of 1e-5 on the peaked C = 1,000 problems (then the row says so).
  tight = None
  tight_max = int(min(TIGHT_MAX_ITERATIONS, max(2_000, 10 * (ours or {}).get("iterations", 0))))
  tight_max = min(tight_max, iteration_cap(ours_per_it, budget_s / 2, tight_max))
  tight_steps = iteration_cap(ours_per_it * unit, budget_s / 2, TIGHT_MAX_ITERATIONS)
  if ours is not None and ours["converged"]:
    compiled, _, _ = ours_compile(
        ln_p_device,
        prior_device,
        threshold=TIGHT_THRESHOLD,
        max_iterations=tight_max,
        adaptive_momentum=True,
        semi_dual_steps=tight_steps,
        init_g=ours["g"],
    )
    tight = ours_run(compiled, ln_p_device, prior_device, init_g=ours["g"])
    del compiled
    rows.append(
        Row(
            kind,
            *cell,
            "tight (ours continued to tol 1e-5)",
            ours_label(tight),
            tight["seconds"],
            agree_reference=_agreement(tight["labels"], reference and reference["labels"]),
            agree_tight=1.0,
            error=tight["error"],
            note="from ours' g"
            + (
                ""
                if tight["converged"]
                else f"; stopped at {tight_steps:,} steps + {tight_max:,} it"
            ),
        )
    )
  results = {
      reference_name: reference,
      "torch, tol 1e-4": converged_torch,
      OURS: ours,
  }
  for row in rows:
    if row.agree_tight is None and tight is not None and results.get(row.method) is not None:
      row.agree_tight = _agreement(results[row.method]["labels"], tight["labels"])
  if reference is not None:
    rows[0].agree_reference = 1.0
    facts["reference_agree_tight"] = rows[0].agree_tight
  for row in rows:
    if row.method.startswith("ours"):
      facts["agree_reference"] = row.agree_reference
      facts["agree_tight"] = row.agree_tight
  return rows, facts


def _pct(value: float | None) -> str:
  return "-" if value is None else f"{100 * value:.3f} %"


def run(
    quick: bool = False,
    budget_s: float | None = None,
    probe_s: float | None = None,
    kinds=None,
    grid=None,
    memory: bool = True,
    torch_tol_s: float | None = None,
    expected_iterations: dict | None = None,
    log=print,
) -> dict:
  """Runs the grid; returns {'tables': [Table], 'facts': [dict], 'memory': [dict]}.

  quick: N=2,000, C=10, late-EM problem only, short probes and a 1,001-iteration
  "reference" (the CI smoke run: it checks that the code runs, not the figures).
  """
  reference_iterations = 1_001 if quick else REFERENCE_ITERATIONS
  grid = grid or (QUICK_GRID if quick else FULL_GRID)
  kinds = kinds or (("late_em",) if quick else KINDS)
  budget_s = budget_s if budget_s is not None else (10.0 if quick else 60.0)
  probe_s = probe_s if probe_s is not None else (0.3 if quick else 3.0)
  all_rows, all_facts = [], []
  # (kind, C) -> ours' steps + iterations at a smaller N, to size (or extrapolate) the next.
  expected_iterations = dict(expected_iterations or {})
  for kind in kinds:
    for num_samples, num_classes in sorted(grid, key=lambda nc: (nc[1], nc[0])):
      log(f"E-step {kind} N={num_samples} C={num_classes}")
      rows, facts = run_cell(
          kind,
          num_samples,
          num_classes,
          budget_s=budget_s,
          probe_s=probe_s,
          expected_iterations=expected_iterations,
          reference_iterations=reference_iterations,
          torch_tol_s=torch_tol_s,
          log=log,
      )
      all_rows += rows
      all_facts.append(facts)
  tables = []
  for kind in kinds:
    table = common.Table(
        f"E-step, ln P = {kind} (lambda 25; times exclude ours' one-off compile)",
        [
            "N",
            "C",
            "solver",
            "iterations",
            "time",
            "speed-up vs ref",
            "compile",
            "agree w/ ref",
            "agree w/ tight",
            "marginal err",
            "note",
        ],
    )
    reference_time = {}
    for row in all_rows:
      if row.kind != kind:
        continue
      cell = (row.num_samples, row.num_classes)
      if row.method.startswith("reference"):
        reference_time[cell] = row.seconds
      speedup = reference_time.get(cell, 0) / row.seconds if row.seconds else None
      if row.iterations.startswith(">") or row.method.startswith("tight"):
        speedup = None  # a run stopped by the time cap, or the agreement yardstick
      table.add(
          f"{row.num_samples:,}",
          row.num_classes,
          row.method,
          row.iterations,
          common.fmt_seconds(row.seconds, row.extrapolated),
          "-" if row.method.startswith("reference") or speedup is None else f"{speedup:.1f}x",
          common.fmt_seconds(row.compile_seconds),
          _pct(row.agree_reference),
          _pct(row.agree_tight),
          "-" if row.error is None or not math.isfinite(row.error) else f"{row.error:.1e}",
          row.note,
      )
    table.notes.append(KIND_NOTES[kind])
    table.notes.append(
        "agree w/ ref: fraction of pseudo-labels equal to the reference-style "
        "run's; agree w/ tight: to ours at tol 1e-5 ('-': that run was not made "
        "because it would exceed the time budget)."
    )
    tables.append(table)

  per_iteration = common.Table(
      "E-step cost per Sinkhorn iteration and memory (ln P = late_em; memory does not depend "
      "on the problem kind)",
      [
          "N",
          "C",
          "ln P size",
          "torch ms/it",
          "ours ms/it",
          "ratio",
          "streaming bound ms/it",
          "ours / bound",
          "torch peak RSS delta",
          "torch model (4 NC x 4 B)",
          "ours peak RSS delta",
          "ours XLA temp",
      ],
  )
  memory_rows = []
  first_kind = kinds[0]
  # A 64 MB probe in --quick (still beyond the caches; the figures there are not the point).
  bandwidth = common.memory_bandwidth(64 if quick else 512)
  log(f"memory bandwidth: {bandwidth['bytes_per_second'] / 1e9:.1f} GB/s ({bandwidth['method']})")
  for facts in all_facts:
    if facts["kind"] != first_kind:
      continue
    num_samples, num_classes = facts["N"], facts["C"]
    mem = {"torch": {}, "ours": {}}
    if memory:
      ln_p, prior = common.make_ln_p(first_kind, num_samples, num_classes)
      log(f"memory probe N={num_samples} C={num_classes}")
      mem = measure_memory(ln_p, prior)
      del ln_p
    memory_rows.append({"N": num_samples, "C": num_classes, **mem})
    per_iteration.add(
        f"{num_samples:,}",
        num_classes,
        common.fmt_bytes(4 * num_samples * num_classes),
        f"{facts['torch_ms_per_iteration']:.2f}",
        f"{facts['ours_ms_per_iteration']:.2f}",
        f"{facts['torch_ms_per_iteration'] / facts['ours_ms_per_iteration']:.1f}x",
        f"{1e3 * streaming_seconds(num_samples, num_classes, bandwidth):.2f}",
        f"{facts['ours_ms_per_iteration'] / (1e3 * streaming_seconds(num_samples, num_classes, bandwidth)):.1f}x",
        common.fmt_bytes(mem["torch"].get("delta")),
        common.fmt_bytes(torch_footprint(num_samples, num_classes)),
        common.fmt_bytes(mem["ours"].get("delta")),
        common.fmt_bytes(facts.get("ours_xla_temp_bytes")),
    )
  method = next(
      (
          m[f]["method"]
          for m in memory_rows
          for f in ("torch", "ours")
          if m.get(f, {}).get("method")
      ),
      "not measured",
  )
  per_iteration.notes += [
      "ms/it: plain Sinkhorn iterations (ours: ott without momentum, convergence checks every "
      "10 it included), timed over a few iterations.",
      f"peak RSS delta: growth of the resident set during one solve in a fresh process, beyond "
      f"the loaded ln P ({method}); tracemalloc cannot see either framework's buffers.",
      "ours XLA temp: temp_size_in_bytes of the compiled executable's memory_analysis() "
      "(buffers XLA allocates beyond arguments and outputs).",
      "streaming bound: the two reads of the N x C cost a Sinkhorn iteration makes (the "
      "column update, then the row update: 2 x 4 N C bytes) at this machine's measured "
      f"read bandwidth, {bandwidth['bytes_per_second'] / 1e9:.1f} GB/s ({bandwidth['method']}).",
  ]
  tables.append(per_iteration)
  return {"tables": tables, "facts": all_facts, "memory": memory_rows}


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--quick", action="store_true", help="N=2,000, C=10 only (CI)")
  parser.add_argument(
      "--budget-s",
      type=float,
      default=None,
      help="seconds; a run estimated above it is extrapolated (ours: 3x it); "
      "default 60 (10 with --quick)",
  )
  parser.add_argument(
      "--threads",
      type=int,
      default=common.default_threads(),
      help="intra-op threads for both frameworks; 0: library defaults",
  )
  parser.add_argument("--kinds", default="", help=f"comma-separated subset of {KINDS}")
  parser.add_argument("--cells", default="", help="e.g. 10000x10,50000x10")
  parser.add_argument("--no-memory", action="store_true")
  parser.add_argument(
      "--expect-iterations",
      type=int,
      default=None,
      help="ours' steps + iterations at C = 1,000 from an earlier run at a smaller N, to size "
      "the runs of this one when it has no smaller N itself",
  )
  parser.add_argument(
      "--torch-tol-s", type=float, default=None, help="time cap of torch at tol (default budget)"
  )
  parser.add_argument(
      "--memory-probe", nargs=3, metavar=("FRAMEWORK", "LN_P", "PRIOR"), help=argparse.SUPPRESS
  )
  args = parser.parse_args(argv)
  common.configure_threads(args.threads)
  common.set_torch_threads(args.threads)
  if args.memory_probe:
    print(json.dumps(_memory_probe(*args.memory_probe)))
    return
  grid = (
      tuple(tuple(int(x) for x in cell.split("x")) for cell in args.cells.split(",") if cell)
      or None
  )
  kinds = tuple(k for k in args.kinds.split(",") if k) or None
  out = run(
      quick=args.quick,
      budget_s=args.budget_s,
      kinds=kinds,
      grid=grid,
      memory=not args.no_memory,
      torch_tol_s=args.torch_tol_s,
      expected_iterations=(
          {("late_em", 1000): args.expect_iterations} if args.expect_iterations else None
      ),
  )
  for table in out["tables"]:
    print(table.text())


if __name__ == "__main__":
  main()
