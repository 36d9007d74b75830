import atexit
import os
import shutil
import sys
import tempfile

# Tests run on the CPU whatever the machine has; configs import as `configs.*`.
os.environ.setdefault("JAX_PLATFORMS", "cpu")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

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
