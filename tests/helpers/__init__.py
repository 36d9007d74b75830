"""Helpers shared by the tests (imported as `helpers.*`: tests/conftest.py puts tests/ on
sys.path)."""

import os

# The repository root: main.py, configs/, vibe_jax/.
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
