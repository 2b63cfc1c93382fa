"""Argument checks shared by the transformations: errors name the argument."""

import jax
import numpy as np

def require_params(params, name: str):
  if params is None:
    raise ValueError(
        f"{name}.update() needs params: the perturbation is taken around the "
        "current parameters. Call update(grads, state, params, grad_fn=...).")
  return params


def is_injected(value) -> bool:
  """True for an array, e.g. a value set by ``optax.inject_hyperparams``.

  Such values may be traced, so they are not checked at construction.
  """
  return isinstance(value, (jax.Array, np.ndarray))


def check_rho(rho) -> None:
  if callable(rho) or is_injected(rho):
    return
  if isinstance(rho, bool) or not isinstance(rho, (int, float)):
    raise TypeError(f"rho must be a number or an Optax schedule, got {rho!r}.")
  if not rho >= 0 or rho == float("inf"):
    raise ValueError(f"rho must be finite and >= 0, got {rho}.")


def check_adaptive_eta(adaptive_eta) -> None:
  if is_injected(adaptive_eta):
    return
  if not isinstance(adaptive_eta, (int, float)) or not adaptive_eta >= 0:
    raise ValueError(f"adaptive_eta must be a number >= 0, got {adaptive_eta!r}.")


def check_axis_options(axis_name, m_sharpness) -> None:
  if axis_name is not None and not isinstance(axis_name, (str, tuple)):
    raise TypeError(f"axis_name must be a str or tuple of str, got {axis_name!r}.")
  if not isinstance(m_sharpness, bool):
    raise TypeError(f"m_sharpness must be a bool, got {m_sharpness!r}.")
  if m_sharpness and axis_name is None:
    raise ValueError(
        "m_sharpness=True needs axis_name: each device perturbs with its own "
        "gradient inside shard_map/pmap, then the perturbed gradients are "
        "averaged over axis_name.")


def is_static_zero(value) -> bool:
  return isinstance(value, (int, float)) and not isinstance(value, bool) and value == 0
