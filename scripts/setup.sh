#!/usr/bin/env bash
# Sets up a fresh machine for ssam_jax: the real Fashion-MNIST from Debian's
# dataset-fashion-mnist, and a virtual environment with the package, its
# experiment, test and docs dependencies.
#
#   bash scripts/setup.sh [VENV_DIR] [--fresh]     (default VENV_DIR: .venv)
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${1:-.venv}"

if [ ! -d /usr/share/datasets/fashion-mnist ] && command -v apt-get >/dev/null; then
  sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq dataset-fashion-mnist
fi

[ "${2:-}" = "--fresh" ] && rm -rf "$venv"
[ -x "$venv/bin/python" ] || "${PYTHON:-python3}" -m venv "$venv"
# uv resolves the same version ranges as pip and installs them several times
# faster; pip is the fallback where uv cannot install (no uv wheel, or an index
# only pip is configured to reach).
extras=".[test,experiments,docs]"
if "$venv/bin/python" -m pip install -q uv \
    && "$venv/bin/python" -m uv pip install -q --python "$venv/bin/python" -e "$extras"; then
  :
else
  "$venv/bin/python" -m pip install -q --upgrade pip
  "$venv/bin/python" -m pip install -q -e "$extras"
fi
