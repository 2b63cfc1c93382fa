"""Analyses of Mi et al. (NeurIPS 2022) on any params pytree and loss function.

Every function takes ``loss_fn(params) -> scalar``; close over the batch (and
BatchNorm statistics) yourself.

* :mod:`~ssam_jax.analysis.gradient_ratio`: ``r = log|(g_SAM - g_SGD) / g_SGD|``
  per parameter (Fig. 1).
* :mod:`~ssam_jax.analysis.landscape`: loss surfaces along random
  filter-normalised directions (Fig. 4).
* :mod:`~ssam_jax.analysis.hessian`: Hessian-vector products, Lanczos top
  eigenvalues and the spectral density (Fig. 5).
"""

from ssam_jax.analysis import gradient_ratio
from ssam_jax.analysis import hessian
from ssam_jax.analysis import landscape
from ssam_jax.analysis.gradient_ratio import gradient_ratio_statistics
from ssam_jax.analysis.hessian import hvp
from ssam_jax.analysis.hessian import spectral_density
from ssam_jax.analysis.hessian import top_eigenvalues
from ssam_jax.analysis.landscape import filter_normalize
from ssam_jax.analysis.landscape import loss_surface
from ssam_jax.analysis.landscape import random_direction

__all__ = (
    "filter_normalize",
    "gradient_ratio",
    "gradient_ratio_statistics",
    "hessian",
    "hvp",
    "landscape",
    "loss_surface",
    "random_direction",
    "spectral_density",
    "top_eigenvalues",
)
