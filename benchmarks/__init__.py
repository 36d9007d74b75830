"""Speed and memory benchmarks of vibe_jax against PyTorch transcriptions of the reference.

Run them all with `python -m benchmarks` (writes benchmarks/RESULTS.md); `--quick` is the
CI smoke mode. Never imported by vibe_jax.
"""
