"""CIFAR-100, ResNet-18, SSAM-F 50 %: as CIFAR-10 but rho = 0.2 (Sec. 5.1)."""

from experiments.configs import common


def get_config():
  config = common.get_base_config()
  config.dataset = "cifar100"
  config.rho = 0.2
  return config
