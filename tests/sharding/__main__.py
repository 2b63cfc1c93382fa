"""``python -m sharding OUT.json [CASE ...]``, from ``tests/`` (see ``runner``)."""

import sys

from sharding import runner

runner.main(sys.argv[1:])
