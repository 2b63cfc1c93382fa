"""The Python examples of the documentation run as written.

Each page's ```python blocks run in order in one namespace, as a reader would
paste them. Pages that set the number of CPU devices (scaling.md) run in a
subprocess, because this process has started JAX already. The docstrings'
``>>>`` examples run through ``--doctest-modules``; the API page's coverage of
``ssam_jax.__all__`` is checked by the docs build (docs/conf.py).
"""

import os
import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PAGES = sorted(DOCS.glob("*.md"))
# Pages whose first block sets the CPU device count before JAX starts.
SUBPROCESS_PAGES = {"scaling.md"}
TIMEOUT_S = 300


def python_blocks(path: pathlib.Path) -> list[str]:
  return re.findall(r"^```python\n(.*?)^```", path.read_text(), flags=re.S | re.M)


def page_source(path: pathlib.Path) -> str:
  return "\n".join(python_blocks(path))


def test_pages_with_examples_are_found():
  assert {"index.md", "masks.md", "nnx.md", "scaling.md"} <= {
      p.name for p in PAGES if python_blocks(p)}


# scaling.md's examples repeat what tests/test_sharding.py covers on more devices,
# in a fresh process: they run with -m slow.
@pytest.mark.parametrize("page", [
    pytest.param(p.name, marks=pytest.mark.slow) if p.name in SUBPROCESS_PAGES else p.name
    for p in PAGES if python_blocks(p)])
def test_page_examples_run(page):
  path = DOCS / page
  if page in SUBPROCESS_PAGES:
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    env.pop("XLA_FLAGS", None)
    run = subprocess.run([sys.executable, "-c", page_source(path)], cwd=ROOT,
                         env=env, capture_output=True, text=True,
                         timeout=TIMEOUT_S)
    assert run.returncode == 0, run.stderr[-3000:]
    return
  namespace = {"__name__": f"docs_{path.stem}"}
  for index, block in enumerate(python_blocks(path)):
    exec(compile(block, f"{page}[python block {index}]", "exec"), namespace)  # pylint: disable=exec-used
