"""Fashion-MNIST, label-consistent (clean-label; Turner et al.), 25 % of the target class 0
(the reference's rate): PGD (eps 16/255, 30 steps of 1.5/255) against a ResNet surrogate of
the deep victim's architecture (ResNet-18 width 16, ImageNet stem, 3 epochs), then a 3x3
checkerboard in all four corners; the undefended deep victim, the baseline head and VIBE on
frozen pixel features (common.fashion_mnist_config; docs/fashion_mnist.md).

  apt-get install dataset-fashion-mnist     # once: the IDX files, offline
  python main.py --config configs/fashion_mnist_lc.py --workdir runs/fmnist_lc
  python main.py --config configs/fashion_mnist_lc.py --mode pretrain --workdir runs/fmnist_lc_ssl
  python main.py --config configs/fashion_mnist_lc.py:ss_f \
      --config.backbone.checkpoint=runs/fmnist_lc_ssl/backbone --workdir runs/fmnist_lc_ss_f

The perturbed images are cached in the workdir (poisoned_train.npz): a rerun there does not
retrain the surrogate.
"""

from configs import common


def get_config(arg: str = common.DEFAULT_VARIANT):
  config = common.fashion_mnist_config("label_consistent", arg, surrogate="resnet")
  config.attack.rate = 0.25  # of the target class, as in the reference
  return config
