"""`python -m benchmarks`: every benchmark, tables printed and written to RESULTS.md."""

from benchmarks.run_all import main

main()
