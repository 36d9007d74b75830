"""VIBE-F's E-step against the feature norm |v|: the mechanism behind vibe.feature_likelihood.

  python -m benchmarks.likelihood [--config digits_badnets] [--norms 0.1,0.3,1,3,10]
  python -m benchmarks.likelihood --variant ss_f --checkpoint runs/digits_ssl/backbone

No training: the training set's features, L2-normalised, are scaled to each norm in --norms
(with --checkpoint, a fine-tuned variant's backbone features, also as the backbone gives
them: the row "as given"), the prototypes mu_z = mu_y sit at the class centroids under the
given labels (as prepare.ModelFactory starts a run), and two E-steps run as in
em.loop.run_estep: the first with the uniform likelihood (features alone, the same for every
form), the second with the form's likelihood. Printed per norm: the share of poisoned
samples the second E-step gives back their true label ("restored") and of all pseudo-labels
that are correct, for variant A, F with the reference's un-normalised v, and F with v/|v|.

Why it matters: a fine-tuned backbone's features are not normalised, and with a large |v|
the normaliser over y in p(y|l,x) is dominated by argmax_y <mu_y, v>, which holds poisoned
samples at their given (target) label (docs/likelihood.md).
"""

from __future__ import annotations

import argparse
import importlib
import tempfile
import time

import jax.numpy as jnp
import numpy as np
from flax import nnx

from vibe_jax import metrics, parallel, prepare
from vibe_jax.em import estep
from vibe_jax.models.vibe import VibeHead, class_centroids
from vibe_jax.normalize import l2_normalize

# (row name, likelihood, feature_likelihood)
FORMS = (
    ("A", "a", "reference"),
    ("F reference (v)", "f", "reference"),
    ("F normalized (v/|v|)", "f", "normalized"),
)


def second_estep_diagnostics(
    config, training, norm: float | None
) -> dict[tuple[str, str], dict[str, float]]:
  """Per form: pseudo-label diagnostics of the uniform first E-step and the one after it;
  features scaled to `norm`, or as given (None)."""
  features = jnp.asarray(training.features, jnp.float32)
  if norm is not None:
    features = l2_normalize(features) * norm
  given = jnp.asarray(training.given_labels)
  centroids = class_centroids(features, given, training.num_classes)
  out = {}
  for name, likelihood, feature_likelihood in FORMS:
    head = VibeHead(
        training.num_classes,
        features.shape[1],
        kappa=config.vibe.kappa,
        nu=config.vibe.nu,
        prior_temperature=config.vibe.prior_temperature,
        likelihood=likelihood,
        rngs=nnx.Rngs(config.seed),
        feature_likelihood=feature_likelihood,
        mu_z=centroids,
        mu_y=centroids,
    )
    for first in (True, False):
      labels, _ = estep.sinkhorn_pseudo_labels(
          head.ln_joint(features, given, first),
          jnp.exp(head.ln_prior()),
          config.estep.lam,
          threshold=config.estep.threshold,
          max_iterations=config.estep.max_iterations,
      )
      record = metrics.pseudo_label_diagnostics(
          np.asarray(labels), training.given_labels, training.true_labels, training.poison_mask
      )
      out[(name, "first" if first else "second")] = record
  return out


def main(argv: list[str] | None = None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--config", default="digits_badnets", help="a module of configs/")
  parser.add_argument("--variant", default="f", help="f, or ss_f with --checkpoint")
  parser.add_argument("--checkpoint", default="", help="backbone.checkpoint of an ss variant")
  parser.add_argument("--norms", default="0.1,0.3,1,3,10")
  args = parser.parse_args(argv)
  config = importlib.import_module(f"configs.{args.config}").get_config(args.variant)
  config.backbone.checkpoint = args.checkpoint or config.backbone.checkpoint
  mesh = parallel.make_mesh(1)
  start = time.perf_counter()
  with tempfile.TemporaryDirectory() as workdir:
    training, _ = prepare.load_sets(config, workdir, mesh)
  print(
      f"{args.config}:{args.variant}: {len(training.given_labels)} training samples, "
      f"{int(training.poison_mask.sum())} poisoned; kappa {config.vibe.kappa}, nu "
      f"{config.vibe.nu}, lambda {config.estep.lam}; prototypes at the centroids, no training."
  )
  print("\n| |v| | first E-step (all) | " + " | ".join(n for n, _, _ in FORMS) + " |")
  print("|---|---|" + "---|" * len(FORMS))
  norms = [float(n) for n in args.norms.split(",")]
  if args.checkpoint:
    norms.append(None)
  for norm in norms:
    result = second_estep_diagnostics(config, training, norm)
    if norm is None:
      lengths = np.linalg.norm(training.features, axis=1)
      label = f"as given ({lengths.min():.1f}-{np.median(lengths):.1f}-{lengths.max():.1f})"
    else:
      label = f"{norm:g}"
    cell = lambda r: f"{r['poison_restored']:.3f} / {r['agree_true']:.3f}"
    cells = [cell(result[(n, "second")]) for n, _, _ in FORMS]
    print(f"| {label} | {cell(result[(FORMS[0][0], 'first')])} | " + " | ".join(cells) + " |")
  print(
      "\ncells: poisoned samples restored / pseudo-labels correct, at the second E-step "
      "(the first, uniform likelihood, for comparison); as given: |v| min-median-max. "
      f"{time.perf_counter() - start:.0f} s."
  )


if __name__ == "__main__":
  main()
