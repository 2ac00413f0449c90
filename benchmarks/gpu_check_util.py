"""Helpers of benchmarks/gpu_check.sh: the tree digest, the machine's description, the summary.

    python benchmarks/gpu_check_util.py digest            # of the files the iptkit wheel holds
    python benchmarks/gpu_check_util.py imports           # what the benchmarks import, or fail
    python benchmarks/gpu_check_util.py env --device cuda --json OUT/env.json
    python benchmarks/gpu_check_util.py summary OUT        # OUT/summary.json from the parts

Standard library only at import time (torch is imported by `env`), so `digest` runs anywhere.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# What setup.py puts into the iptkit wheel (README.md is its long description).
WHEEL_SOURCES = ("setup.py", "README.md", "iptkit", "pipelines", "transforms", "trainer", "eval",
                 "configs")  # fmt: skip
SKIP_DIRS = {"__pycache__", ".pytest_cache", "build"}

# Dense bf16 tensor-core peaks, TFLOP/s (NVIDIA's data sheets, without sparsity), matched in
# order against torch.cuda.get_device_name(): the first name fragment found wins.
PEAK_BF16_TFLOPS = (
    ("GH200", 989.0),
    ("H100 PCIe", 756.0),
    ("H100 NVL", 835.0),
    ("H100", 989.0),  # SXM5 (e.g. "NVIDIA H100 80GB HBM3")
    ("H200", 989.0),  # same tensor cores as H100 SXM
    ("A100", 312.0),
)


def peak_tflops(device_name: str) -> tuple[float | None, str]:
    """(peak dense bf16 TFLOP/s, why) for a CUDA device name; PEAK_TFLOPS overrides."""
    if os.environ.get("PEAK_TFLOPS"):
        value = float(os.environ["PEAK_TFLOPS"])
        return value, f"PEAK_TFLOPS={value:g} from the environment"
    for fragment, value in PEAK_BF16_TFLOPS:
        if fragment in device_name:
            return value, f"{device_name!r} matches {fragment!r}: {value:g} TFLOP/s dense bf16"
    return None, f"{device_name!r} is not in the peak table; set PEAK_TFLOPS to get MFU"


def tree_digest(root: Path = ROOT) -> str:
    """sha256 over the relative paths and bytes of the files the iptkit wheel is built from."""
    h = hashlib.sha256()
    for top in WHEEL_SOURCES:
        base = root / top
        paths = [base] if base.is_file() else []
        for folder, dirs, files in os.walk(base):
            dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS and not d.endswith(".egg-info"))
            paths += [Path(folder, f) for f in files if not f.endswith((".pyc", ".pyo"))]
        for path in sorted(paths):
            h.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


def _run(cmd: list[str]) -> str | None:
    if shutil.which(cmd[0]) is None:
        return None
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"failed: {exc}"
    return (done.stdout + done.stderr).strip()


def _version(name: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return None


def environment(device: str) -> dict[str, Any]:
    """The machine, the software and the peak used for MFU."""
    import torch

    info: dict[str, Any] = {
        "python": platform.python_version(),
        "python_executable": sys.executable,
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "cuda_available": torch.cuda.is_available(),
        "versions": {
            name: _version(name)
            for name in (
                "transformers",
                "tokenizers",
                "deepspeed",
                "apache-beam",
                "iptkit",
                "pydantic",
                "numpy",
                "protobuf",
                "grpcio",
                "pyarrow",
            )
        },
        "nvidia_smi": _run(
            [
                "nvidia-smi",
                "--query-gpu=name,memory.total,driver_version,clocks.max.sm,"
                "power.limit,pcie.link.gen.max",
                "--format=csv,noheader",
            ]
        ),
        "nvidia_smi_L": _run(["nvidia-smi", "-L"]),
        "device": device,
        "iptkit_wheel": os.environ.get("GPU_CHECK_IPTKIT_WHEEL"),
        "pip_check": _run([sys.executable, "-m", "pip", "check", "--disable-pip-version-check"]),
    }
    if device == "cuda" and torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        name = torch.cuda.get_device_name(0)
        peak, why = peak_tflops(name)
        info.update(
            device_name=name,
            capability=list(torch.cuda.get_device_capability(0)),
            multiprocessors=props.multi_processor_count,
            memory_gib=round(props.total_memory / 2**30, 2),
            peak_bf16_tflops=peak,
            peak_source=why,
        )
    else:
        peak, why = peak_tflops("cpu")
        info.update(device_name="cpu", peak_bf16_tflops=peak, peak_source=why)
    return info


# Every module the two benchmarks import beyond the standard library (the import check).
IMPORTS = (
    "torch",
    "transformers",
    "tokenizers",
    "numpy",
    "yaml",
    "pydantic",
    "deepspeed",
    "apache_beam",
    "apache_beam.ml.inference.base",
    "iptkit.shards",
    "iptkit.trainer.loop",
    "iptkit.transforms.inference.core",
    "iptkit.transforms.inference.backend_transformers",
)


def check_imports() -> int:
    """Import each module of IMPORTS; print what fails and return 1, else each one's origin."""
    import importlib

    failed = 0
    for name in IMPORTS:
        try:
            module = importlib.import_module(name)
        except Exception as exc:  # noqa: BLE001 - any failure is reported the same way
            print(f"  {name}: FAILED: {type(exc).__name__}: {exc}")
            failed += 1
            continue
        version = getattr(module, "__version__", "")
        print(f"  {name} {version}: {getattr(module, '__file__', None)}")
    if failed:
        print(f"gpu_check: {failed} of {len(IMPORTS)} imports failed", file=sys.stderr)
    return 1 if failed else 0


def summary(out: Path) -> dict[str, Any]:
    """The headline figures of OUT/{env,inference,trainer}.json in one object."""

    def load(name: str) -> dict[str, Any] | None:
        path = out / f"{name}.json"
        return json.loads(path.read_text()) if path.is_file() else None

    env, inference, trainer = load("env"), load("inference"), load("trainer")
    result: dict[str, Any] = {
        "device": env and env.get("device_name"),
        "nvidia_smi": env and env.get("nvidia_smi"),
        "torch": env and env.get("torch"),
        "torch_cuda": env and env.get("torch_cuda"),
        "peak_bf16_tflops": env and env.get("peak_bf16_tflops"),
        "peak_source": env and env.get("peak_source"),
        "inference": None,
        "trainer": None,
    }
    if inference:
        rounds = inference["rounds"]
        result["inference"] = {
            "model_parameters": inference.get("model", {}).get("parameters"),
            "dtype": inference["args"]["dtype"],
            "iptkit_tok_s": [r["iptkit"]["tok_s"] for r in rounds],
            "bare_tok_s": [r["bare"]["tok_s"] for r in rounds],
            "median_ratio_iptkit_over_bare": inference["median_ratio"],
            "median_generate_ratio": inference.get("median_generate_ratio"),
        }
    if trainer:
        result["trainer"] = trainer["summary"]
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("digest", help="print the digest of the iptkit wheel's sources")
    sub.add_parser("imports", help="import what the benchmarks need")
    env = sub.add_parser("env", help="write the machine's description")
    env.add_argument("--device", default="cuda")
    env.add_argument("--json", type=Path, required=True)
    summ = sub.add_parser("summary", help="write OUT/summary.json")
    summ.add_argument("out", type=Path)
    args = parser.parse_args()
    if args.command == "digest":
        print(tree_digest())
    elif args.command == "imports":
        return check_imports()
    elif args.command == "env":
        info = environment(args.device)
        args.json.write_text(json.dumps(info, indent=1))
        print(json.dumps({k: info[k] for k in ("python", "torch", "torch_cuda", "device_name",
                                                "peak_bf16_tflops", "peak_source")}))  # fmt: skip
        if info["nvidia_smi"]:
            print("nvidia-smi:", info["nvidia_smi"])
        if args.device == "cuda" and not info["cuda_available"]:
            print("gpu_check: torch sees no CUDA device (torch.cuda.is_available() is False); "
                  "use GPU_CHECK_DEVICE=cpu for the dry run", file=sys.stderr)  # fmt: skip
            return 1
    else:
        result = summary(args.out)
        (args.out / "summary.json").write_text(json.dumps(result, indent=1))
        print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
