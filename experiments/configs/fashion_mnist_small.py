"""Fashion-MNIST run sized for a 2-core CPU: 10 epochs of the small CNN.

The full-data SSAM-F run took 6.5 minutes (84.7 % test accuracy) on 2 shared
CPU cores; tests shrink it further with ``train_subset`` / ``test_subset``.
"""

from experiments.configs import fashion_mnist


def get_config():
  config = fashion_mnist.get_config()
  config.num_epochs = 10
  config.checkpoint_every_steps = 100
  return config
