"""The README's Python examples run as written, and its results block reads
the paired intervals as docs/generate_results.py writes them."""

import pathlib
import re
import sys

import pytest

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_has_examples():
  assert len(BLOCKS) >= 1


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_example_runs(index):
  exec(compile(BLOCKS[index], f"README.md[python block {index}]", "exec"), {})


def _results_block() -> str:
  text = README.read_text()
  return text[text.index("<!-- RESULTS TABLE -->"):text.index("<!-- END RESULTS TABLE -->")]


def test_readme_results_state_each_regimes_holm_family_and_its_limits():
  """The results block reads paired intervals only: each regime names the size
  of its Holm family, and a regime whose SAM-vs-SGD gain does not survive Holm
  states so and draws no verdict on the SSAM arms."""
  sys.path.insert(0, str(README.parent / "docs"))
  import generate_results  # pylint: disable=g-import-not-at-top
  import results_reading  # pylint: disable=g-import-not-at-top
  block = _results_block()
  assert not re.search(r"\bSE\b", block)
  parts = block.split("\n**")[1:]
  for regime in generate_results.REGIMES:
    summary = generate_results.load_summary(regime)
    if summary is None:
      continue
    name = results_reading.regime_name(summary)
    (part,) = [p for p in parts if p.startswith(name + ":")]
    metric = results_reading.compared_metric(summary)
    assert (f"Holm's family: {results_reading.family_size(summary, metric)} paired "
            "comparisons") in part
    if not results_reading.separates(summary):
      assert f"{name} cannot separate SAM from SGD" in part
      assert "Keeps it" not in part and not re.search(r"n=\d+, (better|worse)", part)
