import atexit
import os
import shutil
import sys
import tempfile

# Tests run on the CPU whatever the machine has. The repository root goes on sys.path for
# `configs.*`, `vibe_jax.*` and `main`, tests/ for the shared `helpers.*`.
os.environ.setdefault("JAX_PLATFORMS", "cpu")
_TESTS = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.dirname(_TESTS), _TESTS]

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
