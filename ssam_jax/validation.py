"""Argument checks shared by the library: every error names the argument.

A value of the wrong type raises ``TypeError``, a value of the right type out
of range ``ValueError``. Arrays (for instance hyperparameters injected by
``optax.inject_hyperparams``) may be traced, so they are accepted unchecked
where a hyperparameter may be injected.
"""

import math
from typing import Any, Optional

import jax
import numpy as np


def is_injected(value) -> bool:
  """True for an array, e.g. a value set by ``optax.inject_hyperparams``."""
  return isinstance(value, (jax.Array, np.ndarray))


def is_static(value, number) -> bool:
  """True when ``value`` is a Python number equal to ``number``."""
  return (isinstance(value, (int, float)) and not isinstance(value, bool)
          and value == number)


def _check_not_injected(name: str, value) -> None:
  if is_injected(value):
    raise TypeError(
        f"{name} must be a Python number, fixed at construction; got an "
        f"array. With optax.inject_hyperparams, name {name!r} in static_args.")


def check_int(name: str, value, *, minimum: Optional[int] = None,
              injectable: bool = False) -> None:
  """An ``int`` (not a bool) >= ``minimum``."""
  if injectable and is_injected(value):
    return
  _check_not_injected(name, value)
  if isinstance(value, bool) or not isinstance(value, int):
    raise TypeError(f"{name} must be an int, got {value!r}.")
  if minimum is not None and value < minimum:
    raise ValueError(f"{name} must be >= {minimum}, got {value}.")


def check_number(name: str, value, *, minimum: float = -math.inf,
                 maximum: float = math.inf, injectable: bool = False) -> None:
  """A finite ``int`` or ``float`` (not a bool) in ``[minimum, maximum]``."""
  if injectable and is_injected(value):
    return
  _check_not_injected(name, value)
  if isinstance(value, bool) or not isinstance(value, (int, float)):
    raise TypeError(f"{name} must be a number, got {value!r}.")
  if not (math.isfinite(value) and minimum <= value <= maximum):
    bounds = (f"in [{minimum:g}, {maximum:g}]" if math.isfinite(maximum)
              else f">= {minimum:g}")
    raise ValueError(f"{name} must be finite and {bounds}, got {value}.")


def check_choice(name: str, value, choices: tuple) -> None:
  if value not in choices:
    raise ValueError(f"{name} must be one of {choices}, got {value!r}.")


def check_bool(name: str, value) -> None:
  if not isinstance(value, bool):
    raise TypeError(f"{name} must be a bool, got {value!r}.")


def check_rho(rho) -> None:
  """A number >= 0, an injected array or an Optax schedule."""
  if callable(rho):
    return
  check_number("rho", rho, minimum=0, injectable=True)


def check_axis_options(axis_name, m_sharpness) -> None:
  if axis_name is not None and not isinstance(axis_name, (str, tuple)):
    raise TypeError(f"axis_name must be a str or tuple of str, got {axis_name!r}.")
  check_bool("m_sharpness", m_sharpness)
  if m_sharpness and axis_name is None:
    raise ValueError(
        "m_sharpness=True needs axis_name: each device perturbs with its own "
        "gradient inside shard_map/pmap, then the perturbed gradients are "
        "averaged over axis_name.")


def require_params(params: Any, name: str) -> Any:
  if params is None:
    raise ValueError(
        f"{name}.update() needs params: the perturbation is taken around the "
        "current parameters. Call update(grads, state, params, grad_fn=...).")
  return params
