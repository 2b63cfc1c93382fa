"""Flax (linen) models: CIFAR ResNet-18, WideResNet-28-10, ResNet-50, small CNN.

All models take ``(images, train: bool)`` and keep BatchNorm statistics in the
``batch_stats`` collection; ``train=True`` normalises with batch statistics and
updates the running ones (BN momentum 0.9 = PyTorch's 0.1, epsilon 1e-5).
"""

import functools
from typing import Callable, Sequence

import flax.linen as nn
import jax.numpy as jnp

# He initialisation (fan_out), as torchvision's ResNets.
_conv_init = nn.initializers.variance_scaling(2.0, "fan_out", "normal")
Conv = functools.partial(nn.Conv, use_bias=False, kernel_init=_conv_init)


def _batch_norm(train: bool, **kwargs) -> nn.BatchNorm:
  return nn.BatchNorm(use_running_average=not train, momentum=0.9,
                      epsilon=1e-5, **kwargs)


class BasicBlock(nn.Module):
  """Two 3x3 convs (ResNet-18/34 block), post-activation."""
  filters: int
  strides: int = 1

  @nn.compact
  def __call__(self, x, train: bool):
    y = Conv(self.filters, (3, 3), self.strides, padding=1)(x)
    y = nn.relu(_batch_norm(train)(y))
    y = Conv(self.filters, (3, 3), padding=1)(y)
    y = _batch_norm(train)(y)
    return nn.relu(y + _projection(x, y.shape[-1], self.strides, train))


class Bottleneck(nn.Module):
  """1x1 - 3x3 (strided, as ResNet v1.5) - 1x1 x4 block of ResNet-50."""
  filters: int
  strides: int = 1

  @nn.compact
  def __call__(self, x, train: bool):
    y = nn.relu(_batch_norm(train)(Conv(self.filters, (1, 1))(x)))
    y = Conv(self.filters, (3, 3), self.strides, padding=1)(y)
    y = nn.relu(_batch_norm(train)(y))
    y = Conv(4 * self.filters, (1, 1))(y)
    # Zero-init the last BN scale so each block starts as the identity.
    y = _batch_norm(train, scale_init=nn.initializers.zeros)(y)
    return nn.relu(y + _projection(x, y.shape[-1], self.strides, train))


def _projection(x, filters: int, strides: int, train: bool):
  """Identity shortcut, or 1x1 conv + BN when the shape changes."""
  if x.shape[-1] == filters and strides == 1:
    return x
  return _batch_norm(train)(Conv(filters, (1, 1), strides)(x))


class ResNet(nn.Module):
  """ResNet; ``cifar_stem`` = 3x3/stride-1 first conv and no max-pool (Sec. 5.1)."""
  stage_sizes: Sequence[int]
  block: Callable[..., nn.Module]
  num_classes: int
  cifar_stem: bool = True

  @nn.compact
  def __call__(self, x, train: bool):
    if self.cifar_stem:
      x = Conv(64, (3, 3), padding=1)(x)
      x = nn.relu(_batch_norm(train)(x))
    else:
      x = Conv(64, (7, 7), 2, padding=3)(x)
      x = nn.relu(_batch_norm(train)(x))
      x = nn.max_pool(x, (3, 3), (2, 2), padding=((1, 1), (1, 1)))
    for stage, num_blocks in enumerate(self.stage_sizes):
      for i in range(num_blocks):
        strides = 2 if stage > 0 and i == 0 else 1
        x = self.block(64 * 2**stage, strides)(x, train)
    return nn.Dense(self.num_classes)(jnp.mean(x, axis=(1, 2)))


class WideBlock(nn.Module):
  """Pre-activation wide basic block (Zagoruyko & Komodakis 2016), no dropout."""
  filters: int
  strides: int = 1

  @nn.compact
  def __call__(self, x, train: bool):
    pre = nn.relu(_batch_norm(train)(x))
    y = Conv(self.filters, (3, 3), self.strides, padding=1)(pre)
    y = nn.relu(_batch_norm(train)(y))
    y = Conv(self.filters, (3, 3), padding=1)(y)
    if x.shape[-1] == self.filters and self.strides == 1:
      return x + y
    return Conv(self.filters, (1, 1), self.strides)(pre) + y


class WideResNet(nn.Module):
  """WRN-depth-width for 32x32 inputs."""
  depth: int
  width: int
  num_classes: int

  @nn.compact
  def __call__(self, x, train: bool):
    blocks_per_group = (self.depth - 4) // 6
    x = Conv(16, (3, 3), padding=1)(x)
    for group, filters in enumerate((16 * self.width, 32 * self.width,
                                     64 * self.width)):
      for i in range(blocks_per_group):
        strides = 2 if group > 0 and i == 0 else 1
        x = WideBlock(filters, strides)(x, train)
    x = nn.relu(_batch_norm(train)(x))
    return nn.Dense(self.num_classes)(jnp.mean(x, axis=(1, 2)))


class SmallCNN(nn.Module):
  """Three stride-2 conv-BN-ReLU stages (28 -> 14 -> 7 -> 4), sized for a CPU.

  Strided convolutions instead of max-pooling: on XLA:CPU the max-pool
  gradient and stride-1 convolutions dominated the step (measured: 220 ms vs
  26 ms per forward-backward at batch 128 and width 32 on 2 cores).
  """
  num_classes: int
  width: int = 32

  @nn.compact
  def __call__(self, x, train: bool):
    for multiplier in (1, 2, 4):
      x = Conv(self.width * multiplier, (3, 3), 2, padding=1)(x)
      x = nn.relu(_batch_norm(train)(x))
    return nn.Dense(self.num_classes)(jnp.mean(x, axis=(1, 2)))


def create_model(name: str, num_classes: int, width: int = 0) -> nn.Module:
  """Builds a model by config name; ``width`` only applies to ``small_cnn``."""
  if name == "resnet18":
    return ResNet((2, 2, 2, 2), BasicBlock, num_classes, cifar_stem=True)
  if name == "resnet50":
    return ResNet((3, 4, 6, 3), Bottleneck, num_classes, cifar_stem=False)
  if name == "wrn28_10":
    return WideResNet(28, 10, num_classes)
  if name == "small_cnn":
    return SmallCNN(num_classes, width or SmallCNN.width)
  raise ValueError(f"Unknown model {name!r}; expected resnet18, resnet50, "
                   "wrn28_10 or small_cnn.")
