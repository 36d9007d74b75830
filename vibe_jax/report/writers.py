"""Metric records to JSON lines and TensorBoard event files, from process 0 only.

Each record is a dict {"step": int, "kind": "train" | "estep" | "eval", <name>: value, ...}
that `loop.fit` emits. log.jsonl keeps every record verbatim (the report reads it back),
as standard JSON: a non-finite value is written as null, not as NaN or Infinity;
TensorBoard receives each numeric value as the scalar `<kind>/<name>` at `step`, one
event directory per phase (workdir/tensorboard/<phase>), so baseline and VIBE curves of
the same tag overlay in one chart.

The event files are written with tensorboardX's event writer and protos, imported without
tensorboardX's package __init__: that imports SummaryWriter, and with it torch whenever
torch is installed, seconds at the start of every run for nothing a scalar needs.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import json
import math
import numbers
import os
import sys
import time
from types import ModuleType
from typing import Callable

import jax

from vibe_jax import files

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


@functools.cache
def _tensorboardx_modules() -> tuple[ModuleType, ModuleType, ModuleType]:
  """tensorboardX's event_file_writer, event_pb2 and summary_pb2, none of which imports
  torch, loaded under a bare stand-in for the package when tensorboardX is not imported
  yet. The stand-in is then dropped, so a later `import tensorboardX` runs in full."""
  stand_in = "tensorboardX" not in sys.modules
  if stand_in:
    spec = importlib.util.find_spec("tensorboardX")
    sys.modules["tensorboardX"] = importlib.util.module_from_spec(spec)  # __init__ not run
  try:
    return tuple(
        importlib.import_module(f"tensorboardX.{name}")
        for name in ("event_file_writer", "proto.event_pb2", "proto.summary_pb2")
    )
  finally:
    if stand_in:
      del sys.modules["tensorboardX"]


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
    self._events = {}

  def writer(self, phase: str) -> Callable[[dict], None]:
    """A `log` callback for `loop.fit` that tags every record with `phase`."""

    def write(record: dict) -> None:
      self.write(phase, record)

    return write

  def write(self, phase: str, record: dict) -> None:
    if not self._primary:
      return
    line = json.dumps(files.json_safe({"phase": phase, **record}), allow_nan=False)
    self._jsonl.write(line + "\n")
    self._jsonl.flush()
    if self._tensorboard:
      self._write_scalars(phase, int(record["step"]), scalars_of(record))

  def _write_scalars(self, phase: str, step: int, scalars: dict[str, float]) -> None:
    """One event holding the record's scalars, in workdir/tensorboard/<phase>/events.*."""
    event_file_writer, event_pb2, summary_pb2 = _tensorboardx_modules()
    if phase not in self._events:
      directory = os.path.join(self._workdir, "tensorboard", phase)
      os.makedirs(directory, exist_ok=True)
      self._events[phase] = event_file_writer.EventsWriter(os.path.join(directory, "events"))
    values = [summary_pb2.Summary.Value(tag=tag, simple_value=v) for tag, v in scalars.items()]
    if values:
      self._events[phase].write_event(
          event_pb2.Event(
              wall_time=time.time(), step=step, summary=summary_pb2.Summary(value=values)
          )
      )
    self._events[phase].flush()

  def close(self) -> None:
    for events in self._events.values():
      events.close()
    self._events = {}
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
