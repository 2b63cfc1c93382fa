"""What the figure commands share: the model interface, the demo, file output.

A figure that needs a trained model works on a :class:`TrainedModel`: a name
(the optimizer it was trained with), ``loss_fn(params) -> scalar`` (the
training loss on a fixed batch; BatchNorm statistics and the batch are closed
over) and the ``params`` pytree. Two sources produce them:

* :func:`load_checkpoint` -- the latest orbax checkpoint of a run of the
  training program (``experiments.main``), from its workdir;
* :func:`demo_models` -- a tiny MLP trained here on synthetic data with SGD,
  SAM and SSAM-F, so that every command runs end to end (``--demo``). Its
  outputs are labelled ``synthetic``.

Metrics figures (Figs. 2 and 3) read ``metrics.jsonl`` files instead;
:func:`write_demo_runs` writes synthetic ones in the training program's format.
"""

import argparse
import dataclasses
import functools
import json
import os
from collections.abc import Callable, Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg")  # before pyplot is imported anywhere
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top,wrong-import-position

import jax  # pylint: disable=g-import-not-at-top,wrong-import-position
import jax.numpy as jnp  # pylint: disable=wrong-import-position
import numpy as np  # pylint: disable=wrong-import-position
import optax  # pylint: disable=wrong-import-position

from experiments import steps  # pylint: disable=wrong-import-position
from experiments import tiny_mlp  # pylint: disable=wrong-import-position
import ssam_jax  # pylint: disable=wrong-import-position

PyTree = Any
SYNTHETIC = "synthetic"


@dataclasses.dataclass(frozen=True)
class TrainedModel:
  """A trained model as the analyses see it.

  Attributes:
    name: label in figures and JSON, e.g. the optimizer (``"sam"``).
    loss_fn: ``loss_fn(params) -> scalar`` training loss; must be traceable
      by ``jax.jit``/``jax.vmap``/``jax.jvp`` (close over a fixed batch).
    params: the trained parameters.
    dataset: dataset name for titles (``"synthetic"`` for the demo).
  """

  name: str
  loss_fn: Callable[[PyTree], jax.Array]
  params: PyTree
  dataset: str


def load_checkpoint(checkpoint_dir: str, name: str,
                    num_examples: int = 1024) -> TrainedModel:
  """Loads the latest checkpoint of a training-program run.

  The run's ``config.json`` gives the model and dataset. The loss is the
  training loss (as Fig. 4 of the paper) on the first ``num_examples``
  training examples, without augmentation, with BatchNorm in eval mode (the
  run's running statistics), so that it is a deterministic function of the
  parameters.

  Args:
    checkpoint_dir: a run's workdir (``--workdir`` of ``experiments.main``),
      or a ``.msgpack`` file written by :func:`export_model`.
    name: the label to give the model.
    num_examples: size of the fixed batch the loss is evaluated on.

  Returns:
    A :class:`TrainedModel`.
  """
  # The training program needs TensorFlow; the demo does not.
  import flax.serialization  # pylint: disable=g-import-not-at-top
  import ml_collections  # pylint: disable=g-import-not-at-top
  from experiments import checkpointing, input_pipeline, models  # pylint: disable=g-import-not-at-top

  if checkpoint_dir.endswith(".msgpack"):  # an exported model, see export_model
    with open(checkpoint_dir, "rb") as f:
      state = flax.serialization.msgpack_restore(f.read())
    config = ml_collections.ConfigDict(json.loads(state.pop("config")))
  else:
    with open(os.path.join(checkpoint_dir, "config.json")) as f:
      config = ml_collections.ConfigDict(json.load(f))
    checkpointer = checkpointing.Checkpointer(os.path.join(checkpoint_dir, "checkpoints"))
    latest = checkpointer.latest_step()
    if latest is None:
      raise FileNotFoundError(f"no checkpoint in {checkpoint_dir}/checkpoints.")
    state = checkpointer.read_state(latest)
    checkpointer.close()
  info = input_pipeline.DATASETS[config.dataset]
  model = models.create_model(config.model, info.num_classes, config.model_width)
  batch_config = ml_collections.ConfigDict(config.to_dict())
  batch_config.eval_batch_size = num_examples
  batch_config.train_subset = num_examples
  batch = next(input_pipeline.eval_batches(
      input_pipeline.load_split(batch_config, "train"), batch_config))
  images, labels = jnp.asarray(batch["image"]), jnp.asarray(batch["label"])
  batch_stats = jax.tree.map(jnp.asarray, state["batch_stats"])

  def loss_fn(params):
    logits = model.apply({"params": params, "batch_stats": batch_stats}, images,
                         train=False)
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()

  return TrainedModel(name, loss_fn, jax.tree.map(jnp.asarray, state["params"]),
                      config.dataset)


def export_model(checkpoint_dir: str, path: str) -> str:
  """Writes a run's final params, BatchNorm statistics and config to one file.

  Small enough to commit (no optimizer state), and :func:`load_checkpoint`
  reads it as it reads the workdir, so figures on trained models can be
  regenerated without rerunning the training.
  """
  import flax.serialization  # pylint: disable=g-import-not-at-top
  from experiments import checkpointing  # pylint: disable=g-import-not-at-top

  checkpointer = checkpointing.Checkpointer(os.path.join(checkpoint_dir, "checkpoints"))
  state = checkpointer.read_state(checkpointer.latest_step())
  checkpointer.close()
  with open(os.path.join(checkpoint_dir, "config.json")) as f:
    config = f.read()
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  with open(path, "wb") as f:
    f.write(flax.serialization.msgpack_serialize(
        {"params": state["params"], "batch_stats": state["batch_stats"],
         "config": config}))
  return path


# ---------------------------------------------------------------- the demo --

DEMO_SIZES = (16, 24, 4)  # features, hidden units, classes
DEMO_SPARSITY = 0.5
DEMO_FISHER_SAMPLES = 16


def synthetic_data(seed: int = 0, num_train: int = 512, num_test: int = 512
                   ) -> tuple[dict, dict]:
  """Train and test sets labelled by a random teacher MLP with Gumbel noise."""
  data = tiny_mlp.synthetic_batch(seed, num_train + num_test, sizes=DEMO_SIZES,
                                  teacher_width=32)
  return (jax.tree.map(lambda a: a[:num_train], data),
          jax.tree.map(lambda a: a[num_train:], data))


def init_mlp(key: jax.Array) -> PyTree:
  """The demo MLP: fan-in scaled kernels, zero biases."""
  return tiny_mlp.init_params(key, sizes=DEMO_SIZES, kernel_scale=None,
                              bias_scale=0.0)


def demo_optimizer(name: str, sparsity: float, total_steps: int,
                   steps_per_epoch: int):
  """SGD with momentum, alone or inside SAM / SSAM-F / SSAM-D / SSAM-random.

  The names are those of ``experiments.optimizers``.
  """
  base = optax.sgd(0.1, momentum=0.9)
  if name == "sgd":
    return optax.with_extra_args_support(base)
  if name == "sam":
    return ssam_jax.sam(base, rho=0.1)
  strategies = {"ssam-f": lambda: ssam_jax.fisher_mask(),
                "ssam-d": lambda: ssam_jax.dynamic_mask(0.5, total_steps),
                "ssam-random": ssam_jax.random_mask}
  if name not in strategies:
    raise ValueError(f"Unknown optimizer {name!r}.")
  return ssam_jax.ssam(base, rho=0.1, sparsity=sparsity,
                       mask=strategies[name](),
                       mask_update_every=steps_per_epoch)


def _train_one(seed_key, data, optimizer, *, fisher, num_epochs, batch_size):
  """Trains one MLP; returns its params and per-epoch metrics ``(epochs, 4)``."""
  train, test = data
  num_train = train["y"].shape[0]
  steps_per_epoch = num_train // batch_size
  k_init, k_data = jax.random.split(seed_key)
  # No static refresh: inside scan the optimizer's own (traced) schedule runs.
  train_step = steps.make_train_step(
      steps.stateless_loss_fns(tiny_mlp.loss, tiny_mlp.example_loss), optimizer,
      num_fisher_samples=DEMO_FISHER_SAMPLES if fisher else 0)

  def step(carry, indices):
    params, opt_state = carry
    out = train_step(params, opt_state, None,
                     jax.tree.map(lambda a: a[indices], train))
    return (out.params, out.opt_state), None

  def epoch(carry, epoch_key):
    order = jax.random.permutation(epoch_key, num_train)
    batches = order[:steps_per_epoch * batch_size].reshape(steps_per_epoch, -1)
    carry, _ = jax.lax.scan(step, carry, batches)
    params = carry[0]
    metrics = jnp.stack([tiny_mlp.loss(params, train),
                         tiny_mlp.accuracy(params, train),
                         tiny_mlp.loss(params, test),
                         tiny_mlp.accuracy(params, test)])
    return carry, metrics

  params = init_mlp(k_init)
  carry = (params, optimizer.init(params))
  (params, _), metrics = jax.lax.scan(
      epoch, carry, jax.random.split(k_data, num_epochs))
  return params, metrics


METRIC_KEYS = ("train_loss", "train_accuracy", "test_loss", "test_accuracy")


@functools.lru_cache(maxsize=32)
def train_demo(name: str, sparsity: float = DEMO_SPARSITY,
               seeds: tuple[int, ...] = (0,), num_epochs: int = 10,
               batch_size: int = 64, data_seed: int = 0):
  """Trains the demo MLP with one optimizer for several seeds at once (vmap).

  Returns:
    ``(params, metrics)``: params with a leading seed axis, and metrics of
    shape ``(num_seeds, num_epochs, 4)`` in the order of ``METRIC_KEYS``.
  """
  data = synthetic_data(data_seed)
  steps_per_epoch = data[0]["y"].shape[0] // batch_size
  optimizer = demo_optimizer(name, sparsity, steps_per_epoch * num_epochs,
                             steps_per_epoch)
  run = functools.partial(_train_one, data=data, optimizer=optimizer,
                          fisher=name == "ssam-f", num_epochs=num_epochs,
                          batch_size=batch_size)
  keys = jnp.stack([jax.random.key_data(jax.random.key(s)) for s in seeds])
  run_seeds = jax.jit(jax.vmap(lambda k: run(jax.random.wrap_key_data(k))))
  return jax.device_get(run_seeds(keys))


def demo_models(optimizers: Sequence[str] = ("sgd", "sam", "ssam-f"),
                num_epochs: int = 10, seed: int = 0) -> list[TrainedModel]:
  """The demo MLP trained with each optimizer; loss = full training set."""
  train, _ = synthetic_data()
  loss_fn = functools.partial(tiny_mlp.loss, batch=train)
  models = []
  for name in optimizers:
    # Positional, as in write_demo_runs, so that train_demo's cache is shared.
    params, _ = train_demo(name, DEMO_SPARSITY, (seed,), num_epochs)
    params = jax.tree.map(lambda a: jnp.asarray(a[0]), params)
    label = name if name in ("sgd", "sam") else f"{name} ({DEMO_SPARSITY:.0%})"
    models.append(TrainedModel(label, loss_fn, params, SYNTHETIC))
  return models


def write_demo_runs(root: str, optimizers: Sequence[str] = ("sgd", "sam",
                                                            "ssam-f", "ssam-d"),
                    sparsities: Sequence[float] = (0.5, 0.9, 0.99),
                    seeds: Sequence[int] = (0, 1, 2), num_epochs: int = 10
                    ) -> list[str]:
  """Writes demo training runs as ``root/<run>/metrics.jsonl`` + ``run.json``.

  ``metrics.jsonl`` has the training program's format (one JSON object per
  epoch); ``run.json`` records optimizer, sparsity, seed and dataset.

  Returns:
    The run directories.
  """
  directories = []
  for name in optimizers:
    for sparsity in (sparsities if name not in ("sgd", "sam") else (None,)):
      # SGD and SAM ignore the sparsity: pass the demo models' value so that
      # train_demo's cache is shared with demo_models.
      _, metrics = train_demo(
          name, DEMO_SPARSITY if sparsity is None else float(sparsity),
          tuple(seeds), num_epochs)
      for seed, per_epoch in zip(seeds, metrics):
        tag = name if sparsity is None else f"{name}_s{sparsity:g}"
        directory = os.path.join(root, f"{tag}_seed{seed}")
        os.makedirs(directory, exist_ok=True)
        with open(os.path.join(directory, "metrics.jsonl"), "w") as f:
          for epoch, values in enumerate(per_epoch, 1):
            record = {"epoch": epoch, **{k: float(v) for k, v in
                                         zip(METRIC_KEYS, values)}}
            f.write(json.dumps(record) + "\n")
        write_json(os.path.join(directory, "run.json"),
                   {"optimizer": name, "sparsity": sparsity, "seed": seed,
                    "dataset": SYNTHETIC})
        directories.append(directory)
  return directories


# ------------------------------------------------------------- the CLI side --


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
  """``--checkpoint NAME=DIR`` (repeatable), ``--demo``, ``--out``, ``--seed``."""
  source = parser.add_mutually_exclusive_group(required=True)
  source.add_argument("--checkpoint", action="append", metavar="NAME=DIR",
                      help="a trained run to analyse, labelled NAME; repeat "
                      "to compare optimizers")
  source.add_argument("--demo", action="store_true",
                      help="train a tiny MLP on synthetic data with SGD, SAM "
                      "and SSAM-F instead")
  parser.add_argument("--demo-epochs", type=int, default=10,
                      help="training epochs of the demo models")
  parser.add_argument("--out", required=True, help="output directory")
  parser.add_argument("--seed", type=int, default=0,
                      help="PRNG seed of the analysis")


def models_from_args(args: argparse.Namespace) -> list[TrainedModel]:
  if args.demo:
    return demo_models(num_epochs=args.demo_epochs)
  models = []
  for spec in args.checkpoint:
    name, sep, directory = spec.partition("=")
    if not sep:
      name, directory = os.path.basename(os.path.normpath(spec)), spec
    models.append(load_checkpoint(directory, name))
  return models


def to_jsonable(value):
  """NumPy/JAX arrays and scalars to lists and floats, recursively."""
  if isinstance(value, dict):
    return {str(k): to_jsonable(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [to_jsonable(v) for v in value]
  if isinstance(value, (np.ndarray, jax.Array, np.generic)):
    array = np.asarray(value)
    return array.tolist() if array.ndim else array.item()
  return value


def write_json(path: str, data: dict) -> str:
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  with open(path, "w") as f:
    json.dump(to_jsonable(data), f, indent=1, allow_nan=True)
    f.write("\n")
  return path


def save_figure(figure, path: str) -> str:
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  figure.savefig(path, dpi=120, bbox_inches="tight")
  plt.close(figure)
  return path


def dataset_title(models: Sequence[TrainedModel]) -> str:
  return ", ".join(sorted({m.dataset for m in models}))
