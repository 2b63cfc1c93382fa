"""Train step, eval step and the training loop.

BatchNorm and SAM: the train step runs the model once at ``w`` in train mode;
that pass gives the loss, the gradient and the new running statistics. The
perturbed pass inside ``grad_fn`` (at ``w + eps``) also normalises with batch
statistics, but its updated statistics are discarded, so running statistics
only ever come from unperturbed forward passes.

Fisher (SSAM-F): per-example losses are evaluated with BatchNorm in eval mode,
i.e. with the current running statistics. Train mode is ill-defined for a
single example (its batch variance is zero for the dense layers' inputs), and
the running statistics are what the model uses at test time.
"""

import functools
import os
import time
from typing import Any, Callable, Optional

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax
import tqdm

import ssam_jax
from experiments import checkpointing
from experiments import distributed
from experiments import input_pipeline
from experiments import models
from experiments import optimizers
from experiments import reporting

Batch = dict[str, jax.Array]


@flax.struct.dataclass
class TrainState:
  """Everything a resumed run needs, all device arrays (checkpointed whole)."""
  step: jax.Array  # global step; with steps_per_epoch gives the data position
  params: Any
  batch_stats: Any
  opt_state: Any
  epoch_metrics: dict[str, jax.Array]  # running sums over the current epoch


def _zero_metric_sums() -> dict[str, jax.Array]:
  return {"loss_sum": jnp.zeros([], jnp.float32),
          "correct": jnp.zeros([], jnp.int32),
          "count": jnp.zeros([], jnp.int32)}


def create_train_state(seed: int, model, optimizer,
                       image_shape: tuple[int, ...]) -> TrainState:
  variables = model.init(jax.random.PRNGKey(seed),
                         jnp.zeros((1,) + tuple(image_shape)), train=False)
  params = variables["params"]
  return TrainState(step=jnp.zeros([], jnp.int32), params=params,
                    batch_stats=variables["batch_stats"],
                    opt_state=optimizer.init(params),
                    epoch_metrics=_zero_metric_sums())


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Per-example softmax cross-entropy with integer labels."""
  return optax.softmax_cross_entropy_with_integer_labels(logits, labels)


def train_step(state: TrainState, batch: Batch, *, model, optimizer,
               num_fisher_samples: int = 0,
               active: Optional[tuple[bool, ...]] = None,
               refresh: Optional[bool] = None) -> tuple[TrainState, dict]:
  """One optimizer step; ``num_fisher_samples > 0`` passes SSAM-F's fisher_fn.

  With ``active`` (the fast path: one static bool per params leaf), the first
  gradient is taken for the active leaves only. ``refresh`` (static, SSAM
  only) says whether this step refreshes the mask, see ``Trainer._step``.
  """

  def loss_and_new_stats(params):
    logits, mutated = model.apply(
        {"params": params, "batch_stats": state.batch_stats}, batch["image"],
        train=True, mutable=["batch_stats"])
    loss = cross_entropy(logits, batch["label"]).mean()
    return loss, (logits, mutated["batch_stats"])

  def perturbed_grad(params):  # BN statistics of this pass are thrown away
    return jax.grad(lambda p: loss_and_new_stats(p)[0])(params)

  def example_loss(params, example):  # BN in eval mode, see module docstring
    logits = model.apply({"params": params, "batch_stats": state.batch_stats},
                         example["image"][None], train=False)
    return cross_entropy(logits, example["label"][None])[0]

  value_and_grad = (
      jax.value_and_grad(loss_and_new_stats, has_aux=True) if active is None
      else ssam_jax.value_and_partial_grad(loss_and_new_stats, active,
                                           has_aux=True))
  (loss, (logits, batch_stats)), grads = value_and_grad(state.params)
  extra_args = {} if refresh is None else {"refresh": refresh}
  if num_fisher_samples:
    extra_args["fisher_fn"] = ssam_jax.empirical_fisher(
        example_loss, batch, num_samples=num_fisher_samples,
        unroll=optimizers.fisher_unroll())
  updates, opt_state = optimizer.update(grads, state.opt_state, state.params,
                                        grad_fn=perturbed_grad, **extra_args)
  correct = jnp.sum(jnp.argmax(logits, -1) == batch["label"])
  sums = state.epoch_metrics
  new_state = state.replace(
      step=state.step + 1, params=optax.apply_updates(state.params, updates),
      batch_stats=batch_stats, opt_state=opt_state,
      epoch_metrics={"loss_sum": sums["loss_sum"] + loss * len(logits),
                     "correct": sums["correct"] + correct,
                     "count": sums["count"] + len(logits)})
  return new_state, {"loss": loss, "accuracy": correct / len(logits)}


def eval_step(state: TrainState, batch: Batch, *, model) -> dict:
  """Sums of loss and correct predictions over the real (``mask``) examples."""
  logits = model.apply({"params": state.params,
                        "batch_stats": state.batch_stats},
                       batch["image"], train=False)
  mask = batch["mask"]
  return {"loss_sum": jnp.sum(cross_entropy(logits, batch["label"]) * mask),
          "correct": jnp.sum((jnp.argmax(logits, -1) == batch["label"]) & mask),
          "count": jnp.sum(mask)}


def evaluate(jit_eval_step: Callable, state: TrainState, split, config,
             data_parallel: distributed.DataParallel) -> dict:
  totals = None
  rows = distributed.process_rows(config.eval_batch_size)
  for batch in input_pipeline.eval_batches(split, config, rows):
    sums = jit_eval_step(state, data_parallel.global_batch(batch))
    totals = sums if totals is None else jax.tree.map(jnp.add, totals, sums)
  return _means(jax.device_get(totals))


def _means(sums: dict) -> dict:
  count = max(int(sums["count"]), 1)
  return {"loss": float(sums["loss_sum"]) / count,
          "accuracy": float(sums["correct"]) / count}


def mask_density(opt_state) -> float:
  """Fraction of perturbed parameters (SSAM variants only)."""
  leaves = jax.tree.leaves(optax.tree.get(opt_state, "mask"))
  return float(sum(np.sum(x) for x in leaves) / sum(x.size for x in leaves))


class Trainer:
  """Wires data, model, optimizer, checkpoints and metrics for one workdir.

  Data parallel over all devices of all processes (see ``distributed``).
  """

  def __init__(self, config, workdir: str):
    self.config = config
    self.workdir = workdir
    self.info = input_pipeline.DATASETS[config.dataset]
    self.train_split = input_pipeline.load_split(config, "train")
    self.test_split = input_pipeline.load_split(config, "test")
    self.validation_split = (input_pipeline.load_split(config, "validation")
                             if config.validation_size else None)
    self.steps_per_epoch = input_pipeline.steps_per_epoch(
        self.train_split.num_examples, config.batch_size)
    if self.steps_per_epoch == 0:
      raise ValueError("batch_size is larger than the training set.")
    self.data_parallel = distributed.DataParallel.over_all_devices()
    self.data_parallel.check_divides("batch_size", config.batch_size)
    self.data_parallel.check_divides("eval_batch_size", config.eval_batch_size)
    self.model = models.create_model(config.model, self.info.num_classes,
                                     config.model_width)
    self.optimizer = optimizers.create_optimizer(config, self.steps_per_epoch)
    self.mask_update_every = optimizers.mask_update_every(config,
                                                          self.steps_per_epoch)
    num_fisher_samples = (config.num_fisher_samples
                          if optimizers.uses_fisher(config) else 0)
    if num_fisher_samples > config.batch_size:
      raise ValueError("num_fisher_samples must be <= batch_size: the Fisher "
                       "is computed on the first examples of the batch.")
    optimizers.check_fast_path(config)
    replicated = self.data_parallel.replicated
    self.train_step = jax.jit(functools.partial(
        train_step, model=self.model, optimizer=self.optimizer,
        num_fisher_samples=num_fisher_samples), donate_argnums=0,
                              static_argnames=("active", "refresh"),
                              out_shardings=replicated)
    self.eval_step = jax.jit(functools.partial(eval_step, model=self.model),
                             out_shardings=replicated)
    # Jitted so that the zeroed sums are global arrays like the rest.
    self.start_new_epoch = jax.jit(
        lambda state: state.replace(epoch_metrics=_zero_metric_sums()),
        donate_argnums=0, out_shardings=replicated)
    self._active = None  # fast path: perturbed tensors, None = not known yet
    self.checkpointer = checkpointing.Checkpointer(
        os.path.join(workdir, "checkpoints"), config.max_checkpoints_to_keep)

  def initial_state(self) -> TrainState:
    # Jitted: eager initialisation of the SSAM state (mask selection) is slow.
    return jax.jit(functools.partial(
        create_train_state, self.config.seed, self.model, self.optimizer,
        self.info.image_shape), out_shardings=self.data_parallel.replicated)()

  def restore_or_init(self, resume: bool) -> TrainState:
    state = self.initial_state()
    latest = self.checkpointer.latest_step()
    if latest is None:
      return state
    if not resume:
      raise FileExistsError(f"{self.workdir} holds checkpoints; pass --resume "
                            "or use a new workdir.")
    state, position = self.checkpointer.restore(latest, state)
    if position != self.data_position(int(state.step)):
      raise ValueError(f"Checkpoint data position {position} does not match "
                       f"this config ({self.steps_per_epoch} steps/epoch).")
    reporting.log(f"Resumed from step {latest} (epoch {position['epoch']}, "
                  f"step {position['step_in_epoch']} within it).")
    return state

  def data_position(self, step: int) -> dict:
    return {"epoch": step // self.steps_per_epoch,
            "step_in_epoch": step % self.steps_per_epoch}

  def save(self, state: TrainState) -> None:
    step = int(state.step)
    self.checkpointer.save(step, state, self.data_position(step))
    reporting.log(f"Saved checkpoint at step {step}.")

  def train_epoch(self, state: TrainState, epoch: int) -> TrainState:
    """Runs the rest of ``epoch`` from the state's data position."""
    config = self.config
    start = self.data_position(int(state.step))["step_in_epoch"]
    batches = input_pipeline.train_batches(
        self.train_split, config, epoch, start,
        distributed.process_rows(config.batch_size))
    bar = tqdm.tqdm(total=self.steps_per_epoch, initial=start, leave=False,
                    desc=f"epoch {epoch + 1}/{config.num_epochs}",
                    disable=not distributed.is_main_process())
    last_time, last_step = time.perf_counter(), start
    for step_in_epoch, batch in enumerate(batches, start + 1):
      global_step = epoch * self.steps_per_epoch + step_in_epoch
      state, metrics = self._step(state, self.data_parallel.global_batch(batch),
                                  global_step - 1)
      if step_in_epoch % config.log_every_steps == 0:
        metrics = jax.device_get(metrics)  # waits for the step to finish
        now = time.perf_counter()
        step_ms = 1e3 * (now - last_time) / (step_in_epoch - last_step)
        bar.set_postfix(loss=f"{metrics['loss']:.3f}",
                        acc=f"{metrics['accuracy']:.3f}",
                        step_ms=f"{step_ms:.0f}")
        last_time, last_step = now, step_in_epoch
      bar.update(1)
      if (config.checkpoint_every_steps and step_in_epoch < self.steps_per_epoch
          and global_step % config.checkpoint_every_steps == 0):
        self.save(state)
    bar.close()
    return state

  def _step(self, state: TrainState, batch: Batch,
            step: int) -> tuple[TrainState, dict]:
    """One train step; SSAM refreshes and the fast path decided on the host.

    Whether ``step`` (= the optimizer's count, counted here so that steps
    stay asynchronous) refreshes the mask is passed to ``update`` as a
    static bool: two compiled steps instead of a ``lax.cond``, inside which
    XLA:CPU runs the Fisher's convolutions about 4x slower
    (``python -m benchmarks.control_flow``).

    Fast path: the perturbed set is static for ``jit`` (one compilation per
    distinct set), so it is read from the state after every full-gradient
    step: mask refreshes, and the first step of a (resumed) run.
    """
    if not optimizers.is_sparse(self.config):
      return self.train_step(state, batch)
    refresh = step % self.mask_update_every == 0
    active = None if refresh or not self.config.fast_path else self._active
    state, metrics = self.train_step(state, batch, active=active,
                                     refresh=refresh)
    if self.config.fast_path and active is None:
      self._active = ssam_jax.perturbed_tensors(state.opt_state)
    return state, metrics

  def end_of_epoch_metrics(self, state: TrainState, epoch: int,
                           epoch_seconds: float) -> dict:
    train = _means(jax.device_get(state.epoch_metrics))
    test = evaluate(self.eval_step, state, self.test_split, self.config,
                    self.data_parallel)
    metrics = {"epoch": epoch + 1,
               "train_loss": train["loss"], "train_accuracy": train["accuracy"],
               "test_loss": test["loss"], "test_accuracy": test["accuracy"],
               "epoch_seconds": epoch_seconds}
    if self.validation_split is not None:
      validation = evaluate(self.eval_step, state, self.validation_split,
                            self.config, self.data_parallel)
      metrics["validation_loss"] = validation["loss"]
      metrics["validation_accuracy"] = validation["accuracy"]
    if optimizers.is_sparse(self.config):
      metrics["mask_density"] = mask_density(state.opt_state)
    return metrics


def train_and_evaluate(config, workdir: str, resume: bool = True) -> dict:
  """Trains (resuming from ``workdir`` if possible), evaluating every epoch.

  Returns the last epoch's metrics (plus ``wall_seconds``).
  """
  os.makedirs(workdir, exist_ok=True)
  main_process = distributed.is_main_process()
  if main_process:
    # Lets analyses (experiments.analysis) rebuild the model from the workdir.
    with open(os.path.join(workdir, "config.json"), "w") as f:
      f.write(config.to_json(indent=1))
  trainer = Trainer(config, workdir)
  # The mesh in context lets the library see the data sharding while tracing
  # (the empirical Fisher replicates its examples, see ssam_jax.fisher).
  with jax.set_mesh(trainer.data_parallel.mesh):
    return _train(trainer, config, workdir, resume, main_process)


def _train(trainer: Trainer, config, workdir: str, resume: bool,
           main_process: bool) -> dict:
  state = trainer.restore_or_init(resume)
  writer = (reporting.MetricWriter(workdir, resumed_step=int(state.step))
            if main_process else reporting.NullWriter())
  reporting.log(f"Training {config.model} with {config.optimizer} on "
                f"{config.dataset} ({trainer.train_split.num_examples} examples"
                f" from {trainer.train_split.source}), "
                f"{trainer.steps_per_epoch} steps/epoch, data parallel over "
                f"{jax.device_count()} device(s) in {jax.process_count()} "
                "process(es).")
  start_time = time.perf_counter()
  metrics = {}
  first_epoch = int(state.step) // trainer.steps_per_epoch
  for epoch in range(first_epoch, config.num_epochs):
    epoch_start = time.perf_counter()
    state = trainer.train_epoch(state, epoch)
    metrics = trainer.end_of_epoch_metrics(
        state, epoch, time.perf_counter() - epoch_start)
    writer.write(int(state.step), metrics)
    reporting.log(" ".join(f"{k}={v:.4f}" if isinstance(v, float) else
                           f"{k}={v}" for k, v in metrics.items()))
    state = trainer.start_new_epoch(state)
    trainer.save(state)
  if not metrics:  # already finished: just report the final model
    test = evaluate(trainer.eval_step, state, trainer.test_split, config,
                    trainer.data_parallel)
    metrics = {"epoch": config.num_epochs, "test_loss": test["loss"],
               "test_accuracy": test["accuracy"]}
  metrics["wall_seconds"] = time.perf_counter() - start_time
  writer.close()
  trainer.checkpointer.close()
  reporting.log(f"FINAL {config.dataset} {config.model} {config.optimizer}: "
                f"test_accuracy={metrics['test_accuracy']:.4f} "
                f"test_loss={metrics['test_loss']:.4f} "
                f"epochs={config.num_epochs} "
                f"wall_seconds={metrics['wall_seconds']:.1f}")
  return metrics
