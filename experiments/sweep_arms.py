"""The arms of the evidence sweeps (``experiments.sweep``), as records.

An :class:`Arm` is an optimizer of ``experiments.optimizer_table`` and the
config values it changes. Its label, the key of the results files and
summaries (``"ssam-f s=0.5"``, ``"sgd 2x epochs"``), and its config overrides
are both derived from the record; no code reads a label back. Labels from
the results files are looked up in :func:`arm`, which also maps the labels of
the legacy sweep explicitly (``LEGACY_ARMS``).

Tables and figures show :meth:`Arm.display_label`: the label, except that a
tensor-wise arm is named by what it perturbs, measured
(``experiments.tensorwise_masks``), rather than by its budget: its label
``"ssam-f tensorwise s=0.9 last block"`` says that at most 10 % of the last
block may be perturbed, its display label ``"ssam-f tensorwise (BatchNorm_2 +
Dense_0, 0.827 %)"`` what was.
"""

import dataclasses
from typing import Any, Optional

from experiments import optimizer_table
from experiments import rho_search

# Config values of the tensor-wise arms: the fast path needs all three.
TENSORWISE = {"pattern": "tensorwise", "normalize": "masked", "fast_path": True}
# Named groups of leaves an arm may confine the perturbation to (regexes on
# the small CNN's "Module_0/kernel" paths).
LEAF_GROUPS = {"last block": "^(Conv_2|BatchNorm_2|Dense_0)/"}
# Config keys an arm may double, with the words of its label.
DOUBLED = {"num_epochs": "epochs", "weight_decay_sam": "weight decay"}
# The cheaper ascents (``config.ascent*``, see docs/experiments.md), by the
# words of their label, and the gradients an update costs in units of SGD's.
VARIANTS = {
    "every 10": ({"ascent": "scheduled", "ascent_every": 10}, 1.1),
    "every 5": ({"ascent": "scheduled", "ascent_every": 5}, 1.2),
    "p=0.1": ({"ascent": "scheduled", "ascent_probability": 0.1}, 1.1),
    "p=0.2": ({"ascent": "scheduled", "ascent_probability": 0.2}, 1.2),
    "looksam 10": ({"ascent": "looksam", "ascent_every": 10}, 1.1),
    "looksam 5": ({"ascent": "looksam", "ascent_every": 5}, 1.2),
    "msam": ({"ascent": "msam"}, 1.0),
    "ascent 1/8 batch": ({"ascent_batch_fraction": 0.125}, 1.125),
    "ascent 1/4 batch": ({"ascent_batch_fraction": 0.25}, 1.25),
}
# Variants that differ only in their knob: the knob is chosen on validation
# (``experiments.rho_search``), each value at its own rho.
VARIANT_FAMILIES = {
    "every k": ("every 10", "every 5"), "random ascent": ("p=0.1", "p=0.2"),
    "looksam": ("looksam 10", "looksam 5"), "msam": ("msam",),
    "sub-batch ascent": ("ascent 1/8 batch", "ascent 1/4 batch"),
}


@dataclasses.dataclass(frozen=True)
class Arm:
  """One arm of a sweep.

  Attributes:
    optimizer: a name in ``experiments.optimizer_table``.
    sparsity: the sparsity of an optimizer with a mask, else ``None``.
    tensorwise: the tensor-wise pattern with masked normalisation and the
      fast path (``TENSORWISE``).
    leaves: a key of ``LEAF_GROUPS`` the perturbation is confined to.
    doubled: a key of ``DOUBLED``: the arm runs twice the regime's value.
    variant: a key of ``VARIANTS``: a cheaper ascent.
    normalize: ``"masked"``: SSAM's ``eps`` is normalised by the masked
      gradient, so ``||eps|| = rho`` at every sparsity; ``None``: the
      config's (the paper's ``"full"``).
    rho_grid: the arm chooses its own rho on validation, starting from this
      grid (``experiments.rho_search``); ``None``: it trains at the rho
      chosen for SAM, as the paper does.
    label_noise: the label noise of the legacy sweep's noisy rows; later
      sweeps give noise a regime of its own.
  """

  optimizer: str
  sparsity: Optional[float] = None
  tensorwise: bool = False
  leaves: Optional[str] = None
  doubled: Optional[str] = None
  variant: Optional[str] = None
  normalize: Optional[str] = None
  rho_grid: Optional[tuple[float, ...]] = None
  label_noise: Optional[float] = None

  def __post_init__(self):
    has_mask = optimizer_table.get(self.optimizer).has_mask
    if has_mask != (self.sparsity is not None):
      raise ValueError(f"Arm {self.optimizer!r}: sparsity={self.sparsity!r} "
                       "must be given exactly for an optimizer with a mask.")
    if self.leaves is not None and self.leaves not in LEAF_GROUPS:
      raise ValueError(f"Arm leaves={self.leaves!r}: expected one of "
                       f"{', '.join(LEAF_GROUPS)}.")
    if self.doubled is not None and self.doubled not in DOUBLED:
      raise ValueError(f"Arm doubled={self.doubled!r}: expected one of "
                       f"{', '.join(DOUBLED)}.")
    if self.variant is not None and (
        self.variant not in VARIANTS
        or not optimizer_table.get(self.optimizer).sharpness_aware):
      raise ValueError(f"Arm variant={self.variant!r}: expected one of "
                       f"{', '.join(VARIANTS)}, on a sharpness-aware arm.")
    if self.normalize not in (None, "masked") or (
        self.normalize and (not has_mask or self.tensorwise)):
      raise ValueError(f"Arm normalize={self.normalize!r}: expected None or "
                       "'masked', on an unstructured sparse arm.")
    if self.rho_grid is not None:
      if not optimizer_table.get(self.optimizer).sharpness_aware:
        raise ValueError(f"Arm rho_grid={self.rho_grid!r}: {self.optimizer!r} "
                         "has no rho.")
      rho_search.check_start(self.rho_grid, "Arm rho_grid")

  @property
  def label(self) -> str:
    """``[noiseN ]optimizer[ tensorwise][ s=S][ variant][ masked][ own rho][
    leaves][ 2x what]``."""
    words = [] if self.label_noise is None else [f"noise{self.label_noise:g}"]
    words.append(self.optimizer)
    if self.tensorwise:
      words.append("tensorwise")
    if self.sparsity is not None:
      words.append(f"s={self.sparsity:g}")
    if self.variant is not None:
      words.append(self.variant)
    if self.normalize is not None:
      words.append(self.normalize)
    if self.rho_grid is not None:
      words.append("own rho")
    if self.leaves is not None:
      words.append(self.leaves)
    if self.doubled is not None:
      words.append(f"2x {DOUBLED[self.doubled]}")
    return " ".join(words)

  def display_label(self, perturbs: Optional[str] = None) -> str:
    """The name tables and figures show.

    Args:
      perturbs: for a tensor-wise arm, what its mask perturbs, measured
        (``experiments.tensorwise_masks.perturbs``: the tensors and the
        density); ignored for other arms.

    Returns:
      ``label``, or for a tensor-wise arm ``"[noiseN ]optimizer tensorwise
      (perturbs)[ variant][ own rho][ 2x what]"``: the budget and the leaf
      group, which bound the mask, give way to what it is.

    Raises:
      ValueError: a tensor-wise arm without ``perturbs``.
    """
    if not self.tensorwise:
      return self.label
    if not perturbs:
      raise ValueError(f"Arm {self.label!r} is tensor-wise: its display label "
                       "needs what it perturbs (experiments.tensorwise_masks).")
    words = [] if self.label_noise is None else [f"noise{self.label_noise:g}"]
    words += [self.optimizer, f"tensorwise ({perturbs})"]
    if self.variant is not None:
      words.append(self.variant)
    if self.rho_grid is not None:
      words.append("own rho")
    if self.doubled is not None:
      words.append(f"2x {DOUBLED[self.doubled]}")
    return " ".join(words)

  @property
  def plain(self) -> bool:
    """Only an optimizer and its sparsity: a point of the sparsity axis, or
    a dense reference."""
    return self == Arm(self.optimizer, self.sparsity)

  def overrides(self, config) -> dict[str, Any]:
    """The config values this arm sets (``config``: the regime's, for the
    values it doubles)."""
    values: dict[str, Any] = {"optimizer": self.optimizer}
    if self.label_noise is not None:
      values["label_noise"] = self.label_noise
    if self.sparsity is not None:
      values["sparsity"] = self.sparsity
    if self.tensorwise:
      values.update(TENSORWISE)
    if self.variant is not None:
      values.update(VARIANTS[self.variant][0])
    if self.normalize is not None:
      values["normalize"] = self.normalize
    if self.leaves is not None:
      values["perturbed_leaves"] = LEAF_GROUPS[self.leaves]
    if self.doubled is not None:
      values[self.doubled] = 2 * config[self.doubled]
    return values


SGD, SAM = Arm("sgd"), Arm("sam")
SSAM_F_HALF = Arm("ssam-f", 0.5)
MASKS = ("ssam-f", "ssam-d", "ssam-random")
# Arms in priority order.
ARMS = (
    SAM, SSAM_F_HALF, SGD, Arm("ssam-d", 0.5), Arm("ssam-random", 0.5),
    *(Arm(mask, sparsity) for sparsity in (0.9, 0.99) for mask in MASKS),
    Arm("sgd", doubled="num_epochs"),
    Arm("ssam-f", 0.9, tensorwise=True),
    Arm("ssam-f", 0.9, tensorwise=True, leaves="last block"),
    Arm("sam", doubled="weight_decay_sam"),
)
# The radius-controlled arms: each mask at 90 % and 99 % sparsity, with the
# paper's normalisation (||eps|| shrinks with the mask) and the masked one
# (||eps|| = rho), each at its own rho. The random mask is redrawn on the
# Fisher mask's schedule, so that it differs from SSAM-F only in how the mask
# is chosen. The 90 % start grids centre on the rho whose radius matches
# SAM's (rho 0.2 in R2): the radius is rho with "masked", and about 0.3 rho
# (random) to 0.6 rho (Fisher) with "full". Every 90 % arm chose a radius of
# 0.3-1.0 (experiments/results/label_noise_runs.jsonl), so the 99 % grids
# centre there: with "full", ||m * g|| / ||g|| at 1 % density is about 0.1
# for the random mask (the square root of the density) and more for masks
# that pick large gradients.
RADIUS_MASKS = ("ssam-f", "ssam-d", "ssam-random-resampled")
_RADIUS_GRIDS = {(0.9, "masked"): (0.1, 0.2, 0.5), (0.9, None): (0.2, 0.5, 1.0),
                 (0.99, "masked"): (0.2, 0.5, 1.0), (0.99, None): (1.0, 2.0, 5.0)}
_RANDOM_99_FULL_GRID = (2.0, 5.0, 10.0)
RADIUS_ARMS = tuple(
    Arm(mask, sparsity, normalize=normalize,
        rho_grid=_RANDOM_99_FULL_GRID if (mask, sparsity, normalize) == (
            "ssam-random-resampled", 0.99, None) else grid)
    for (sparsity, normalize), grid in _RADIUS_GRIDS.items()
    for mask in RADIUS_MASKS)
ARMS += RADIUS_ARMS
# The cheaper ascents, dense and with SSAM-F at 50 %, each at its own rho;
# cheapest first. An ascent taken less often, or from less data, regularises
# less at a given rho: both sub-batch ascents chose 0.5 on validation, and the
# schedules still gained at their start grid's top (0.1, 0.2, 0.5), so the
# grids start one step higher.
EFFICIENT_ARMS = tuple(
    Arm(optimizer, sparsity, variant=variant, rho_grid=(0.2, 0.5, 1.0))
    for variant in sorted(VARIANTS, key=lambda v: VARIANTS[v][1])
    for optimizer, sparsity in (("sam", None), ("ssam-f", 0.5)))
ARMS += EFFICIENT_ARMS
# The tensor-wise fast path (a first gradient of the perturbed tensors only),
# each at its own rho: the budget of 10 % of the last block, which the Fisher
# mask spends on its BatchNorm and the head, and the whole last block, its
# conv kernel included (a fixed all-ones mask on those leaves).
TENSORWISE_OWN_RHO_ARMS = (
    Arm("ssam-f", 0.9, tensorwise=True, leaves="last block",
        rho_grid=(0.2, 0.5, 1.0)),
    Arm("ssam-random", 0.0, tensorwise=True, leaves="last block",
        rho_grid=(0.2, 0.5, 1.0)),
)
ARMS += TENSORWISE_OWN_RHO_ARMS
# The arms of the accuracy-vs-cost frontier (experiments.analysis.frontier).
FRONTIER_ARMS = (SGD, Arm("sgd", doubled="num_epochs"), SAM, SSAM_F_HALF,
                 *(arm for arm in ARMS if arm.tensorwise), *EFFICIENT_ARMS)
# Paired comparisons besides SAM and SGD, by arm label: at equal radius
# ("masked") or each at its own rho, does a mask beat the random one?
CONTRASTS = {
    arm.label: (dataclasses.replace(arm, optimizer="ssam-random-resampled").label,)
    for arm in RADIUS_ARMS if arm.optimizer != "ssam-random-resampled"}
# The arms that answer the main question, trained at every seed before the rest.
CORE_ARMS = (SAM, SGD, SSAM_F_HALF, Arm("ssam-d", 0.5), Arm("ssam-random", 0.5))
# The headline comparison, trained at more seeds.
HEADLINE_ARMS = (SGD, SAM, SSAM_F_HALF)
# The arms whose seed-0 models the analyses (Figs. 1, 4, 5) read.
EXPORTED_ARMS = (SGD, SAM, SSAM_F_HALF, Arm("ssam-d", 0.5))

# Labels of the legacy sweep (experiments/results/fashion_mnist_sweep.jsonl)
# that no arm of ARMS has. Its "random" optimizer is today's "ssam-random",
# so those labels map to arms labelled differently today.
LEGACY_ARMS = {
    "random s=0.5": Arm("ssam-random", 0.5),
    "random s=0.9": Arm("ssam-random", 0.9),
    **{legacy.label: legacy for legacy in (
        Arm("ssam-f", 0.5, tensorwise=True),
        *(dataclasses.replace(noisy, label_noise=0.4)
          for noisy in (SGD, SAM, SSAM_F_HALF, Arm("ssam-d", 0.5))))},
}
# Optimizer names of the legacy records, by today's name.
LEGACY_OPTIMIZER_NAMES = {"random": "ssam-random"}


def arm(label: str) -> Arm:
  """The arm labelled ``label`` (``Arm.label``), of ``ARMS`` or ``LEGACY_ARMS``."""
  for candidate in ARMS:
    if candidate.label == label:
      return candidate
  if label in LEGACY_ARMS:
    return LEGACY_ARMS[label]
  raise KeyError(f"no sweep arm is labelled {label!r}; the arms are "
                 f"{', '.join(a.label for a in ARMS)}.")
