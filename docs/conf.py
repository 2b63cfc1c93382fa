"""Sphinx configuration for the ssam_jax documentation.

Build: ``sphinx-build -W -b html docs docs/_build/html`` from the repository
root (``pip install -e ".[docs]"`` first).
"""

import inspect
import pathlib
import sys

from sphinx.errors import ExtensionError

DOCS = pathlib.Path(__file__).resolve().parent
ROOT = DOCS.parent
# Autodoc imports the package from this checkout, installed or not.
sys.path.insert(0, str(ROOT))

import ssam_jax  # pylint: disable=wrong-import-position
import ssam_jax.analysis  # pylint: disable=wrong-import-position

project = "ssam_jax"
author = "ssam_jax authors"
copyright = "the ssam_jax authors"  # pylint: disable=redefined-builtin
release = version = ssam_jax.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "myst_parser",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build"]

# The library's docstrings are Google style (Args:, Returns:, Examples:).
napoleon_google_docstring = True
napoleon_numpy_docstring = False
autodoc_typehints = "none"  # the docstrings say the types; signatures stay short
autodoc_member_order = "bysource"
autosummary_generate = False
add_module_names = False

myst_enable_extensions = ["dollarmath"]
myst_heading_anchors = 3

html_theme = "furo"
html_title = f"ssam_jax {release}"


def public_names() -> list[str]:
  """The public functions and classes, by full name (submodules excluded)."""
  names = []
  for module in (ssam_jax, ssam_jax.analysis):
    for name in module.__all__:
      if not inspect.ismodule(getattr(module, name)):
        names.append(f"{module.__name__}.{name}")
  return names


def _check_api_coverage(app, env) -> None:
  """Fails the build when a public name has no entry in ``api.rst``.

  The same check as Optax's ``coverage_check`` extension: a new name in
  ``ssam_jax.__all__`` (or ``ssam_jax.analysis.__all__``) must be added to
  the API page.
  """
  del app
  documented = set(env.get_domain("py").objects)
  missing = [name for name in public_names() if name not in documented]
  if missing:
    raise ExtensionError(
        "public names missing from docs/api.rst: " + ", ".join(missing))


def setup(app):
  app.connect("env-check-consistency", _check_api_coverage)
