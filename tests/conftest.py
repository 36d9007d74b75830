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

# The tests' programs are small, so compiling them is much of the suite's CPU time. XLA:CPU
# at LLVM optimisation level 1 without LLVM's expensive passes compiles in less time than the
# default (level 3) and, unlike level 0, still vectorises the loops the end-to-end runs spend
# thousands of steps in. Measured (CPU seconds, e2e/test_digits badnets a+f / ssl_/test_all4one):
# level 3: 34.6 / -, level 0 without expensive passes: 48.7 / 44.6, level 1 without: 30.8 /
# 50.8. The tests' results are the same within every tolerance (the demo table to the digit).
# Subprocesses inherit it.
_FAST_COMPILE = "--xla_backend_optimization_level=1 --xla_llvm_disable_expensive_passes=true"
if "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
  os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {_FAST_COMPILE}".strip()


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
