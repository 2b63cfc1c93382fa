"""ssam_jax: SAM and Sparse SAM (SSAM-F, SSAM-D) as Optax transformations."""

from ssam_jax.ascent_schedule import ScheduledAscentState
from ssam_jax.ascent_schedule import scheduled_ascent
from ssam_jax.fisher import empirical_fisher
from ssam_jax.looksam import LookSAMState
from ssam_jax.looksam import looksam
from ssam_jax.masks import DynamicMaskState
from ssam_jax.masks import FisherMaskState
from ssam_jax.masks import MaskInputs
from ssam_jax.masks import MaskStrategy
from ssam_jax.masks import RandomMaskState
from ssam_jax.masks import dynamic_mask
from ssam_jax.masks import fisher_mask
from ssam_jax.masks import random_mask
from ssam_jax.msam import MSAMState
from ssam_jax.msam import MomentumSAM
from ssam_jax.msam import msam
from ssam_jax.patterns import Pattern
from ssam_jax.partial_grad import perturbed_tensors
from ssam_jax.partial_grad import value_and_partial_grad
from ssam_jax.leaf_filters import fill_masked
from ssam_jax.leaf_filters import kernels_only, leaves_matching
from ssam_jax.sam import SAMState
from ssam_jax.sam import sam
from ssam_jax.ssam import SSAMState
from ssam_jax.ssam import ssam
from ssam_jax.topk import topk_mask
from ssam_jax.transparent import TransparentState

__version__ = "0.1.0"

__all__ = (
    "DynamicMaskState",
    "FisherMaskState",
    "LookSAMState",
    "MSAMState",
    "MaskInputs",
    "MaskStrategy",
    "MomentumSAM",
    "Pattern",
    "RandomMaskState",
    "SAMState",
    "SSAMState",
    "ScheduledAscentState",
    "TransparentState",
    "dynamic_mask",
    "empirical_fisher",
    "fill_masked",
    "fisher_mask",
    "kernels_only",
    "leaves_matching",
    "looksam",
    "msam",
    "perturbed_tensors",
    "random_mask",
    "sam",
    "scheduled_ascent",
    "ssam",
    "topk_mask",
    "value_and_partial_grad",
)
