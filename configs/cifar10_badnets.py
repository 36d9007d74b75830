"""CIFAR-10, BadNets (the reference's 2x2 patch), 10 % poisoning, target 0.

Needs CIFAR-10 in dataset.data_dir: the original files (cifar-10-batches-py/ or
cifar-10-batches-bin/, README "Preparing the data sets") or a tfds-prepared directory; empty:
$TFDS_DATA_DIR, else ~/tensorflow_datasets.

  python main.py --config configs/cifar10_badnets.py --config.dataset.data_dir=~/data/cifar \
      --workdir runs/cifar10_badnets

Reference schedule (VIBE_SPEC.md section 2): 30,000 iterations, E-step every 1,000, batch 256,
SGD lr 1e-3 (prior 0.1), kappa = nu = 10; FM variants (fm_a, fm_f): 15,000 iterations, E-step
every 500, batch 1024, lr 0.01. Variants ss_a / ss_f need --config.backbone.checkpoint.
"""

from configs import common


def get_config(arg: str = common.DEFAULT_VARIANT):
  return common.paper_config("cifar10", "badnets", arg)
