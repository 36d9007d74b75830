import os
import sys

# Tests run on the CPU whatever the machine has; configs import as `configs.*`.
os.environ.setdefault("JAX_PLATFORMS", "cpu")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
