"""GPU check of `merge.device: cuda`: the 7B-shape synthetic merge on the GPU against the read+write floor,
and the largest tensors merged on both paths, compared.

    .venv/bin/python benchmarks/merge_gpu_check.py               # 7B shape, bf16, two r=16 adapters, TIES 0.5
    .venv/bin/python benchmarks/merge_gpu_check.py --size 1.7b   # quicker
    .venv/bin/python benchmarks/merge_gpu_check.py --size 135m --allow-cpu   # smoke run of this script

Builds the checkpoint shard by shard under .bench/ (benchmarks/merge_scale.py prepare), times the floor
(every shard read and written) and `paft merge` with merge.device cuda in fresh processes, samples the GPU's
peak memory.used (nvidia-smi) while the merge runs, then merges the three largest tensors in this process on
the CPU (the blocked path) and on the GPU and prints the largest differences. Deletes its files.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import merge_scale  # noqa: E402
from benchmarks.branch_gpu_check import GpuPeak  # noqa: E402
from paft_core.config import MergeSpec  # noqa: E402
from paft_core.merging import blocks, checkpoint, deltas, methods, on_device  # noqa: E402


def timed(command: list[str]) -> float:
    """Wall seconds of a child process run from the project root; its output only on failure."""
    started = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)})
    if done.returncode:
        said = done.stdout[-2000:] + done.stderr[-2000:]
        sys.exit(f"merge_gpu_check: {' '.join(command[:4])} failed:\n{said}")
    return time.perf_counter() - started


def compared(folder: Path, device: torch.device, count: int = 3) -> list[tuple[str, float, float]]:
    """The `count` largest changed tensors merged on the CPU and on `device`: max |ΔW difference|, and the
    largest relative difference among the report's sums."""
    reader = checkpoint.Reader(folder / "base")
    spec = json.loads((folder / "merge.yaml").read_text())["merge"]
    labels = ("sft", "preference")
    opened = [deltas.open_delta(Path(path), label, reader)
              for label, path in zip(labels, spec["deltas"], strict=True)]
    changed = set(opened[0].targets())
    names = sorted(changed, key=lambda name: -reader.entries[name].nbytes)[:count]
    recipe = methods.Recipe.from_spec(MergeSpec(**{**spec, "device": "cpu"}))
    rows = []
    for name in names:
        module = blocks.Module(name, reader, torch.bfloat16, tuple(opened), labels)
        results = []
        for way in ("cpu", "device"):
            out = folder / f"compare-{way}"
            out.mkdir(exist_ok=True)
            writer = checkpoint.Writer(out, {name: reader.entries[name]})
            results.append(blocks.run(module, recipe, writer, keep=True) if way == "cpu" else
                           on_device.run(module, recipe, writer, device, keep=True))
            writer.close()
        (counts, _), merged = results[0]
        (device_counts, _), device_merged = results[1]
        worst = max(abs(device_counts[key] - value) / max(abs(value), 1e-12) for key, value in counts.items())
        rows.append((name, float((device_merged - merged).abs().max()), worst))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=tuple(merge_scale.SHAPES), default="7b")
    parser.add_argument("--allow-cpu", action="store_true", help="run without a GPU (checks the script only)")
    args = parser.parse_args()
    if not torch.cuda.is_available() and not args.allow_cpu:
        sys.exit("merge_gpu_check: no CUDA device here; run it where a GPU is (or --allow-cpu to smoke it)")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    folder = ROOT / ".bench" / f"merge-gpu-{args.size}"
    shutil.rmtree(folder, ignore_errors=True)
    try:
        started = time.perf_counter()
        merge_scale.prepare(args.size, folder)
        built = time.perf_counter() - started
        spec = json.loads((folder / "merge.yaml").read_text())
        spec["merge"]["device"] = device.type
        (folder / "merge.yaml").write_text(json.dumps(spec))
        floor = timed([sys.executable, "benchmarks/merge_scale.py", "floor", str(folder / "base"),
                       str(folder / "floor-out")])
        shutil.rmtree(folder / "floor-out")
        with GpuPeak() as gpu:
            merged = timed([sys.executable, "-m", "paft", "merge", str(folder / "merge.yaml"), "--out",
                            str(folder / "out")])
        shutil.rmtree(folder / "out")
        size = sum(path.stat().st_size for path in (folder / "base").glob("*.safetensors")) / 2**30
        print(f"\n{args.size} shape, {size:.1f} GiB bf16, device {device}, torch {torch.__version__} "
              f"(checkpoint built in {built:.0f} s)\n")
        print("| floor (read+write) | paft merge | paft / floor | GPU peak memory.used |")
        print("|---|---|---|---|")
        print(f"| {floor:.1f} s | {merged:.1f} s | {merged / floor:.2f}× | {gpu.peak} MiB |\n")
        print("| tensor | max abs ΔW difference (GPU − CPU) | largest relative difference of a report sum |")
        print("|---|---|---|")
        for name, difference, worst in compared(folder, device):
            print(f"| {name} | {difference:.3g} | {worst:.3g} |")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
