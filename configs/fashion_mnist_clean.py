"""Fashion-MNIST without an attack (attack `none`): the clean-label reference of
docs/fashion_mnist.md. The same victim architecture and schedule, baseline head and VIBE as
configs/fashion_mnist_<attack>.py, trained on the clean labels, so "clean ACC within 3 points
of the same architecture trained on clean labels" is one command (ASR is not defined here).

  python main.py --config configs/fashion_mnist_clean.py --workdir runs/fmnist_clean
"""

from configs import common


def get_config(arg: str = common.DEFAULT_VARIANT):
  return common.fashion_mnist_config("none", arg)
