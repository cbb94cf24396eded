#!/usr/bin/env bash
# Installs pointbench with its test extras on a fresh machine and runs the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
export MLFLOW_DISABLE_TELEMETRY=true PIP_DISABLE_PIP_VERSION_CHECK=1
python -m pip install -q torch==2.13.0          # pinned first: plain `torch` pulls GBs of CUDA wheels
python -m pip install -q -e ".[test]"
python -m extensions.build || echo "compiled point ops unavailable; the pure-PyTorch reference will be used"
python -m pytest -q -p no:cacheprovider "$@"
