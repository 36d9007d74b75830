"""Memory plan for the E-step on ImageNet-1k (N = 1.28M, C = 1000), and a sharded check.

  python -m benchmarks.memory_plan

Runs in a subprocess with 8 virtual CPU devices (--xla_force_host_platform_device_count=8):
  1. compiles (does not run) sinkhorn_pseudo_labels for ln P of shape (1,280,000, 1000)
     on 1 device and sharded on N over 8 devices, and reads XLA's buffer assignment
     (memory_analysis: arguments, outputs, temporaries per device) and the collectives;
  2. runs a small problem (16,000 x 100) both ways and compares the pseudo-labels.
"""

from __future__ import annotations

import json
import os
import re
import sys

from benchmarks import common

IMAGENET_SAMPLES, IMAGENET_CLASSES = 1_280_000, 1_000
DEVICE_COUNTS = (1, 8)
CHECK_SHAPE = (16_000, 100)
# Feature widths of the ImageNet-1k backbones: the reference's frozen All4One ResNet-50 and
# the FM variant's DINOv2 ViT-g/14.
FEATURE_DIMS = {"ResNet-50 (2048-d)": 2048, "DINOv2 ViT-g/14 (1536-d)": 1536}
GPU_MEMORY = 80e9


def _probe() -> dict:
  """The body of the subprocess (8 virtual devices already configured)."""
  import jax
  import jax.numpy as jnp
  import numpy as np
  from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
  from vibe_jax.em import estep

  static = dict(
      threshold=1e-4, max_iterations=10_001, fixed_iterations=False, adaptive_momentum=True
  )
  out = {"compiled": []}
  for devices in DEVICE_COUNTS:
    mesh = Mesh(np.asarray(jax.devices()[:devices]), ("data",))
    ln_p = jax.ShapeDtypeStruct(
        (IMAGENET_SAMPLES, IMAGENET_CLASSES), jnp.float32, sharding=NamedSharding(mesh, P("data"))
    )
    prior = jax.ShapeDtypeStruct(
        (IMAGENET_CLASSES,), jnp.float32, sharding=NamedSharding(mesh, P())
    )
    # The warm-started solve the EM loop runs from its second E-step on (L-BFGS included).
    compiled = estep.sinkhorn_pseudo_labels.lower(
        ln_p, prior, 25.0, init_g=prior, **static
    ).compile()
    stats = compiled.memory_analysis()
    text = compiled.as_text()
    out["compiled"].append(
        {
            "devices": devices,
            "argument": int(stats.argument_size_in_bytes),
            "output": int(stats.output_size_in_bytes),
            "temp": int(stats.temp_size_in_bytes),
            "all_reduce": len(re.findall(r" all-reduce\(", text)),
            "all_gather": len(re.findall(r" all-gather\(", text)),
            "all_to_all": len(re.findall(r" all-to-all\(", text)),
        }
    )

  num_samples, num_classes = CHECK_SHAPE
  ln_p, prior = common.make_ln_p("late_em", num_samples, num_classes)
  single, single_result = estep.sinkhorn_pseudo_labels(jnp.asarray(ln_p), jnp.asarray(prior), 25.0)
  # Warm-started from the 1-device g, on a drifted problem, both ways.
  drifted = ln_p + 0.05 * np.random.default_rng(1).standard_normal(ln_p.shape).astype(np.float32)
  warm_single, _ = estep.sinkhorn_pseudo_labels(
      jnp.asarray(drifted), jnp.asarray(prior), 25.0, init_g=single_result.g
  )
  mesh = Mesh(np.asarray(jax.devices()[:8]), ("data",))
  sharded_ln_p = jax.device_put(ln_p, NamedSharding(mesh, P("data")))
  sharded_prior = jax.device_put(prior, NamedSharding(mesh, P()))
  sharded, sharded_result = estep.sinkhorn_pseudo_labels(sharded_ln_p, sharded_prior, 25.0)
  warm_sharded, _ = estep.sinkhorn_pseudo_labels(
      jax.device_put(drifted, NamedSharding(mesh, P("data"))),
      sharded_prior,
      25.0,
      init_g=jax.device_put(single_result.g, NamedSharding(mesh, P())),
  )
  out["check"] = {
      "shape": [num_samples, num_classes],
      "agreement": float(np.mean(np.asarray(single) == np.asarray(sharded))),
      "warm_agreement": float(np.mean(np.asarray(warm_single) == np.asarray(warm_sharded))),
      "iterations_1": int(single_result.iterations),
      "iterations_8": int(sharded_result.iterations),
      "labels_sharding": str(sharded.sharding.spec),
  }
  return out


def measure() -> dict:
  env_flags = os.environ.get("XLA_FLAGS", "")
  os.environ["XLA_FLAGS"] = (env_flags + " --xla_force_host_platform_device_count=8").strip()
  try:
    return common.run_probe("benchmarks.memory_plan", ["--probe"])
  finally:
    os.environ["XLA_FLAGS"] = env_flags


def tables(
    plan: dict, estep_facts: list[dict] | None = None, estep_memory: list[dict] | None = None
) -> list:
  gb = lambda x: f"{x / 1e9:.2f} GB"
  ln_p_bytes = 4 * IMAGENET_SAMPLES * IMAGENET_CLASSES
  compiled = {c["devices"]: c for c in plan["compiled"]}
  one = compiled[1]
  table = common.Table(
      f"E-step memory plan, ImageNet-1k (N = {IMAGENET_SAMPLES:,}, C = {IMAGENET_CLASSES}, "
      "float32), from XLA's buffer assignment of the compiled solve",
      ["item", "1 device", "8 devices (ln P sharded on N), per device"],
  )
  per = lambda key: [gb(compiled[d][key]) for d in DEVICE_COUNTS]
  table.add("ln P (argument)", *per("argument"))
  table.add("Sinkhorn temporaries (XLA temp)", *per("temp"))
  table.add("labels + stats + g (output)", *per("output"))
  total = {
      d: compiled[d]["argument"] + compiled[d]["temp"] + compiled[d]["output"]
      for d in DEVICE_COUNTS
  }
  table.add("**E-step solve peak**", *[f"**{gb(total[d])}**" for d in DEVICE_COUNTS])
  warm_state = 4 * IMAGENET_CLASSES
  table.add(
      "warm-start state: g (C floats, replicated; in the training checkpoint)",
      f"{warm_state / 1e3:.0f} KB",
      f"{warm_state / 1e3:.0f} KB",
  )
  table.add(
      "building ln P (em.inference.ln_joint: batch outputs + their concatenation)",
      gb(2 * ln_p_bytes),
      gb(2 * ln_p_bytes / 8),
  )
  for name, dim in FEATURE_DIMS.items():
    table.add(
        f"cached features, {name}",
        gb(4 * IMAGENET_SAMPLES * dim),
        gb(4 * IMAGENET_SAMPLES * dim / 8),
    )
  worst_features = 4 * IMAGENET_SAMPLES * max(FEATURE_DIMS.values())
  peak = worst_features + max(total[1], 2 * ln_p_bytes)
  table.add(
      "**whole E-step, worst case (2048-d features resident)**",
      f"**{gb(peak)}**",
      f"**{gb(peak / 8)}**",
  )
  table.notes += [
      f"temp / ln P = {one['temp'] / ln_p_bytes:.2f}: the negated cost matrix -ln P (kept "
      "for the whole loop) and one N x C scratch: in the log domain (L-BFGS, each segment's "
      "error check) the (f + g - C) / eps that ott materialises, in kernel mode the kernel K "
      "(the plan at the segment's start), never both at once (K is built inside its branch); "
      "the labels are argmax(ln P + g). The compiled solve is "
      "the warm-started one with its L-BFGS pre-solve: the semi-dual's gradient is written "
      "by hand (a custom VJP), so L-BFGS keeps C-vectors only (20 pairs of history, 160 KB) "
      "and no N x C residual; f (N floats) is recomputed from g, never carried between "
      "E-steps.",
      f"Fits one 80 GB GPU: {'yes' if peak < GPU_MEMORY else 'NO'} ({gb(peak)} at most, "
      f"{100 * peak / GPU_MEMORY:.0f} %; XLA's GPU fusion may differ a little from the CPU "
      "buffer assignment used here).",
      "Sharded: ln P split on N (PartitionSpec('data')), prior replicated; per Sinkhorn "
      f"iteration XLA inserts all-reduces of C-vectors only ({compiled[8]['all_reduce']} "
      f"all-reduce, {compiled[8]['all_gather']} all-gather, {compiled[8]['all_to_all']} "
      "all-to-all ops in the 8-device program): the row update is local, the column "
      "logsumexp over N is a partial logsumexp per device plus an all-reduce of 1,000 "
      "floats; labels stay sharded.",
      f"Sharded run check ({plan['check']['shape'][0]:,} x {plan['check']['shape'][1]}, 8 "
      f"virtual CPU devices): pseudo-label agreement with the 1-device run "
      f"{100 * plan['check']['agreement']:.3f} % (warm-started on a drifted problem: "
      f"{100 * plan['check']['warm_agreement']:.3f} %), iterations "
      f"{plan['check']['iterations_1']} "
      f"(1 device) vs {plan['check']['iterations_8']} (8), labels sharded as "
      f"{plan['check']['labels_sharding']}.",
  ]
  out = [table]
  if estep_facts:
    model = common.Table(
        "Per-element memory model, checked on this CPU (late-EM ln P): bytes per ln P entry",
        [
            "N",
            "C",
            "ours XLA temp / (4 N C)",
            "ours peak RSS delta / (4 N C)",
            "torch peak RSS delta / (4 N C)",
        ],
    )
    memory = {(m["N"], m["C"]): m for m in (estep_memory or [])}
    for facts in estep_facts:
      if facts["kind"] != estep_facts[0]["kind"]:
        continue
      size = 4 * facts["N"] * facts["C"]
      mem = memory.get((facts["N"], facts["C"]), {})
      ratio = lambda x: "-" if x is None else f"{x / size:.2f}"
      model.add(
          f"{facts['N']:,}",
          facts["C"],
          ratio(facts.get("ours_xla_temp_bytes")),
          ratio(mem.get("ours", {}).get("delta")),
          ratio(mem.get("torch", {}).get("delta")),
      )
    model.notes.append(
        "A ratio of 2.0 means two N x C float32 buffers beyond ln P itself; "
        "small problems are dominated by fixed runtime overheads."
    )
    out.append(model)
  return out


def main(argv=None) -> None:
  argv = sys.argv[1:] if argv is None else argv
  if argv == ["--probe"]:
    print(json.dumps(_probe()))
    return
  for table in tables(measure()):
    print(table.text())


if __name__ == "__main__":
  main()
