"""R2: R1 with 40 % symmetric label noise on the training examples.

Validation and test labels stay clean. Trained long enough that SGD
memorises the noisy labels, where SAM's robustness to label noise shows.
"""

from experiments.configs import fashion_mnist_overfit


def get_config():
  config = fashion_mnist_overfit.get_config()
  config.label_noise = 0.4
  config.num_epochs = 60
  return config
