"""ImageNet-1K, ResNet-50: batch 256, lr 0.1, wd 1e-4 (all optimizers), rho 0.07."""

from experiments.configs import common


def get_config():
  config = common.get_base_config()
  config.dataset = "imagenet2012"
  config.model = "resnet50"
  config.batch_size = 256
  config.eval_batch_size = 250
  config.learning_rate = 0.1
  config.weight_decay_sgd = 1e-4
  config.weight_decay_sam = 1e-4
  config.rho = 0.07
  # The paper does not state the ImageNet epoch budget; 90 is the common ResNet-50 one.
  config.num_epochs = 90
  config.shuffle_buffer = 16_384
  config.augment.crop_padding = 0  # ImageNet uses random-resized-crop instead
  config.augment.cutout_size = 0
  return config
