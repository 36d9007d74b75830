"""Fashion-MNIST, badnets, 10 % poisoning, target 0: the undefended deep victim, the baseline
head and VIBE on frozen pixel features (common.fashion_mnist_config; docs/fashion_mnist.md).

  apt-get install dataset-fashion-mnist     # once: the IDX files, offline
  python main.py --config configs/fashion_mnist_badnets.py --workdir runs/fmnist_badnets
  python main.py --config configs/fashion_mnist_badnets.py --mode pretrain --workdir runs/fmnist_ssl
  python main.py --config configs/fashion_mnist_badnets.py:ss_f \
      --config.backbone.checkpoint=runs/fmnist_ssl/backbone --workdir runs/fmnist_badnets_ss_f
"""

from configs import common


def get_config(arg: str = common.DEFAULT_VARIANT):
  return common.fashion_mnist_config("badnets", arg)
