"""scripts/gpu-check.sh, the prepared GPU check, run where there is no GPU: it takes the CPU for every check and
passes (encoders, AMP training steps, DDP with gloo, ingest through a real worker, Redis and OpenSearch)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]


def test_the_gpu_check_runs_its_checks_on_the_cpu_where_there_is_no_gpu() -> None:
    result = subprocess.run(
        ["bash", "scripts/gpu-check.sh", "--images", "64"], cwd=ROOT, capture_output=True, text=True, timeout=900
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    device = "cuda" if torch.cuda.is_available() else "cpu"
    out = result.stdout
    assert f"encoders on {device}: ok" in out
    assert "4 steps with AMP ok" in out
    assert ("DDP over 2 processes (gloo) ok" in out) if device == "cpu" else ("NCCL" in out or "one is present" in out)
    assert "| torch-screened | 64 |" in out
    assert f"all checks passed on {device}" in out
