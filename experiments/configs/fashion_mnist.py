"""Fashion-MNIST with the CIFAR recipe (rho 0.1) on the small CNN.

Augmentation: random crop with padding 4 back to 28x28, horizontal flip,
normalisation; Cutout off by default (set ``--config.augment.cutout_size=8``).
"""

from experiments.configs import common


def get_config():
  config = common.get_base_config()
  config.dataset = "fashion_mnist"
  config.model = "small_cnn"
  config.augment.cutout_size = 0
  config.shuffle_buffer = 60_000
  return config
