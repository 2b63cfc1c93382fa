"""R2: R1 with 40 % symmetric label noise on the training examples.

The one change from R1 is the noise: 40 % of the training labels are redrawn
uniformly from the 10 classes (validation and test labels stay clean). R1's
30 epochs are enough for SGD to memorise the noisy labels (a model that
predicted every true class would score about 64 % on them), where SAM's
robustness to label noise shows.
"""

from experiments.configs import fashion_mnist_overfit


def get_config():
  config = fashion_mnist_overfit.get_config()
  config.label_noise = 0.4
  return config
