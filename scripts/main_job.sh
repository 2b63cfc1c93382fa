#!/usr/bin/env bash
# The main job: set up, then train SSAM-F (50% sparsity, Fisher mask) on the
# real Fashion-MNIST and print the test accuracy (about 4 minutes on 2 quiet
# CPU cores once installed). Re-running resumes from the checkpoints in the workdir.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh .venv
exec .venv/bin/python -m experiments.main \
  --config experiments/configs/fashion_mnist_small.py \
  --workdir "${WORKDIR:-runs/main_job}" --config.optimizer=ssam-f "$@"
