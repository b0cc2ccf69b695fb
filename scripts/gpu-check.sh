#!/usr/bin/env bash
# The prepared GPU check (scripts/gpu_check.py): CUDA encoders, AMP training steps, DDP over the devices present and
# ingest throughput on the device, or the same on the CPU where there is no GPU. Needs `make deps` first; installs
# nothing. Usage: bash scripts/gpu-check.sh [--images N]
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
    echo "gpu-check: no .venv here: run 'make deps' first" >&2
    exit 2
fi
exec .venv/bin/python scripts/gpu_check.py "$@"
