#!/usr/bin/env bash
# The main job: set up, then train SSAM-F (50 % sparsity, Fisher mask) in the
# overfitting Fashion-MNIST regime (10k real examples, 30 epochs) with the rho
# chosen on validation, and print its test accuracy beside the committed SGD
# and SAM results of that regime. Re-running resumes from the workdir.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh .venv
python=.venv/bin/python
workdir="${WORKDIR:-runs/main_job}"
rho_flag=()
if rho=$("$python" -m experiments.sweep selected-rho --regime overfit 2>/dev/null); then
  rho_flag=("--config.rho=$rho")
fi
"$python" -m experiments.main --config experiments/configs/fashion_mnist_overfit.py \
  --workdir "$workdir" --config.optimizer=ssam-f --config.sparsity=0.5 "${rho_flag[@]}" "$@"
"$python" -m experiments.sweep compare --regime overfit --workdir "$workdir"
