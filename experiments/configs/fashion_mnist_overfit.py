"""R1: clean Fashion-MNIST in an overfitting regime, sized for a 2-core CPU.

10k training examples, no augmentation, a small CNN of width 64, 30 epochs:
SGD fits the training set (>= 99 % train accuracy) and the train/test gap is
where SAM's flatter minima pay. 5k validation examples are carved out of the
other 50k training examples for choosing rho; the test set is never used for
a choice. Every optimizer gets the same weight decay (5e-4) and schedule.
"""

from experiments.configs import fashion_mnist


def get_config():
  config = fashion_mnist.get_config()
  config.train_subset = 10_000
  config.validation_size = 5_000
  config.augment.crop_padding = 0
  config.augment.random_flip = False
  config.model_width = 64
  config.num_epochs = 30
  config.weight_decay_sgd = 5e-4
  config.weight_decay_sam = 5e-4
  config.checkpoint_every_steps = 0
  # Test every epoch, for the test accuracy at the best validation epoch
  # (experiments.early_stopping); the test set is never used for a choice.
  config.test_every_epochs = 1
  return config
