"""The training loop: train state, jitted steps, evaluation, checkpoints.

The train step itself (BatchNorm handling, the perturbed pass, the Fisher,
the fast path) is ``experiments.steps``; this module runs it over epochs with
a data-parallel layout, metric sums and resumable checkpoints.
"""

import contextlib
import functools
import os
import time
from typing import Any, Callable, Optional, Sequence

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax
import tqdm

from experiments import checkpointing
from experiments import config_validation
from experiments import distributed
from experiments import divergence
from experiments import datasets
from experiments import models
from experiments import optimizers
from experiments import provenance
from experiments import radius
from experiments import reporting
from experiments import steps
from experiments import workdir_guard
from experiments.configs import common

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
          "count": jnp.zeros([], jnp.int32),
          "radius_sum": jnp.zeros([], jnp.float32)}  # experiments.radius


def create_train_state(seed: int, model, optimizer,
                       image_shape: tuple[int, ...]) -> TrainState:
  variables = model.init(jax.random.PRNGKey(seed),
                         jnp.zeros((1,) + tuple(image_shape)), train=False)
  params = variables["params"]
  return TrainState(step=jnp.zeros([], jnp.int32), params=params,
                    batch_stats=variables["batch_stats"],
                    opt_state=optimizer.init(params),
                    epoch_metrics=_zero_metric_sums())


def train_step(state: TrainState, batch: Batch, *, step_fn: Callable,
               radius_fn: Optional[Callable] = None,
               **static) -> tuple[TrainState, dict]:
  """``step_fn`` (``steps.make_train_step``) on the train state, adding the
  examples of its logits to the epoch's metric sums; ``static`` holds its
  static arguments (``steps.RefreshPlan``), ``radius_fn(grads, opt_state)``
  the step's ``||eps||`` (``experiments.radius``; None: not summed)."""
  out = step_fn(state.params, state.opt_state, state.batch_stats, batch,
                **static)
  step_radius = 0.0 if radius_fn is None else radius_fn(out.grads, out.opt_state)
  sums, size = state.epoch_metrics, len(out.logits)  # the batch's first rows
  correct = jnp.sum(jnp.argmax(out.logits, -1) == batch["label"][:size])
  new_state = state.replace(
      step=state.step + 1, params=out.params, batch_stats=out.model_state,
      opt_state=out.opt_state,
      epoch_metrics={"loss_sum": sums["loss_sum"] + out.loss * size,
                     "correct": sums["correct"] + correct,
                     "count": sums["count"] + size,
                     "radius_sum": sums["radius_sum"] + step_radius * size})
  return new_state, {"loss": out.loss, "accuracy": correct / size}


def eval_step(state: TrainState, batch: Batch, *, model) -> dict:
  """Sums of loss and correct predictions over the real (``mask``) examples."""
  losses, logits = steps.eval_mode_losses(model, state.params, state.batch_stats,
                                          batch["image"], batch["label"])
  mask = batch["mask"]
  return {"loss_sum": jnp.sum(losses * mask),
          "correct": jnp.sum((jnp.argmax(logits, -1) == batch["label"]) & mask),
          "count": jnp.sum(mask)}


def evaluate(jit_eval_step: Callable, state: TrainState, split, config,
             data_parallel: distributed.DataParallel) -> dict:
  totals = None
  rows = distributed.process_rows(config.eval_batch_size)
  for batch in datasets.pipeline(config).eval_batches(split, config, rows):
    sums = jit_eval_step(state, data_parallel.global_batch(batch))
    totals = sums if totals is None else jax.tree.map(jnp.add, totals, sums)
  return _means(jax.device_get(totals))


def _means(sums: dict) -> dict:
  count = max(int(sums["count"]), 1)
  means = {"loss": float(sums["loss_sum"]) / count,
           "accuracy": float(sums["correct"]) / count}
  if "radius_sum" in sums:  # training sums only
    means["radius"] = float(sums["radius_sum"]) / count
  return means


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
    self.info = datasets.DATASETS[config.dataset]
    # tf.data or NumPy arrays (config.data_pipeline); only the chosen one is imported.
    self.pipeline = datasets.pipeline(config)
    self.train_split = self.pipeline.load_split(config, "train")
    self.test_split = self.pipeline.load_split(config, "test")
    self.validation_split = (self.pipeline.load_split(config, "validation")
                             if config.validation_size else None)
    self.steps_per_epoch = datasets.steps_per_epoch(
        self.train_split.num_examples, config.batch_size)
    if self.steps_per_epoch == 0:
      raise ValueError("batch_size is larger than the training set.")
    self.data_parallel = distributed.DataParallel.over_all_devices()
    self.data_parallel.check_divides("batch_size", config.batch_size)
    self.data_parallel.check_divides("eval_batch_size", config.eval_batch_size)
    self.model = models.create_model(config.model, self.info.num_classes,
                                     config.model_width)
    self.built_optimizer = optimizers.create_optimizer(config,
                                                       self.steps_per_epoch)
    self.optimizer = self.built_optimizer.optimizer
    step_fn = steps.make_train_step(
        steps.flax_loss_fns(self.model), self.optimizer,
        **self.built_optimizer.step_options(config.num_fisher_samples),
        fisher_unroll=optimizers.fisher_unroll())
    self.refresh_plan = steps.RefreshPlan(
        self.built_optimizer.host_refresh_every, config.fast_path,
        self.built_optimizer.host_ascent)
    replicated = self.data_parallel.replicated
    self.train_step = jax.jit(functools.partial(
        train_step, step_fn=step_fn, radius_fn=radius.for_config(config)),
                              donate_argnums=0, out_shardings=replicated,
                              static_argnames=("perturbed", "refresh", "ascend"))
    self.eval_step = jax.jit(functools.partial(eval_step, model=self.model),
                             out_shardings=replicated)
    # Jitted so that the zeroed sums are global arrays like the rest.
    self.start_new_epoch = jax.jit(
        lambda state: state.replace(epoch_metrics=_zero_metric_sums()),
        donate_argnums=0, out_shardings=replicated)
    self.checkpointer = checkpointing.Checkpointer(
        os.path.join(workdir, "checkpoints"), config.max_checkpoints_to_keep)

  def initial_state(self) -> TrainState:
    # Jitted: eager initialisation of the SSAM state (mask selection) is slow.
    return jax.jit(functools.partial(
        create_train_state, self.config.seed, self.model, self.optimizer,
        self.info.image_shape), out_shardings=self.data_parallel.replicated)()

  def restore_or_init(self, resume: bool) -> TrainState:
    """The newest intact checkpoint's state, or the initial state if none.

    Damaged newer checkpoints are set aside with a warning each (see
    ``checkpointing``); if every checkpoint is damaged this raises rather
    than train from garbage or silently from scratch.
    """
    state = self.initial_state()
    if self.checkpointer.latest_step() is None:
      return state
    if not resume:
      raise workdir_guard.ResumeRefusedError(
          f"{self.workdir} holds checkpoints; pass --resume or use a new "
          "workdir.")
    restored = self.checkpointer.restore_latest(state, warn=reporting.warn)
    if restored is None:
      return state
    latest, state, position = restored
    if position != self.data_position(int(state.step)):
      raise checkpointing.CheckpointMismatchError(
          f"Checkpoint step {latest} was saved at data position {position}, "
          f"which this config ({self.steps_per_epoch} steps/epoch) does not "
          "reach at that step; batch_size, train_subset or validation_size "
          "differ from the run that saved it.")
    reporting.log(f"Resumed from step {latest} (epoch {position['epoch']}, "
                  f"step {position['step_in_epoch']} within it).")
    return state

  def data_position(self, step: int) -> dict:
    return {"epoch": step // self.steps_per_epoch,
            "step_in_epoch": step % self.steps_per_epoch}

  def save(self, state: TrainState) -> None:
    """Checkpoints ``state``; raises ``divergence.DivergedError`` instead if
    it is not finite, so that the newest checkpoint is the last good one."""
    divergence.check(state, steps_per_epoch=self.steps_per_epoch,
                     num_epochs=self.config.num_epochs,
                     skip_nonfinite_steps=self.config.get("skip_nonfinite_steps", 0),
                     checkpointer=self.checkpointer)
    step = int(state.step)
    self.checkpointer.save(step, state, self.data_position(step))

  def train_epoch(self, state: TrainState, epoch: int) -> TrainState:
    """Runs the rest of ``epoch`` from the state's data position."""
    config = self.config
    start = self.data_position(int(state.step))["step_in_epoch"]
    batches = self.pipeline.train_batches(
        self.train_split, config, epoch, start,
        distributed.process_rows(config.batch_size))
    bar = tqdm.tqdm(total=self.steps_per_epoch, initial=start, leave=False,
                    desc=f"epoch {epoch + 1}/{config.num_epochs}",
                    disable=not distributed.is_main_process())
    last_time, last_step = time.perf_counter(), start
    for step_in_epoch, batch in enumerate(batches, start + 1):
      global_step = epoch * self.steps_per_epoch + step_in_epoch
      state, metrics = self.step(state, self.data_parallel.global_batch(batch),
                                 global_step - 1)
      if step_in_epoch % config.log_every_steps == 0:
        metrics = jax.device_get(metrics)  # waits for the step to finish
        if not np.isfinite(metrics["loss"]) and not config.skip_nonfinite_steps:
          self.save(state)  # stops with divergence.DivergedError
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

  def step(self, state: TrainState, batch: Batch,
           step: int) -> tuple[TrainState, dict]:
    """One train step; ``step`` is the optimizer's count, counted on the host
    so that steps stay asynchronous (see ``steps.RefreshPlan``)."""
    step_kwargs = self.refresh_plan.step_kwargs(step)
    state, metrics = self.train_step(state, batch, **step_kwargs)
    self.refresh_plan.after_step(state.opt_state, step_kwargs)
    return state, metrics

  def end_of_epoch_metrics(self, state: TrainState, epoch: int,
                           epoch_seconds: float) -> dict:
    train = _means(jax.device_get(state.epoch_metrics))
    divergence.check(state, steps_per_epoch=self.steps_per_epoch,  # before evaluating garbage
                     num_epochs=self.config.num_epochs,
                     skip_nonfinite_steps=self.config.get("skip_nonfinite_steps", 0),
                     checkpointer=self.checkpointer)
    metrics = {"epoch": epoch + 1,
               "train_loss": train["loss"], "train_accuracy": train["accuracy"],
               "effective_radius": train["radius"],
               "epoch_seconds": epoch_seconds}
    if ((epoch + 1) % self.config.test_every_epochs == 0
        or epoch + 1 == self.config.num_epochs):
      test = evaluate(self.eval_step, state, self.test_split, self.config,
                      self.data_parallel)
      metrics["test_loss"], metrics["test_accuracy"] = test["loss"], test["accuracy"]
    if self.validation_split is not None:
      validation = evaluate(self.eval_step, state, self.validation_split,
                            self.config, self.data_parallel)
      metrics["validation_loss"] = validation["loss"]
      metrics["validation_accuracy"] = validation["accuracy"]
    if self.built_optimizer.entry.has_mask:
      metrics["mask_density"] = mask_density(state.opt_state)
    if self.config.get("skip_nonfinite_steps"):
      metrics["skipped_steps"] = divergence.skipped_steps(state.opt_state)
    return metrics


def train_and_evaluate(config, workdir: str, resume: bool = True,
                       allow_config_change: Sequence[str] = ()) -> dict:
  """Trains (resuming from ``workdir`` if possible), evaluating every epoch.

  Args:
    config: the experiment config (see ``configs/common.py``).
    workdir: checkpoints, metrics and ``config.json``; one run at a time.
    resume: continue from the newest intact checkpoint in ``workdir``.
    allow_config_change: config keys (dotted) that may differ from the
      config the checkpoints were made with.

  Returns:
    The last epoch's metrics (plus ``wall_seconds``).

  Raises:
    errors.RunError: for the expected ways a run stops (an invalid config, a
      busy workdir, a refused resume, no intact checkpoint, divergence);
      the message says what happened and what to do.
  """
  config_validation.validate(config, workdir, num_devices=jax.device_count())
  os.makedirs(workdir, exist_ok=True)
  main_process = distributed.is_main_process()
  # Only process 0 locks: the other processes of a job share its workdir.
  with (workdir_guard.lock(workdir) if main_process
        else contextlib.nullcontext()):
    has_checkpoints = bool(checkpointing.saved_steps(
        os.path.join(workdir, "checkpoints")))
    if has_checkpoints and not resume:
      raise workdir_guard.ResumeRefusedError(
          f"{workdir} holds checkpoints; pass --resume or use a new workdir.")
    changed = workdir_guard.check_config(
        config, workdir, has_checkpoints, allow_config_change,
        defaults=workdir_guard.flat_config(common.get_base_config()))
    trainer = Trainer(config, workdir)
    # The mesh in context lets the library see the data sharding while
    # tracing (the empirical Fisher replicates its examples, see
    # ssam_jax.fisher).
    with jax.set_mesh(trainer.data_parallel.mesh):
      return _train(trainer, config, workdir, resume, main_process, changed)


def _train(trainer: Trainer, config, workdir: str, resume: bool,
           main_process: bool, changed: Optional[dict] = None) -> dict:
  try:
    state = trainer.restore_or_init(resume)
    resumed_step = int(state.step) or None
    if main_process:
      provenance.write(workdir, config)  # one line per start of the program
      # With the first checkpoint of this config: until then config.json
      # describes the checkpoints there are, whatever stops this run.
      # Analyses (experiments.analysis) rebuild the model from it.
      trainer.checkpointer.after_next_save(functools.partial(
          workdir_guard.record_config, config, workdir, resumed_step,
          changed if resumed_step else {}))
    if resumed_step and changed:
      reporting.log("Config changes accepted on resume: " + ", ".join(
          f"{key} {old!r} -> {new!r}" for key, (old, new) in changed.items()))
    elif resumed_step and changed is None:
      reporting.warn(f"{workdir} has no config.json; the config of its "
                     "checkpoints is unknown and not compared.")
    writer = (reporting.MetricWriter(workdir, resumed_step=int(state.step))
              if main_process else reporting.NullWriter())
    try:
      return _train_epochs(trainer, config, workdir, state, writer)
    finally:
      writer.close()
  finally:
    reporting.close_progress_bars()
    trainer.checkpointer.close()


def _train_epochs(trainer: Trainer, config, workdir: str, state: TrainState,
                  writer) -> dict:
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
    state = trainer.start_new_epoch(state)
    trainer.save(state)
    reporting.log(reporting.epoch_summary(metrics, config.num_epochs))
  if not metrics:  # already finished: just report the final model
    test = evaluate(trainer.eval_step, state, trainer.test_split, config,
                    trainer.data_parallel)
    metrics = {"epoch": config.num_epochs, "test_loss": test["loss"],
               "test_accuracy": test["accuracy"]}
  metrics["wall_seconds"] = time.perf_counter() - start_time
  reporting.log(f"FINAL {config.dataset} {config.model} {config.optimizer}: "
                f"test_accuracy={metrics['test_accuracy']:.4f} "
                f"test_loss={metrics['test_loss']:.4f} "
                f"epochs={config.num_epochs} "
                f"wall_seconds={metrics['wall_seconds']:.1f}")
  reporting.log(reporting.where_outputs_are(
      workdir, trainer.checkpointer.latest_step()))
  return metrics
