"""CIFAR-10, ResNet-18, SSAM-F 50 %: the paper's recipe (Sec. 5.1)."""

from experiments.configs import common


def get_config():
  return common.get_base_config()
