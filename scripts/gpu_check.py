"""One prepared GPU check: CUDA encoders, a few training steps with AMP, DDP over the devices present, and ingest
throughput on the device. Where no CUDA device is present it runs the same checks on the CPU (gloo for DDP), so the
script itself is tested on every machine (tests/integration/test_gpu_check.py).

    bash scripts/gpu-check.sh [--images 2000]     # after `make deps`; installs nothing; prints its report

Checks, each printed as it finishes, any failure ending the script with status 1:
1. devices: CUDA devices, their names and bf16 support;
2. encoders: the demo's architecture (photos config, seeded heads) on the device under autocast against float32
   on the CPU, 8 pictures and 8 captions: the ten heaviest tokens of each lexicon agree (at least 8 of 10);
3. training: `lexlip train phase1` for 4 steps on generated shapes (AMP on CUDA), then the same under
   `torch.distributed.run` on every device present (NCCL; on the CPU 2 processes with gloo);
4. ingest: benchmarks/ingest_throughput.py with workers on the device (four sharing a GPU, one on the CPU; the torch
   runtime: on a GPU the workers encode with torch) over `--images` of the demo's pictures; its table is printed.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def say(line: str) -> None:
    print(f"[gpu-check {time.strftime('%H:%M:%S')}] {line}", flush=True)


def devices() -> str:
    import torch

    if not torch.cuda.is_available():
        say("no CUDA device: the same checks run on the CPU")
        return "cpu"
    for i in range(torch.cuda.device_count()):
        say(f"cuda:{i} {torch.cuda.get_device_name(i)}, bf16 {torch.cuda.is_bf16_supported()}")
    return "cuda"


def encoders(device: str, tmp: Path) -> None:
    """The device's lexicons (autocast on CUDA) against float32 on the CPU: top-10 tokens agree."""
    import numpy as np
    import torch
    from PIL import Image

    from lexlip_es.encoders.lexlip import LexLIPEncoder
    from lexlip_es.encoders.onnx_documents import PROBE_TEXTS, probe_images
    from lexlip_es.settings import Settings

    cpu = LexLIPEncoder.from_config("photos", seed=0, device="cpu", cache_dir=Settings.from_env().cache_dir)
    folder = cpu.save_pretrained(tmp / "photos")
    other = LexLIPEncoder.from_pretrained(folder, device=device)
    rng = np.random.default_rng(0)
    pictures = [
        *probe_images(224),
        *(Image.fromarray(rng.integers(0, 256, (224, 224, 3), dtype=np.uint8)) for _ in range(4)),
    ]
    texts = [*PROBE_TEXTS, "a red apple", "bicycle", "a striped animal", "rocket"]
    started = time.perf_counter()
    pairs = [
        (cpu.encode_images(pictures), other.encode_images(pictures)),
        (cpu.encode_texts(texts), other.encode_texts(texts)),
    ]
    if device == "cuda":
        torch.cuda.synchronize()
    for side, (ours, theirs) in zip(("images", "captions"), pairs, strict=True):
        agree = [len(set(a.top_k(10).indices) & set(b.top_k(10).indices)) for a, b in zip(ours, theirs, strict=True)]
        say(f"encoders on {device}: {side}, top-10 tokens shared with float32 on the CPU: {agree}")
        if min(agree) < 8:
            raise SystemExit(f"the {device} encoder's {side} disagree with the CPU's: {agree}")
    say(f"encoders on {device}: ok ({time.perf_counter() - started:.1f} s)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def training(device: str, tmp: Path) -> None:
    """4 steps of `lexlip train phase1` (AMP on CUDA), alone and under torch.distributed.run."""
    import torch

    from trainer.data.shapes import generate_shapes

    data = generate_shapes(tmp / "shapes", 64, 0, 0, seed=3)
    config = tmp / "train.json"
    config.write_text(json.dumps({"log_every": 1, "progress": False, "lr": 1e-3, "amp": True}))
    args = ["train", "phase1", "--config", str(config), "--data", str(data), "--steps", "4", "--batch-size", "8"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    started = time.perf_counter()
    _run([sys.executable, "-m", "lexlip_app.cli", *args, "--out", str(tmp / "one")], env)
    say(f"training on {device}: 4 steps with AMP ok ({time.perf_counter() - started:.1f} s)")
    procs = torch.cuda.device_count() if device == "cuda" else 2
    if procs < 2:
        say("training: DDP needs two devices; one is present")
        return
    started = time.perf_counter()
    ddp = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={procs}", f"--master_port={free_port()}"]
    _run([*ddp, "-m", "lexlip_app.cli", *args, "--out", str(tmp / "ddp")], env)
    backend = "NCCL" if device == "cuda" else "gloo"
    say(f"training: DDP over {procs} processes ({backend}) ok ({time.perf_counter() - started:.1f} s)")


def ingest(device: str, images: int, tmp: Path) -> None:
    """Celery ingestion with workers on the device: benchmarks/ingest_throughput.py's table."""
    out = tmp / "results"
    cmd = [
        sys.executable,
        str(ROOT / "benchmarks" / "ingest_throughput.py"),
        "--checkpoint",
        str(tmp / "photos"),
        "--images",
        str(images),
        "--workers",
        "4" if device == "cuda" else "1",
        "--runtimes",
        "torch-screened",
        "--device",
        device,
        "--results",
        str(out),
    ]
    _run(cmd, dict(os.environ))
    report = (out / "ingest.md").read_text()
    say("ingest:\n" + "\n".join(line for line in report.splitlines() if line.startswith("|"))[:2000])


def _run(cmd: list[str], env: dict[str, str]) -> None:
    result = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=480)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:6])} ... failed ({result.returncode}):\n{result.stderr[-3000:]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=2000, help="pictures for the ingest check")
    args = parser.parse_args()
    started = time.perf_counter()
    device = devices()
    with tempfile.TemporaryDirectory(prefix="lexlip-gpu-check-") as tmp_name:
        tmp = Path(tmp_name)
        encoders(device, tmp)
        training(device, tmp)
        ingest(device, args.images, tmp)
    say(f"all checks passed on {device} in {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
