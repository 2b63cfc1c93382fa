"""Train steps of every optimizer on one Flax model, and how to time them.

Each optimizer gets one jitted step with donated params and state, built on
the same loss: the unperturbed pass updates the BatchNorm statistics, the
perturbed pass (``grad_fn``) discards its own. Inputs are random tensors of
the dataset's shape: step time does not depend on their values.
"""

import argparse
import collections
import dataclasses
import sys
import time
from collections.abc import Callable
from typing import Any, Optional

import jax
import jax.numpy as jnp
import numpy as np

import ssam_jax
from ssam_jax import leaf_filters
from experiments import optimizer_table
from experiments import optimizers
from experiments import steps

NO_REFRESH = 10**9  # mask_update_every for timing steps without a refresh
TOTAL_STEPS = 10_000  # length of SSAM-D's drop-rate decay
RANDOM_WINDOW = 20  # steps per timed call of a random ascent (probability)


@dataclasses.dataclass(frozen=True)
class OptimizerSpec:
  """One row of the benchmark: an optimizer of ``experiments.optimizer_table``
  with the configs' defaults, and how its step runs.

  Attributes:
    name: the row's label.
    optimizer: a name in the optimizer table.
    pattern: SSAM's mask pattern.
    sparsity: SSAM's sparsity; ``None``: the configs' default.
    fast_path: tensorwise first gradient of the perturbed leaves only (with
      ``normalize="masked"``).
    mask_update_every: T_m in steps.
    perturbed_leaves: regex on ``"Module_0/kernel"`` paths; ``None``: all.
    static_refresh: ``True``: the refresh decision is a static argument of
      each step, as the training program passes it; ``False``: ``update``
      decides under ``lax.cond``.
    ascent, ascent_every, ascent_probability, ascent_batch_fraction: the
      cheaper ascent (``experiments.ascents``), decided on the host as the
      training program does.
  """

  name: str
  optimizer: str
  pattern: str = "unstructured"
  sparsity: Optional[float] = None
  fast_path: bool = False
  mask_update_every: int = NO_REFRESH
  perturbed_leaves: Optional[str] = None
  static_refresh: bool = True
  ascent: str = "always"
  ascent_every: int = 1
  ascent_probability: float = 0.0
  ascent_batch_fraction: float = 1.0

  def hyperparams(self) -> optimizer_table.Hyperparams:
    overrides = {} if self.sparsity is None else {"sparsity": self.sparsity}
    return optimizers.default_hyperparams(
        self.optimizer, total_steps=TOTAL_STEPS,
        mask_update_every=self.mask_update_every, pattern=self.pattern,
        normalize="masked" if self.fast_path else "full",
        perturbed_leaves=self.perturbed_leaves,
        static_refresh=self.static_refresh, ascent=self.ascent,
        ascent_every=self.ascent_every,
        ascent_probability=self.ascent_probability,
        ascent_batch_fraction=self.ascent_batch_fraction, static_ascent=True,
        **overrides)

  def build(self) -> optimizer_table.Built:
    return optimizer_table.build(self.optimizer, self.hyperparams())

  @property
  def cheaper_ascent(self) -> bool:
    return self.ascent != "always" or self.ascent_batch_fraction != 1


def standard_specs(last_block: Optional[str] = None) -> list[OptimizerSpec]:
  """Every row of the table; ``last_block`` (a leaf-path regex) adds a fast-path
  row whose Fisher choice is confined to the network's last block."""
  specs = [OptimizerSpec("sgd", "sgd"), OptimizerSpec("optax.contrib.sam", "optax-sam"),
           OptimizerSpec("sam", "sam")]
  for optimizer in ("ssam-f", "ssam-d"):
    for pattern, sparsities in (("unstructured", (0.5, 0.9, 0.99)),
                                ("tensorwise", (0.5, 0.9, 0.99)), ("2:4", (0.5,))):
      for sparsity in sparsities:
        specs.append(OptimizerSpec(f"ssam-{optimizer[-1].upper()} {pattern} s={sparsity}",
                                   optimizer, pattern, sparsity))
  for sparsity in (0.5, 0.9):
    specs.append(OptimizerSpec(f"ssam-F tensorwise s={sparsity} fast path", "ssam-f",
                               "tensorwise", sparsity, fast_path=True))
  specs.append(OptimizerSpec("ssam-F unstructured s=0.5, refresh under lax.cond", "ssam-f",
                             "unstructured", 0.5, static_refresh=False))
  if last_block is not None:
    specs.append(OptimizerSpec("ssam-F tensorwise s=0.9 fast path, last block only", "ssam-f",
                               "tensorwise", 0.9, fast_path=True,
                               perturbed_leaves=last_block))
  specs.append(OptimizerSpec("ssam-F s=1 (no perturbation)", "ssam-f", sparsity=1.0))
  return specs


# The cheaper ascents (docs/efficient.md) by the words of their row.
ASCENT_VARIANTS = {
    "every 2": dict(ascent="scheduled", ascent_every=2),
    "every 5": dict(ascent="scheduled", ascent_every=5),
    "p=0.2": dict(ascent="scheduled", ascent_probability=0.2),
    "looksam 5": dict(ascent="looksam", ascent_every=5),
    "msam": dict(ascent="msam"),
    "ascent 1/4 batch": dict(ascent_batch_fraction=0.25),
}


def ascent_specs() -> list[OptimizerSpec]:
  """Each cheaper ascent dense (``"sam <variant>"``) and with SSAM-F at 50 %
  (``"ssam-F unstructured s=0.5 <variant>"``)."""
  specs = []
  for words, ascent in ASCENT_VARIANTS.items():
    specs.append(OptimizerSpec(f"sam {words}", "sam", **ascent))
    specs.append(OptimizerSpec(f"ssam-F unstructured s=0.5 {words}", "ssam-f",
                               "unstructured", 0.5, **ascent))
  return specs


class ModelBench:
  """A Flax model with a random batch, and the train step of any optimizer on it.

  The step is the training program's (``experiments.steps``); inputs are
  random tensors of the dataset's shape, since step time does not depend on
  their values.
  """

  def __init__(self, model, input_shape, num_classes, batch_size, seed=0):
    self.model = model
    key_init, key_x, key_y = jax.random.split(jax.random.key(seed), 3)
    self.batch = {
        "image": jax.random.normal(key_x, (batch_size,) + tuple(input_shape)),
        "label": jax.random.randint(key_y, (batch_size,), 0, num_classes)}
    variables = model.init(key_init, self.batch["image"][:1], train=False)
    self.params, self.batch_stats = variables["params"], variables["batch_stats"]
    self.num_params = sum(p.size for p in jax.tree.leaves(self.params))
    self.loss_fns = steps.flax_loss_fns(model)

  def make_step(self, built: optimizer_table.Built, perturbed: Optional[tuple] = None,
                refresh: Optional[bool] = None, trace_counter: Optional[list] = None,
                ascend: Optional[bool] = None):
    """The jitted train step of ``built`` with donated params and states.

    ``perturbed`` selects the fast path; ``refresh`` is static, or ``None``
    for the optimizer's traced schedule; ``ascend`` is static for a host
    ascent schedule (``built.host_ascent``), else ``None``. Each trace
    appends to ``trace_counter``, so retracing can be asserted.
    """
    train_step = steps.make_train_step(
        self.loss_fns, built.optimizer, fisher_unroll=optimizers.fisher_unroll(),
        **built.step_options(min(optimizers.default_num_fisher_samples(),
                                 len(self.batch["label"]))))
    static = {"perturbed": perturbed, "refresh": refresh}
    if ascend is not None:
      static["ascend"] = ascend

    def step(params, opt_state, batch_stats, batch):
      if trace_counter is not None:
        trace_counter.append(perturbed)
      out = train_step(params, opt_state, batch_stats, batch, **static)
      return out.params, out.opt_state, out.model_state, out.loss

    return jax.jit(step, donate_argnums=(0, 1, 2))

  def fresh_inputs(self, opt):
    copy = lambda tree: jax.tree.map(jnp.copy, tree)
    return copy(self.params), opt.init(self.params), copy(self.batch_stats)


def state_bytes(state) -> int:
  return sum(x.nbytes for x in jax.tree.leaves(state) if hasattr(x, "nbytes"))


def compiled_costs(step, args) -> dict[str, float]:
  compiled = step.lower(*args).compile()
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  memory = compiled.memory_analysis()
  return {"flops": float(cost.get("flops", float("nan"))),
          "temp_bytes": float(getattr(memory, "temp_size_in_bytes", float("nan")))}


class RunningStep:
  """A compiled step with its own params/state, advanced one call at a time.

  Step 0 refreshes the mask from its random start, as training does; the
  timed steps that follow are steps without a refresh (or with one, for the
  rows that refresh every step). With ``static_refresh`` these are two
  compilations, as in the training program, and no ``lax.cond`` is timed.

  A row whose host decides which steps ascend (``built.host_ascent``) times
  a cycle per call: the ``k`` steps of ``every=k`` (one with the ascent), or
  ``RANDOM_WINDOW`` steps drawn with probability ``p`` (``ascent_fraction``
  says how many ascended); a call returns the mean seconds per step, and the
  FLOPs are the mean over the cycle. The steps with and without the ascent
  are compiled separately, as in the training program. The rows of a
  cheaper ascent skip the first refresh: their timed steps do the same work
  whatever the mask, and a compilation fewer keeps the GPU suite short.
  """

  def __init__(self, bench: ModelBench, spec: OptimizerSpec):
    self.bench, self.spec = bench, spec
    self.built = spec.build()
    params, state, stats = bench.fresh_inputs(self.built.optimizer)
    self.state_bytes = state_bytes(state)
    self.args = [params, state, stats]
    self.traces = []
    self._steps = {}  # static arguments -> jitted step
    static = self.built.host_refresh_every is not None
    host_ascent = self.built.host_ascent
    if not spec.cheaper_ascent:
      self.cycle = [(None, True if static else None,
                     None if host_ascent is None else True)]
      self.call()
    # Every tensor-wise row records what it perturbs; only the fast path uses it.
    tensorwise = spec.pattern == "tensorwise" and self.built.entry.has_mask
    perturbed = ssam_jax.perturbed_tensors(self.args[1]) if tensorwise else None
    self.perturbed = perturbed if spec.fast_path else None
    self.perturbed_leaf_names = [] if perturbed is None else [
        path for path, active in zip(leaf_filters.leaf_paths(bench.params), perturbed) if active]
    timed_refresh = (spec.mask_update_every == 1) if static else None
    if host_ascent is None:
      ascends = [None]
    else:
      length = RANDOM_WINDOW if spec.ascent_probability else spec.ascent_every
      ascends = [host_ascent(t) for t in range(1, length + 1)]
    # Steps without the ascent take the first gradient of every tensor.
    self.cycle = [(self.perturbed if a is not False else None, timed_refresh, a)
                  for a in ascends]
    self.ascent_fraction = (None if host_ascent is None
                            else sum(ascends) / len(ascends))
    self.call()
    self.expected_traces = len(self._steps)
    self.costs = self._costs()

  def _step(self, key):
    if key not in self._steps:
      perturbed, refresh, ascend = key
      self._steps[key] = self.bench.make_step(
          self.built, perturbed, refresh=refresh, trace_counter=self.traces,
          ascend=ascend)
    return self._steps[key]

  def _costs(self):
    """FLOPs (the mean over a cycle) and memory (the largest) of the timed step.

    XLA's cost analysis counts both branches of ``lax.cond``, so a traced
    schedule would be charged for the Fisher on every step. For those rows
    the same step with a fixed mask (``random_mask``, no refresh branch),
    which does identical work on steps without a refresh, is analysed.
    """
    args = self.args + [self.bench.batch]
    if self.built.entry.reselects and not self.spec.static_refresh:
      built = dataclasses.replace(self.spec, optimizer="ssam-random").build()
      args = list(self.bench.fresh_inputs(built.optimizer)) + args[3:]
      return compiled_costs(self.bench.make_step(built, self.perturbed), args)
    counts = collections.Counter(self.cycle)
    costs = {key: compiled_costs(self._step(key), args) for key in counts}
    return {"flops": sum(counts[key] * cost["flops"] for key, cost in costs.items())
                     / len(self.cycle),
            "temp_bytes": max(cost["temp_bytes"] for cost in costs.values())}

  def call(self) -> float:
    """Runs one cycle, waiting for each step as a one-step cycle does; the
    mean seconds per step."""
    start = time.perf_counter()
    for key in self.cycle:
      params, state, stats, loss = self._step(key)(*self.args, self.bench.batch)
      self.args = [params, state, stats]
      jax.block_until_ready(loss)
    return (time.perf_counter() - start) / len(self.cycle)


def interleaved_times(runners: dict[str, RunningStep], repetitions: int) -> dict[str, list]:
  """Times each runner once per round, rounds repeated, so drift hits all alike.

  Raises if any step was traced again while being timed: one trace per
  compiled step (the refresh step, and the timed step where it differs).
  """
  times = time_rounds({name: runner.call for name, runner in runners.items()},
                      repetitions)
  for name, runner in runners.items():
    if len(runner.traces) != runner.expected_traces:
      raise AssertionError(f"{name}: traced {len(runner.traces)} times, "
                           f"expected {runner.expected_traces}.")
  return times


def time_rounds(calls: dict[str, Callable[[], float]],
                repetitions: int) -> dict[str, list]:
  """Each call (returning its own elapsed seconds) once per round, repeated."""
  times = {name: [] for name in calls}
  for _ in range(repetitions):
    for name, call in calls.items():
      times[name].append(call())
  return times


def timed(fn: Callable[[], Any]) -> Callable[[], float]:
  """A call of ``fn`` that waits for its result and returns the seconds taken."""

  def call() -> float:
    start = time.perf_counter()
    jax.block_until_ready(fn())
    return time.perf_counter() - start

  return call


def median_time(fn: Callable[[], Any], repetitions: int) -> dict[str, float]:
  """``summarize`` of ``repetitions`` timed calls of ``fn``, after one to compile."""
  call = timed(fn)
  call()
  return summarize(time_rounds({"fn": call}, repetitions)["fn"])


def argument_parser(doc: str, repetitions: int, out: str) -> argparse.ArgumentParser:
  """A parser with the options every benchmark takes: ``--repetitions``, ``--out``."""
  parser = argparse.ArgumentParser(description=doc,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--repetitions", type=int, default=repetitions)
  parser.add_argument("--out", default=out)
  return parser


def command_line(module: str) -> str:
  """How this benchmark was invoked, for its JSON: ``python -m module args``."""
  return " ".join(["python -m", module] + sys.argv[1:])


def summarize(samples: list[float]) -> dict[str, float]:
  q1, median, q3 = np.percentile(samples, [25, 50, 75])
  return {"median_s": float(median), "iqr_s": float(q3 - q1), "n": len(samples)}
