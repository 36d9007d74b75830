"""Metric records to JSON lines and TensorBoard event files, from process 0 only.

Each record is a dict {"step": int, "kind": "train" | "estep" | "eval", <name>: value, ...}
that `loop.fit` emits. log.jsonl keeps every record verbatim (the report reads it back);
TensorBoard receives each numeric value as the scalar `<kind>/<name>` at `step`, one
event directory per phase (workdir/tensorboard/<phase>), so baseline and VIBE curves of
the same tag overlay in one chart.
"""

from __future__ import annotations

import json
import math
import numbers
import os
from typing import Callable

import jax

__all__ = ["MetricWriter", "read_log", "scalars_of"]

_NOT_SCALARS = ("phase", "step", "kind")


def scalars_of(record: dict) -> dict[str, float]:
  """The TensorBoard scalars of one record: `<kind>/<name>` -> finite float value."""
  kind = record.get("kind", "metrics")
  scalars = {}
  for name, value in record.items():
    if name in _NOT_SCALARS or isinstance(value, bool) or not isinstance(value, numbers.Real):
      continue
    if math.isfinite(float(value)):
      scalars[f"{kind}/{name}"] = float(value)
  return scalars


class MetricWriter:
  """Appends to workdir/log.jsonl and writes workdir/tensorboard/<phase>/events.*.

  Only process 0 opens files; on the other processes every call is a no-op, so callers
  need not check the process index. Files are flushed after every record: an interrupted
  run keeps all it logged.
  """

  def __init__(self, workdir: str, tensorboard: bool = True):
    self._workdir = workdir
    self._primary = jax.process_index() == 0
    self._tensorboard = tensorboard
    self._jsonl = open(os.path.join(workdir, "log.jsonl"), "a") if self._primary else None
    self._summaries = {}

  def writer(self, phase: str) -> Callable[[dict], None]:
    """A `log` callback for `loop.fit` that tags every record with `phase`."""

    def write(record: dict) -> None:
      self.write(phase, record)

    return write

  def write(self, phase: str, record: dict) -> None:
    if not self._primary:
      return
    self._jsonl.write(json.dumps({"phase": phase, **record}) + "\n")
    self._jsonl.flush()
    if self._tensorboard:
      summary = self._summary(phase)
      for tag, value in scalars_of(record).items():
        summary.add_scalar(tag, value, global_step=int(record["step"]))
      summary.flush()

  def _summary(self, phase: str):
    if phase not in self._summaries:
      # Imported on first use: tensorboardX imports torch when it is installed (~1 s).
      from tensorboardX import SummaryWriter

      self._summaries[phase] = SummaryWriter(os.path.join(self._workdir, "tensorboard", phase))
    return self._summaries[phase]

  def close(self) -> None:
    for summary in self._summaries.values():
      summary.close()
    self._summaries = {}
    if self._jsonl is not None:
      self._jsonl.close()
      self._jsonl = None

  def __enter__(self) -> "MetricWriter":
    return self

  def __exit__(self, *exc_info) -> None:
    self.close()


def read_log(path: str) -> list[dict]:
  """log.jsonl's records, in order, one per (phase, kind, step).

  A run killed mid-write leaves a torn last line: it is skipped. A resumed run logs again
  the iterations after its checkpoint: the later record of a (phase, kind, step) wins, at
  the place of the first.
  """
  records: dict[tuple, dict] = {}
  with open(path) as f:
    for line in f:
      try:
        record = json.loads(line)
      except json.JSONDecodeError:
        continue
      if isinstance(record, dict) and {"phase", "kind", "step"} <= set(record):
        records[(record["phase"], record["kind"], record["step"])] = record
  return list(records.values())
