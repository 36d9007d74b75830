"""Shared pieces of the benchmarks: threads, timing, memory, machine facts, tables, problems.

Import this module before jax or torch: `configure_threads` must set the thread environment
before either library starts its thread pools.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import platform
import resource
import subprocess
import sys
import time
from typing import Any, Callable, Sequence

import numpy as np

from vibe_jax.normalize import l2_normalize

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ----------------------------------------------------------------------------- threads


def configure_threads(threads: int) -> None:
  """Limits JAX (XLA CPU) and PyTorch to `threads` intra-op threads; 0 keeps both defaults.

  Must run before jax / torch are imported. PyTorch gets `torch.set_num_threads(threads)`
  (and OMP_NUM_THREADS); XLA has no thread-count flag, so threads=1 turns off its
  multi-threaded Eigen kernels (matmul, conv) with --xla_cpu_multi_thread_eigen=false.
  The two then use the same cores, so a ratio compares code, not thread pools: on a
  machine shared with other jobs PyTorch's OpenMP pool spin-waits and runs several times
  slower with 2 threads than with 1.
  """
  os.environ["VIBE_BENCH_THREADS"] = str(threads)  # inherited by the probe subprocesses
  if threads <= 0:
    return
  for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[name] = str(threads)
  flags = os.environ.get("XLA_FLAGS", "")
  if threads == 1 and "xla_cpu_multi_thread_eigen" not in flags:
    os.environ["XLA_FLAGS"] = (flags + " --xla_cpu_multi_thread_eigen=false").strip()
  if "torch" in sys.modules:
    sys.modules["torch"].set_num_threads(threads)


def default_threads() -> int:
  """1 (both frameworks single-threaded: the machine is shared), or what a parent set."""
  return int(os.environ.get("VIBE_BENCH_THREADS", "1"))


def set_torch_threads(threads: int) -> None:
  import torch

  if threads > 0:
    torch.set_num_threads(threads)


# ----------------------------------------------------------------------------- timing


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
  """Wall seconds of one call and its result (the caller blocks on async results)."""
  start = time.perf_counter()
  result = fn()
  return time.perf_counter() - start, result


def block(tree):
  import jax

  return jax.block_until_ready(tree)


# ----------------------------------------------------------------------------- memory


def _status_kib(field: str) -> int:
  with open("/proc/self/status") as f:
    for line in f:
      if line.startswith(field + ":"):
        return int(line.split()[1])
  raise KeyError(field)


class PeakRss:
  """Peak resident-set growth of this process over a block of code.

  Resets the kernel's high-water mark (write '5' to /proc/self/clear_refs, Linux >= 4.0)
  and reads VmHWM after the block, so the figure is the peak of *this* block minus the RSS
  at its start: the solver's working memory beyond its inputs. Where the reset is not
  allowed it falls back to the ru_maxrss delta (a lower bound if an earlier peak was
  higher). Run it in a fresh process: a warm allocator can hide new allocations.
  """

  def __enter__(self):
    import gc

    gc.collect()
    try:
      with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
      self.method = "VmHWM after clear_refs"
    except OSError:
      self.method = "ru_maxrss delta"
    self.start_rss = _status_kib("VmRSS") * 1024
    self.start_max = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return self

  def __exit__(self, *exc):
    if self.method.startswith("VmHWM"):
      self.peak = _status_kib("VmHWM") * 1024
    else:
      self.peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    self.delta = max(self.peak - self.start_rss, 0)
    return False


def read_probe(array) -> Callable[[], Any]:
  """A call that reads `array` once from memory: a jitted jnp.sum (XLA:CPU, the threads the
  benchmark configured), blocked. The streaming bound's read; compiled before it returns."""
  import jax
  import jax.numpy as jnp

  jitted = jax.jit(jnp.sum)
  read = lambda: block(jitted(array))
  read()
  return read


def memory_bandwidth(megabytes: int = 512, repeats: int = 5) -> dict:
  """Read bandwidth of this machine in bytes/s: the best of `repeats` sums of a float32
  array far larger than the caches, by numpy and by `read_probe`; the faster of the two is
  the streaming bound's bandwidth."""
  import jax.numpy as jnp

  array = np.ones(megabytes * 2**20 // 4, np.float32)
  best = {}
  jax_read = read_probe(jnp.asarray(array))
  for name, fn in (("numpy sum", lambda: array.sum()), ("jax sum", jax_read)):
    best[name] = min(timed(fn)[0] for _ in range(repeats))
  name = min(best, key=best.get)
  details = ", ".join(f"{k} {array.nbytes / v / 1e9:.1f} GB/s" for k, v in best.items())
  return {
      "bytes_per_second": array.nbytes / best[name],
      "method": f"best of {repeats} reads of {megabytes} MB float32: {details}",
  }


def run_probe(module: str, args: Sequence[str], timeout: float = 1800) -> dict:
  """Runs `python -m module args` in a fresh interpreter (same thread environment) and
  returns the JSON object on its last stdout line. Fresh processes give clean ru_maxrss."""
  command = [sys.executable, "-m", module, *map(str, args)]
  result = subprocess.run(
      command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout, env=dict(os.environ)
  )
  if result.returncode != 0:
    raise RuntimeError(f"{' '.join(command)} failed:\n{result.stderr[-3000:]}")
  return json.loads(result.stdout.strip().splitlines()[-1])


def fmt_bytes(num: float | None) -> str:
  if num is None or (isinstance(num, float) and not np.isfinite(num)):
    return "-"
  for unit, scale in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
    if abs(num) >= scale:
      return f"{num / scale:.2f} {unit}" if unit == "GB" else f"{num / scale:.0f} {unit}"
  return f"{num:.0f} B"


def fmt_seconds(seconds: float | None, extrapolated: bool = False) -> str:
  if seconds is None:
    return "-"
  if seconds >= 3600:
    text = f"{seconds / 3600:.1f} h"
  elif seconds >= 100:
    text = f"{seconds:.0f} s"
  elif seconds >= 1:
    text = f"{seconds:.2f} s"
  else:
    text = f"{seconds * 1e3:.1f} ms"
  return text + (" (extrap.)" if extrapolated else "")


# ----------------------------------------------------------------------------- machine


def machine_info() -> dict[str, str]:
  """CPU model, cores, load, library versions: the header of RESULTS.md."""
  cpu = platform.processor() or "unknown"
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.startswith("model name"):
          cpu = line.split(":", 1)[1].strip()
          break
  except OSError:
    pass
  info = {
      "date": datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
      "cpu": cpu,
      "cores": str(os.cpu_count()),
      "python": platform.python_version(),
      "platform": platform.platform(),
  }
  try:
    with open("/proc/meminfo") as f:
      info["memory"] = fmt_bytes(int(f.readline().split()[1]) * 1024)
  except OSError:
    pass
  try:
    info["load average (1, 5, 15 min) at start"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
  except OSError:
    pass
  import importlib.metadata as md

  for name in ("jax", "jaxlib", "flax", "optax", "ott-jax", "torch", "numpy"):
    try:
      info[name] = md.version(name)
    except md.PackageNotFoundError:
      info[name] = "not installed"
  info["threads (jax / torch)"] = (
      (os.environ.get("XLA_FLAGS", "") or "default")
      + " / "
      + (os.environ.get("OMP_NUM_THREADS", "default"))
  )
  return info


def load_average() -> str:
  try:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())
  except OSError:
    return "?"


# ----------------------------------------------------------------------------- tables


@dataclasses.dataclass
class Table:
  title: str
  columns: list[str]
  rows: list[list[str]] = dataclasses.field(default_factory=list)
  notes: list[str] = dataclasses.field(default_factory=list)

  def add(self, *cells) -> None:
    self.rows.append([str(c) for c in cells])

  def markdown(self) -> str:
    lines = [
        f"### {self.title}",
        "",
        "| " + " | ".join(self.columns) + " |",
        "|" + "|".join("---" for _ in self.columns) + "|",
    ]
    lines += ["| " + " | ".join(row) + " |" for row in self.rows]
    if self.notes:
      lines += [""] + [f"- {note}" for note in self.notes]
    return "\n".join(lines) + "\n"

  def text(self) -> str:
    widths = [
        max(len(c), *(len(r[i]) for r in self.rows)) if self.rows else len(c)
        for i, c in enumerate(self.columns)
    ]
    line = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths))
    out = [self.title, line(self.columns), line(["-" * w for w in widths])]
    out += [line(r) for r in self.rows]
    out += [f"  * {note}" for note in self.notes]
    return "\n".join(out) + "\n"


# ----------------------------------------------------------------------------- problems


def _log_softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
  x = x - x.max(axis=axis, keepdims=True)
  return x - np.log(np.exp(x).sum(axis=axis, keepdims=True))


def concentration(num_classes: int) -> float:
  """The reference's kappa = nu: 10 for 10-class sets, 20 for the 100/1000-class ones."""
  return 10.0 if num_classes <= 10 else 20.0


def clustered_features(
    num_samples: int,
    num_classes: int,
    dim: int,
    seed: int,
    noise: float = 0.1,
    spread: float | None = None,
):
  """A synthetic clustered feature set: (features (N, D) float32 unit-norm, true labels,
  given labels with a fraction `noise` flipped to another class)."""
  rng = np.random.default_rng(seed)
  means = l2_normalize(rng.standard_normal((num_classes, dim))).astype(np.float32)
  true = rng.integers(num_classes, size=num_samples)
  # Per-coordinate spread: a nearest-mean classifier is right on most but not all samples.
  spread = (0.9 / np.sqrt(dim)) if spread is None else spread
  features = means[true] + spread * rng.standard_normal((num_samples, dim)).astype(np.float32)
  features = l2_normalize(features).astype(np.float32)
  given = true.copy()
  flip = rng.random(num_samples) < noise
  given[flip] = (true[flip] + rng.integers(1, num_classes, size=flip.sum())) % num_classes
  return features, true.astype(np.int32), given.astype(np.int32)


def make_ln_p(
    kind: str, num_samples: int, num_classes: int, seed: int = 0, dim: int = 128
) -> tuple[np.ndarray, np.ndarray]:
  """(ln P (N, C) float32, prior (C,) float32) for an E-step benchmark.

  kind 'dirichlet': ln of Dirichlet(1) rows (the spec's "random problems"; easy for
    Sinkhorn). kind 'late_em': a late-EM-iteration problem on a synthetic clustered feature
    set: ln p(l|x) = log_softmax(kappa cos(v, mu_z[l]) + ln prior) with mu_z the class
    centroids under the given labels, plus a learned-looking ln p(y_i|l) with 10 % label
    noise (0.9 on the diagonal, 0.1 spread over the others). Peaked: plain Sinkhorn needs
    thousands of iterations at tol 1e-4.
  The prior is softmax(0.02 pi), pi ~ N(0, 1), as the reference initialises it.
  """
  rng = np.random.default_rng(seed + 1)
  prior = np.exp(_log_softmax(0.02 * rng.standard_normal(num_classes))).astype(np.float32)
  if kind == "dirichlet":
    ln_p = np.log(rng.dirichlet(np.ones(num_classes), size=num_samples) + 1e-30)
    return ln_p.astype(np.float32), prior
  if kind != "late_em":
    raise ValueError(f"unknown problem kind {kind!r}; known: ['dirichlet', 'late_em']")
  noise = 0.1
  features, _, given = clustered_features(num_samples, num_classes, dim, seed, noise)
  one_hot_sums = np.zeros((num_classes, dim), np.float64)
  np.add.at(one_hot_sums, given, features)
  mu_z = l2_normalize(one_hot_sums).astype(np.float32)
  ln_y_given_l = np.full((num_classes, num_classes), np.log(noise / (num_classes - 1)), np.float32)
  np.fill_diagonal(ln_y_given_l, np.log(1.0 - noise))
  kappa = concentration(num_classes)
  ln_prior = np.log(prior)
  ln_p = np.empty((num_samples, num_classes), np.float32)
  for start in range(0, num_samples, 16384):  # chunks keep the float64 temporaries small
    stop = min(start + 16384, num_samples)
    logits = kappa * (features[start:stop] @ mu_z.T) + ln_prior
    ln_p[start:stop] = _log_softmax(logits) + ln_y_given_l[given[start:stop]]
  return ln_p, prior
