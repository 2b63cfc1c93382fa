"""SGD, SAM and SSAM on a :mod:`experiments.convergence.problem` and the fitted rate.

Theorems 1-2 of Mi et al. bound (1/T) sum_t E||grad f(w_t)||^2 by
C_1 / sqrt(T) + C_2 log(T) / sqrt(T) for eta_t = eta_0 / sqrt(t) and
rho_t = rho_0 / sqrt(t); :func:`convergence_curves` runs the optimizers
with those schedules and :func:`fit_envelope` fits the rate.
"""

import functools
import math
from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from experiments import optimizer_table
from experiments import optimizers as optimizer_defaults
from experiments.convergence.problem import Constants
from experiments.convergence.problem import Problem
from experiments.convergence.problem import full_gradient
from experiments.convergence.problem import loss
from experiments.convergence.problem import minibatch_gradient


# SGD, SAM and SSAM-F on the Fisher the loop can give: accumulated squared
# minibatch gradients.
DEFAULT_OPTIMIZERS = ("sgd", "sam", "ssam-f-accumulated")


def inverse_sqrt_schedule(value0: float) -> optax.Schedule:
  """``value0 / sqrt(t)`` with ``t = count + 1`` (the first step is ``t = 1``).

  >>> [round(float(inverse_sqrt_schedule(2.0)(c)), 4) for c in range(3)]
  [2.0, 1.4142, 1.1547]
  """
  return lambda count: value0 / jnp.sqrt(jnp.asarray(count, jnp.float32) + 1)


def make_optimizer(name: str, eta0: float, rho0: float,
                   sparsity: float | None = None, mask_update_every: int = 10,
                   total_steps: int = 10_000
                   ) -> optax.GradientTransformationExtraArgs:
  """An optimizer of ``experiments.optimizer_table`` with the theorems' schedules.

  Plain SGD steps (no momentum, no weight decay) on ``eta_t``; the other
  values are the configs' defaults.

  Args:
    name: a name in the optimizer table whose step needs no ``fisher_fn``
      (the loop passes only ``grad_fn``): ``"sgd"``, ``"sam"``,
      ``"ssam-f-accumulated"`` (SSAM-F with the accumulated squared
      gradients standing in for the Fisher), ``"ssam-d"``, ...
    eta0: ``eta_0`` of ``eta_t = eta_0 / sqrt(t)``.
    rho0: ``rho_0`` of ``rho_t = rho_0 / sqrt(t)``.
    sparsity: SSAM's sparsity; ``None``: the configs' default.
    mask_update_every: SSAM's mask refresh interval.
    total_steps: the length of SSAM-D's drop-rate decay.

  Returns:
    An optimizer whose ``update`` takes ``grad_fn``.
  """
  overrides = {} if sparsity is None else {"sparsity": sparsity}
  built = optimizer_table.build(name, optimizer_defaults.default_hyperparams(
      name, total_steps=total_steps, mask_update_every=mask_update_every,
      learning_rate=inverse_sqrt_schedule(eta0),
      rho=inverse_sqrt_schedule(rho0), momentum=None, weight_decay=0.0,
      **overrides))
  if built.entry.uses_fisher_fn:
    raise ValueError(f"optimizer={name!r} needs a fisher_fn, which the "
                     "convergence study does not pass; use "
                     "'ssam-f-accumulated'.")
  return built.optimizer


def squared_gradient_norms(problem: Problem, optimizer, w0: jax.Array,
                           key: jax.Array, num_steps: int
                           ) -> tuple[jax.Array, jax.Array]:
  """``||grad f(w_t)||^2`` for ``t = 0 .. num_steps - 1`` of one stochastic run.

  ``w_t`` is the iterate before update ``t + 1``; each update draws a
  minibatch with ``key`` and passes the same batch's gradient as ``grad_fn``.
  Jit-compatible (a ``lax.scan``); ``vmap`` it over keys for several seeds.

  Returns:
    ``(squared_norms, w_T)``: the ``num_steps`` squared full-gradient norms
    and the final iterate.
  """

  def step(carry, step_key):
    w, state = carry
    batch_grad = lambda v: minibatch_gradient(problem, v, step_key)
    updates, state = optimizer.update(batch_grad(w), state, w,
                                      grad_fn=batch_grad)
    full = full_gradient(problem, w)
    return (optax.apply_updates(w, updates), state), jnp.sum(jnp.square(full))

  keys = jax.random.split(key, num_steps)
  (w_final, _), norms = jax.lax.scan(step, (w0, optimizer.init(w0)), keys)
  return norms, w_final


class Envelope(NamedTuple):
  """Rate fitted to a running average ``y(T)``.

  Attributes:
    slope: least-squares slope of ``log y`` against ``log T`` over
      log-spaced ``T >= t_min``.
    constant: the smallest ``C`` with ``y(T) <= C log(T) / sqrt(T)`` for all
      ``T >= t_min``.
    t_min: first ``T`` used.
  """

  slope: float
  constant: float
  t_min: int


def running_average(squared_norms: jax.Array) -> np.ndarray:
  """``(1/T) sum_{t<T} mean_seeds ||grad f(w_t)||^2`` for ``T = 1 .. num_steps``.

  >>> running_average(np.array([[4.0, 2.0], [2.0, 0.0]])).tolist()
  [3.0, 2.0]

  Args:
    squared_norms: ``(num_seeds, num_steps)``; the mean over seeds estimates
      the expectation.

  Returns:
    A float64 array of length ``num_steps``.
  """
  mean = np.mean(np.asarray(squared_norms, np.float64), axis=0)
  return np.cumsum(mean) / np.arange(1, mean.size + 1)


def fit_envelope(average: np.ndarray, t_min: int = 10) -> Envelope:
  """Fits the log-log slope and the ``C log T / sqrt(T)`` envelope.

  >>> t = np.arange(1, 1001)
  >>> env = fit_envelope(3.0 / np.sqrt(t), t_min=10)
  >>> round(env.slope, 3), round(env.constant, 3)  # max of 3 / log T at T=10
  (-0.5, 1.303)

  Args:
    average: the running average, ``average[T - 1]`` at ``T``.
    t_min: first ``T`` of the fit (>= 2, where ``log T > 0``).

  Returns:
    An :class:`Envelope`.
  """
  if not 2 <= t_min < average.size:
    raise ValueError(f"t_min must be in [2, {average.size - 1}], got {t_min}.")
  t = np.arange(1, average.size + 1, dtype=np.float64)
  sample = np.unique(np.geomspace(t_min, average.size, 50).astype(int)) - 1
  slope = np.polyfit(np.log(t[sample]), np.log(average[sample]), 1)[0]
  tail = slice(t_min - 1, None)
  constant = np.max(average[tail] * np.sqrt(t[tail]) / np.log(t[tail]))
  return Envelope(slope=float(slope), constant=float(constant), t_min=t_min)


def theorem_constants(constants: Constants, eta0: float, rho0: float,
                      loss_decrease: float) -> dict[str, float]:
  """``C_1, C_2`` of Theorem 1 and ``C_3, C_4`` of Theorem 2 of Mi et al.

  ``C_1 = 2 (f(w_0) - E f(w_T)) / eta_0``, ``C_2 = C_4 = 2 (L sigma^2 eta_0
  + L G rho_0)``, ``C_3 = C_1 + 2 L^2 rho_0^2 (1 + eta_0 L) pi^2 / 6``.

  Args:
    constants: ``G``, ``sigma^2``, ``L``.
    eta0: initial learning rate.
    rho0: initial radius.
    loss_decrease: ``f(w_0) - E f(w_T)``.

  Returns:
    A dict with keys ``C1``, ``C2``, ``C3``, ``C4``.
  """
  g, var, l = constants
  c1 = 2 * loss_decrease / eta0
  c2 = 2 * (l * var * eta0 + l * g * rho0)
  c3 = c1 + 2 * l ** 2 * rho0 ** 2 * (1 + eta0 * l) * math.pi ** 2 / 6
  return {"C1": c1, "C2": c2, "C3": c3, "C4": c2}


class ConvergenceCurve(NamedTuple):
  """One optimizer's running average and fitted envelope.

  Attributes:
    average: the running average of ``E||grad f(w_t)||^2``.
    envelope: its fitted rate (:func:`fit_envelope`).
    loss_decrease: ``f(w_0) - E f(w_T)`` (mean over seeds), which enters the
      constants of the theorems.
  """

  average: np.ndarray
  envelope: Envelope
  loss_decrease: float


def convergence_curves(problem: Problem, key: jax.Array, num_steps: int = 10_000,
                       num_seeds: int = 8, eta0: float = 1.0, rho0: float = 0.2,
                       optimizers: Sequence[str] = DEFAULT_OPTIMIZERS,
                       sparsity: float | None = None, t_min: int = 10,
                       w0: jax.Array | None = None
                       ) -> dict[str, ConvergenceCurve]:
  """Runs each optimizer ``num_seeds`` times and fits its rate.

  >>> import jax
  >>> from experiments.convergence.problem import make_problem
  >>> p = make_problem(jax.random.key(0), num_examples=64, dim=4)
  >>> curves = convergence_curves(p, jax.random.key(1), num_steps=500,
  ...                             num_seeds=2, optimizers=("sam",))
  >>> c = curves["sam"]
  >>> bool(c.average[-1] < c.average[0] / 4), c.average.shape
  (True, (500,))

  Args:
    problem: the data.
    key: PRNG key; seed ``s`` uses ``fold_in(key, s)`` for its minibatches,
      the same for every optimizer.
    num_steps: ``T``.
    num_seeds: runs averaged for the expectation.
    eta0: ``eta_0``.
    rho0: ``rho_0`` (Theorem 2 assumes ``rho_0 <= G eta_0 / 2``).
    optimizers: names for :func:`make_optimizer`.
    sparsity: SSAM's sparsity; ``None``: the configs' default.
    t_min: first ``T`` of the fit.
    w0: the common starting point (default: the origin).

  Returns:
    A dict from optimizer name to :class:`ConvergenceCurve`.
  """
  dim = problem.features.shape[1]
  w0 = jnp.zeros(dim) if w0 is None else w0
  seed_keys = jnp.stack([jax.random.fold_in(key, s) for s in range(num_seeds)])
  curves = {}
  for name in optimizers:
    optimizer = make_optimizer(name, eta0, rho0, sparsity,
                               total_steps=num_steps)
    run = jax.jit(jax.vmap(functools.partial(
        squared_gradient_norms, problem, optimizer, w0, num_steps=num_steps)))
    squared_norms, finals = run(seed_keys)
    average = running_average(squared_norms)
    final_losses = jax.vmap(functools.partial(loss, problem))(finals)
    curves[name] = ConvergenceCurve(
        average=average, envelope=fit_envelope(average, t_min),
        loss_decrease=float(loss(problem, w0) - jnp.mean(final_losses)))
  return curves
