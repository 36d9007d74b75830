"""vibe_jax command line: train VIBE (and the undefended baseline) on a poisoned data set.

  python main.py --config configs/digits_badnets.py --workdir /tmp/digits_badnets
  python main.py --config configs/digits_badnets.py:f --config.train.steps=500 --workdir DIR
  python main.py --config configs/digits_badnets.py:ssl --mode pretrain --workdir DIR
"""

from absl import app, flags, logging
from ml_collections import config_flags

from vibe_jax import run
from vibe_jax.ssl import pretrain

config_flags.DEFINE_config_file(
    "config", None, "Experiment config file; `path.py:ARG` passes ARG (the variant) to "
    "get_config. Override any field with --config.a.b=value.", lock_config=True)
flags.DEFINE_string("workdir", None, "Directory for the resolved config, logs, caches and "
                    "results.json.")
flags.DEFINE_enum("mode", "train", ["train", "pretrain"], "What to do: 'train' VIBE, or "
                  "'pretrain' a backbone with SimCLR (writes WORKDIR/backbone).")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  if flags.FLAGS.mode == "pretrain":
    if not flags.FLAGS["verbosity"].present:
      logging.set_verbosity(logging.WARNING)  # orbax logs every checkpoint step at INFO
    pretrain.pretrain(flags.FLAGS.config, flags.FLAGS.workdir)
  else:
    run.train_and_evaluate(flags.FLAGS.config, flags.FLAGS.workdir)


if __name__ == "__main__":
  app.run(main)
