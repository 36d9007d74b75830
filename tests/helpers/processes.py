"""Runs a command as a multi-process JAX job on this machine's CPU (virtual devices, gloo)."""

import os
import socket
import subprocess
import time

import pytest

from helpers import ROOT


def cpu_environment(devices: int, env: dict | None = None) -> dict:
  """The environment of a JAX process on `devices` virtual CPU devices (and this process's
  other XLA flags)."""
  flags = f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count={devices}"
  return {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": flags.strip(), **(env or {})}


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def run_processes(
    command, logs, *, num_processes=2, devices=2, rank_env=lambda rank: {}, timeout=900
):
  """Runs `command` (an argv that takes --config.parallel.* overrides) as `num_processes`
  processes of `devices` devices each, joined through a local coordinator; returns each
  rank's stdout. Output goes to files under `logs` (pipes read one after the other can
  fill and stall a rank). A rank that fails, or a job past `timeout` seconds, fails the
  test with every rank's stderr (the other ranks killed: -9)."""
  port = free_port()
  os.makedirs(logs, exist_ok=True)
  paths = [
      (os.path.join(logs, f"out{rank}.log"), os.path.join(logs, f"err{rank}.log"))
      for rank in range(num_processes)
  ]
  processes = []
  for rank, (out, err) in enumerate(paths):
    with open(out, "w") as stdout, open(err, "w") as stderr:
      processes.append(
          subprocess.Popen(
              [
                  *command,
                  f"--config.parallel.coordinator_address=127.0.0.1:{port}",
                  f"--config.parallel.num_processes={num_processes}",
                  f"--config.parallel.process_id={rank}",
                  # A busy 2-core CI machine can starve the coordinator past JAX's 100 s.
                  "--config.parallel.heartbeat_timeout_s=900",
              ],
              cwd=ROOT,
              env=cpu_environment(devices, rank_env(rank)),
              stdout=stdout,
              stderr=stderr,
              text=True,
          )
      )
  deadline = time.monotonic() + timeout
  while None in (codes := [process.poll() for process in processes]):
    if any(codes) or time.monotonic() > deadline:
      for process in processes:  # the others would wait for a failed rank for long
        process.kill()
        process.wait()
      break
    time.sleep(0.2)
  outputs = [(open(out).read(), open(err).read()) for out, err in paths]
  if any(process.returncode for process in processes):
    pytest.fail(
        "\n".join(
            f"rank {rank} exited {process.returncode}; stderr ends:\n{err[-3000:]}"
            for rank, (process, (_, err)) in enumerate(zip(processes, outputs))
        )
    )
  return [out for out, _ in outputs]
