import atexit
import os
import shutil
import sys
import tempfile

# Tests run on the CPU whatever the machine has. The repository root goes first on sys.path
# for `configs.*`, `vibe_jax.*` and `main`; tests/ last, for the shared `helpers.*` (last, so
# that a folder mirroring vibe_jax never shadows a module; the one for vibe_jax/ssl is ssl_
# since `python -m pytest` run inside tests/ puts tests/ first, and the ssl module with it).
os.environ.setdefault("JAX_PLATFORMS", "cpu")
_TESTS = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(_TESTS))
sys.path.append(_TESTS)

# One XLA compilation cache for the whole session: many tests build the same programs (the
# same digits shapes under another attack, one data set's configs), and a test's
# subprocesses and the xdist workers inherit this variable from the process that set it.
# Fresh per session, so a run never depends on an earlier one; it cuts the suite by minutes.
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
  _cache = tempfile.mkdtemp(prefix="vibe_jax_test_xla_cache_")
  os.environ["JAX_COMPILATION_CACHE_DIR"] = _cache
  os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
  os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")
  atexit.register(shutil.rmtree, _cache, ignore_errors=True)

# The tests' programs are small, so compiling them is much of the suite's CPU time, and
# XLA:CPU's LLVM settings trade compile time against run time. Measured (CPU seconds, 2 cores,
# same load): the quick tier (compiles, runs little) 208 at LLVM level 0 without the expensive
# passes against 246 at level 1 without them; the slow tier 944 at level 0 against 755 at
# level 1, whose vectorised loops the end-to-end runs spend thousands of steps in (one digits
# run 48.7 -> 30.8 CPU-s; the default level 3: 34.6). So the quick tier (-m "not slow") compiles
# at level 0 and any run with the slow tests at level 1. Results agree within every tolerance
# (the demo table to the digit). Set before any test module initialises JAX; subprocesses
# and xdist workers inherit it.
def _llvm_flags(markexpr: str) -> str:
  level = 0 if markexpr.replace(" ", "") == "notslow" else 1
  return f"--xla_backend_optimization_level={level} --xla_llvm_disable_expensive_passes=true"


def pytest_configure(config):
  if "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
    flags = _llvm_flags(config.getoption("markexpr") or "")
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {flags}".strip()


# The longest tests (minutes, mostly compiling in several processes), started first so that
# they do not finish last: make test's two workers split the queue in halves and a worker
# that runs out steals from the end of the other's half.
_LONGEST_FIRST = (
    "test_pretrain_pipeline.py",
    "test_multiprocess.py",
    "test_devices.py",
    "test_digits.py",
)


def pytest_collection_modifyitems(items):
  """The longest tests, then the other slow ones, then the rest; each group in its order."""

  def rank(item):
    name = item.path.name
    if name in _LONGEST_FIRST and item.path.parent.name == "e2e":
      return _LONGEST_FIRST.index(name)
    return len(_LONGEST_FIRST) + (item.get_closest_marker("slow") is None)

  items.sort(key=rank)
