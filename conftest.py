"""pytest set-up shared by tests/ and the docstring examples in ssam_jax/.

Fills the namespace of every ``>>>`` example with the names the docs use
(pytest's counterpart of Sphinx's ``doctest_global_setup``), so that an
example may leave out its imports.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import ssam_jax


@pytest.fixture(autouse=True)
def _doctest_names(doctest_namespace):
  doctest_namespace.update(jax=jax, jnp=jnp, np=np, optax=optax, ssam_jax=ssam_jax)


def pytest_collection_modifyitems(items):
  """Runs the sharding module first: its one fixture is the longest job of
  the suite, and under pytest-xdist a worker that starts it last finishes
  alone."""
  items.sort(key=lambda item: not item.nodeid.startswith("tests/test_sharding.py"))
