#!/usr/bin/env bash
# Installs pointbench on a fresh machine and runs the main job: every method on ScanObjectNN.
# With no ScanObjectNN under $BENCH_DATA (default ./data) it writes the synthetic stand-in and runs the demo profile.
set -euo pipefail
cd "$(dirname "$0")/.."
export MLFLOW_DISABLE_TELEMETRY=true PIP_DISABLE_PIP_VERSION_CHECK=1
python -m pip install -q torch==2.13.0          # pinned first: plain `torch` pulls GBs of CUDA wheels
python -m pip install -q -e .
python -m extensions.build || echo "compiled point ops unavailable; the pure-PyTorch reference will be used"
bench run suite=scanobjectnn method=all "$@"
