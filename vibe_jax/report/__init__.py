"""What a researcher reads after a run: metric writers, snapshots, plots and report.md.

writers.py     log.jsonl + TensorBoard event files, written while training (process 0)
snapshots.py   features / labels / prototypes at the first and last E-step (npz)
predictions.py each model's test-set predictions (predictions.npz)
plots.py       matplotlib figures from those records (Agg backend, no display)
report.py      report.md with the tables and the plots, from a finished or interrupted run
"""
