"""Facts about the datasets, shared by both input pipelines, and the choice
between them; nothing here imports TensorFlow.

``config.data_pipeline`` names the pipeline that reads the data:

* ``"tf.data"`` (``experiments.input_pipeline``): tensorflow-datasets, or for
  Fashion-MNIST the IDX files of the Debian package, through tf.data. Every
  dataset.
* ``"arrays"`` (``experiments.array_pipeline``): Fashion-MNIST's IDX files
  held in memory with NumPy, for machines without TensorFlow. The same
  examples, split and label noise as ``"tf.data"``; see that module for what
  differs.

Both modules provide ``load_split(config, split)``, ``train_batches(split,
config, epoch, start_step, rows)`` and ``eval_batches(split, config, rows)``;
:func:`pipeline` imports only the chosen one.
"""

import dataclasses
import gzip
import importlib
import os
import struct
import types

import numpy as np

PIPELINES = {"tf.data": "experiments.input_pipeline",
             "arrays": "experiments.array_pipeline"}
# Datasets each pipeline can read.
PIPELINE_DATASETS = {"arrays": ("fashion_mnist",)}
# Where the Debian package `dataset-fashion-mnist` installs the IDX files.
DEBIAN_FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
FASHION_MNIST_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
# Separates the label-noise random stream from the (seed, epoch) augmentation one.
LABEL_NOISE_STREAM = -1


class DatasetNotFoundError(FileNotFoundError):
  """The requested dataset is not available locally."""


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
  """Static facts about a dataset that the pipeline and the model need."""
  tfds_name: str
  num_classes: int
  image_shape: tuple[int, int, int]  # model input (H, W, C)
  mean: tuple[float, ...]  # per channel, for images scaled to [0, 1]
  std: tuple[float, ...]
  test_split: str
  imagenet_style: bool = False  # random-resized-crop instead of pad-and-crop
  cache: bool = True  # small enough to keep decoded in memory


DATASETS = {
    "cifar10": DatasetInfo("cifar10", 10, (32, 32, 3),
                           (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616),
                           "test"),
    "cifar100": DatasetInfo("cifar100", 100, (32, 32, 3),
                            (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762),
                            "test"),
    "fashion_mnist": DatasetInfo("fashion_mnist", 10, (28, 28, 1),
                                 (0.2860,), (0.3530,), "test"),
    "imagenet2012": DatasetInfo("imagenet2012", 1000, (224, 224, 3),
                                (0.485, 0.456, 0.406), (0.229, 0.224, 0.225),
                                "validation", imagenet_style=True, cache=False),
}


def pipeline(config) -> types.ModuleType:
  """The input pipeline module ``config.data_pipeline`` names (imported now)."""
  choice = config.get("data_pipeline", "tf.data")
  if choice not in PIPELINES:
    raise ValueError(f"config.data_pipeline={choice!r}: expected one of "
                     f"{', '.join(map(repr, PIPELINES))}.")
  readable = PIPELINE_DATASETS.get(choice)
  if readable is not None and config.dataset not in readable:
    raise ValueError(f"config.data_pipeline={choice!r} reads only "
                     f"{', '.join(readable)}, not {config.dataset!r}; use "
                     "'tf.data'.")
  return importlib.import_module(PIPELINES[choice])


def fashion_mnist_files(split: str) -> tuple[str, str]:
  """Paths of the IDX images and labels of ``split`` ("train" or "test"), in
  ``$FASHION_MNIST_DIR`` or the Debian package's directory."""
  directory = os.environ.get("FASHION_MNIST_DIR", DEBIAN_FASHION_MNIST_DIR)
  images, labels = FASHION_MNIST_FILES[split]
  return os.path.join(directory, images), os.path.join(directory, labels)


def read_idx(path: str) -> np.ndarray:
  """Decodes a (gzipped) IDX file as used by MNIST and Fashion-MNIST."""
  opener = gzip.open if path.endswith(".gz") else open
  with opener(path, "rb") as f:
    data = f.read()
  zero, dtype_code, ndim = struct.unpack(">HBB", data[:4])
  if zero != 0 or dtype_code != 0x08:  # 0x08 = unsigned byte
    raise ValueError(f"{path}: not an unsigned-byte IDX file")
  shape = struct.unpack(f">{ndim}I", data[4:4 + 4 * ndim])
  array = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
  return array.reshape(shape)


def validation_indices(num_examples: int, size: int, seed: int) -> np.ndarray:
  """Sorted indices (into the stored training split) of the validation set."""
  if not 0 < size < num_examples:
    raise ValueError(f"validation_size must be in [1, {num_examples - 1}] for "
                     f"a training split of {num_examples}, got {size}.")
  order = np.random.default_rng(seed).permutation(num_examples)
  return np.sort(order[:size])


def steps_per_epoch(num_examples: int, batch_size: int) -> int:
  """Training drops the last partial batch, as in the paper's PyTorch code."""
  return num_examples // batch_size
