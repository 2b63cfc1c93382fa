"""The cheaper ascents of the optimizer table: their checks and their wrappers.

A sharpness-aware row of ``experiments.optimizer_table`` (``sam``, every
``ssam-*``) takes one of :data:`ASCENTS` (docs/efficient.md):

* ``"always"``: SAM's ascent on every update, the row's optimizer itself;
* ``"scheduled"``: :func:`ssam_jax.scheduled_ascent`, every ``k``-th
  update or with probability ``p`` (RST);
* ``"looksam"``: :func:`ssam_jax.looksam`, every ``k``-th update, its
  sharpness direction reused in between;
* ``"msam"``: :func:`ssam_jax.msam`, along the momentum, one gradient per
  update.

The sub-batch ascent (``ascent_batch_fraction``) is the train step's
(``experiments.steps``); here it is only checked against the ascent.

With ``static_ascent`` (the trainer's choice) the host decides which updates
of ``"scheduled"`` and ``"looksam"`` ascend (:class:`HostAscent`) and the
step passes ``ascend`` as a static argument: two compiled steps instead of a
``lax.cond`` around the second gradient, which XLA:CPU runs several times
slower (see :mod:`ssam_jax.workarounds`). Without it the optimizer decides
under ``lax.cond``, drawing ``p`` from a PRNG key in its state.

The fields read here are those of ``optimizer_table.Hyperparams``; the config
keys have the same names, so every message starts ``key=value:``.
"""

import dataclasses
import math

import numpy as np
import optax

import ssam_jax

ASCENTS = ("always", "scheduled", "looksam", "msam")
EVERY_K = ("scheduled", "looksam")  # the ascents that read ascent_every


@dataclasses.dataclass(frozen=True)
class HostAscent:
  """Which updates ascend, decided on the host from the update's count.

  ``probability`` 0: the counts that are multiples of ``every``, the
  library's rule. ``probability`` p > 0: a draw with probability p from a
  generator seeded by ``seed`` and the count, so every process draws the
  same and a resumed run continues the same sequence.
  """

  every: int
  probability: float
  seed: int

  def __call__(self, step: int) -> bool:
    if self.probability:
      draw = np.random.default_rng([self.seed, step]).random()
      return bool(draw < self.probability)
    return step % self.every == 0


def host_ascent(hp) -> HostAscent | None:
  """The host's schedule of ``hp``, or None: every update ascends, or the
  optimizer keeps its own schedule."""
  if hp.static_ascent and hp.ascent in EVERY_K:
    return HostAscent(hp.ascent_every, hp.ascent_probability, hp.seed)
  return None


def wrap(optimizer: optax.GradientTransformationExtraArgs, hp):
  """``optimizer`` (built by ``sam`` or ``ssam``) with the ascent of ``hp``."""
  if hp.ascent == "msam":
    return ssam_jax.msam(optimizer)
  every = "manual" if hp.static_ascent else hp.ascent_every
  if hp.ascent == "looksam":
    return ssam_jax.looksam(optimizer, every, hp.looksam_alpha)
  if hp.ascent == "scheduled":
    if hp.ascent_probability and not hp.static_ascent:
      return ssam_jax.scheduled_ascent(
          optimizer, probability=hp.ascent_probability, seed=hp.seed)
    return ssam_jax.scheduled_ascent(optimizer, every)
  return optimizer


def _require(valid: bool, name: str, value, must: str) -> None:
  if not valid:
    raise ValueError(f"{name}={value!r}: {must}.")


def _is_number(value) -> bool:
  return (isinstance(value, (int, float)) and not isinstance(value, bool)
          and math.isfinite(value))


def check(name: str, sharpness_aware: bool, hp) -> None:
  """Raises a ValueError for an ascent that the row ``name`` cannot take.

  Args:
    name: the row's name in the optimizer table.
    sharpness_aware: whether the row perturbs.
    hp: its ``Hyperparams``.
  """
  _require(hp.ascent in ASCENTS, "ascent", hp.ascent,
           f"must be one of {', '.join(ASCENTS)}")
  every, p = hp.ascent_every, hp.ascent_probability
  fraction, alpha = hp.ascent_batch_fraction, hp.looksam_alpha
  _require(isinstance(every, int) and not isinstance(every, bool)
           and every >= 1, "ascent_every", every, "must be an integer >= 1")
  _require(_is_number(p) and 0 <= p < 1, "ascent_probability", p,
           "must be a number in [0, 1) (1 is ascent='always')")
  _require(_is_number(fraction) and 0 < fraction <= 1,
           "ascent_batch_fraction", fraction, "must be a number in (0, 1]")
  _require(alpha is None or (_is_number(alpha) and alpha >= 0),
           "looksam_alpha", alpha, "must be a finite number >= 0")
  for key, value, default in (("ascent", hp.ascent, "always"),
                              ("ascent_batch_fraction", fraction, 1)):
    _require(value == default or (sharpness_aware and name != "optax-sam"),
             key, value, f"optimizer {name!r} takes no cheaper ascent: "
             + ("it does not perturb" if not sharpness_aware
                else "use 'sam', the same SAM built by ssam_jax"))
  _require(every == 1 or hp.ascent in EVERY_K, "ascent_every", every,
           f"only ascent='scheduled' and 'looksam' read it, not "
           f"ascent={hp.ascent!r}")
  if p:
    _require(hp.ascent == "scheduled", "ascent_probability", p,
             f"only ascent='scheduled' reads it, not ascent={hp.ascent!r}")
    _require(every == 1, "ascent_probability", p,
             f"ascends at random, not every k-th update: needs "
             f"ascent_every=1, got {every}")
  if hp.ascent == "looksam":
    _require(alpha is not None, "looksam_alpha", alpha,
             "ascent='looksam' needs LookSAM's alpha")
  if hp.ascent == "msam":
    _require(hp.momentum is not None, "ascent", hp.ascent,
             "msam perturbs along the momentum: needs a momentum, not None")
  if fraction != 1:
    why = {"msam": "msam takes no first gradient: its ascent follows the "
                   "momentum",
           "looksam": "looksam reads the whole batch's gradient at w on "
                      "every update (g_v, and the updates between ascents)"}
    if not hp.static_ascent:
      why["scheduled"] = (
          "with ascent='scheduled' the step must know whether an update "
          "ascends (the others consume the whole batch's gradient): needs "
          "static_ascent=True")
    _require(hp.ascent not in why, "ascent_batch_fraction", fraction,
             why.get(hp.ascent, ""))


def check_fast_path(hp) -> None:
  """Raises a ValueError unless the tensor-wise fast path (a first gradient
  of the perturbed tensors only) suits the ascent of ``hp``."""
  why = {"msam": "takes no first gradient",
         "looksam": "reads the gradient at w of every tensor"}
  if not hp.static_ascent:
    why["scheduled"] = ("under lax.cond feeds the first gradient to the base "
                        "optimizer on updates without the ascent: needs "
                        "static_ascent=True")
  if hp.ascent in why:
    raise ValueError(f"fast_path needs a first gradient of the perturbed "
                     f"tensors only, but ascent={hp.ascent!r} "
                     f"{why[hp.ascent]}.")
