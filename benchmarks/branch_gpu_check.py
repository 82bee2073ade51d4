"""GPU check of the training branches: both SmolLM2 demo branches at once on one GPU and one after the other,
each against plain TRL on the same settings; with two or more GPUs, the SFT branch as 2-process DDP and FSDP.

    .venv/bin/python benchmarks/branch_gpu_check.py              # on a machine with a GPU, ~3 min
    .venv/bin/python benchmarks/branch_gpu_check.py --allow-cpu --steps 4   # smoke run of this script

Every run is a fresh process with its own PAFT_HOME (no stage reused). Step time is the Trainer's
train_runtime over its steps; tokens/s is TRL's logged num_tokens over that runtime (— where a trainer logs
none); GPU memory is the device's peak `memory.used` by nvidia-smi while the
run lasts (both branches together when parallel). Prints a markdown table for BENCHMARKS.md.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
BRANCHES = ("sft", "preference")


class GpuPeak:
    """Peak `memory.used` (MiB) of GPU 0 while the context lasts, polled every 0.2 s."""

    def __enter__(self):
        self.peak, self._stop = 0, threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()
        return self

    def _poll(self):
        while not self._stop.is_set():
            if shutil.which("nvidia-smi"):
                query = ["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits", "-i", "0"]
                out = subprocess.run(query, capture_output=True, text=True).stdout.strip()
                self.peak = max(self.peak, int(out or 0))
            self._stop.wait(0.2)

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def spec_file(folder: Path, steps: int, on_gpu: bool, processes: int = 1, strategy: str = "ddp") -> Path:
    """The demo spec, `steps` steps per branch, bf16 on a GPU, no checkpoints, no thread cap."""
    from paft_core.config import load_config, write_config

    spec = load_config(ROOT / "configs/pipeline/demo.yaml").model_dump(by_alias=True)
    for branch in BRANCHES:
        spec[branch]["train"].update(max_steps=steps, save_steps=10_000, threads=None, processes=processes,
                                     strategy=strategy,
                                     precision="bf16" if on_gpu else "fp32", batch_size=8 if on_gpu else 2)
    from paft_core.config import PipelineRun

    return write_config(PipelineRun.model_validate(spec), folder / "spec.yaml")


def started(command: list[str], home: Path) -> subprocess.Popen:
    env = {**os.environ, "PAFT_HOME": str(home), "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)


def finished(process: subprocess.Popen, what: str) -> None:
    out, _ = process.communicate()
    if process.returncode:
        sys.exit(f"branch_gpu_check: {what} failed (exit {process.returncode}):\n{out[-3000:]}")


def stage_figures(home: Path, branch: str) -> dict:
    """Step time and tokens/s from the stage folder's trainer_state.json."""
    (state,) = home.glob(f"stages/{branch}-*/trainer_state.json")
    return figures(json.loads(state.read_text()))


def figures(state: dict) -> dict:
    rows = state["log_history"]
    runtime = next(row["train_runtime"] for row in rows if "train_runtime" in row)
    tokens = max((row.get("num_tokens", 0) for row in rows), default=0)
    return {"step_s": runtime / state["global_step"], "tokens_per_s": tokens / runtime if tokens else None}


def paft_branches(scratch: Path, spec: Path, together: bool) -> tuple[dict, int, float]:
    """Both PAFT stage commands, at once or one after the other: per-branch figures, GPU peak, wall."""
    home = scratch / ("parallel" if together else "sequential")
    commands = {b: [sys.executable, "-m", f"paft_core.training.{b}", str(spec)] for b in BRANCHES}
    begin = time.perf_counter()
    with GpuPeak() as gpu:
        if together:
            running = {b: started(cmd, home) for b, cmd in commands.items()}
            for branch, process in running.items():
                finished(process, f"paft {branch}")
        else:
            for branch, cmd in commands.items():
                finished(started(cmd, home), f"paft {branch}")
    wall = time.perf_counter() - begin
    return {b: stage_figures(home, b) for b in BRANCHES}, gpu.peak, wall


def plain_trl(scratch: Path, spec: Path, branch: str) -> tuple[dict, int]:
    """TRL's own trainer on the branch's settings, in a fresh process: figures, GPU peak."""
    result = scratch / f"plain-{branch}.json"
    with GpuPeak() as gpu:
        finished(started([sys.executable, __file__, "--plain", branch, "--spec", str(spec), "--result",
                          str(result)], scratch / "plain"), f"plain TRL {branch}")
    return json.loads(result.read_text()), gpu.peak


def run_plain(branch: str, spec_path: str, result: str) -> None:
    """(In the child.) SFTTrainer or DPOTrainer with the stage's model, data, LoRA and trainer settings."""
    from trl import DPOConfig, DPOTrainer, SFTConfig, SFTTrainer

    from paft_core import data, models
    from paft_core.config import load_config
    from paft_core.training import common

    spec = load_config(spec_path)
    section = getattr(spec, branch)
    base = models.resolve(spec.model)
    model, tokenizer = common.load_base(base.path, spec.model, section.train)
    dataset = data.load(section.data, branch).dataset
    out = Path(result).parent / f"plain-{branch}-out"
    settings = {**common.trainer_args(section.train, out), "save_strategy": "no"}
    shared = dict(model=model, train_dataset=dataset, processing_class=tokenizer,
                  peft_config=common.lora_config(section.lora))
    trainer = (SFTTrainer(args=SFTConfig(**settings, packing=False), **shared) if branch == "sft" else
               DPOTrainer(args=DPOConfig(**settings, beta=section.beta), ref_model=None, **shared))
    trainer.train()
    state = {"log_history": trainer.state.log_history, "global_step": trainer.state.global_step}
    Path(result).write_text(json.dumps(figures(state)))


def table(rows: list[tuple[str, str, dict, int, float | None]]) -> str:
    lines = ["| run | branch | step (s) | tokens/s | GPU peak (MiB) | wall (s) |",
             "|---|---|---|---|---|---|"]
    for run, branch, fig, peak, wall in rows:
        tokens = f"{fig['tokens_per_s']:.0f}" if fig.get("tokens_per_s") else "—"
        lines.append(f"| {run} | {branch} | {fig['step_s']:.3f} | {tokens} | {peak} | "
                     f"{f'{wall:.1f}' if wall else '—'} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--allow-cpu", action="store_true", help="run without a GPU (checks the script only)")
    parser.add_argument("--plain", choices=BRANCHES, help=argparse.SUPPRESS)
    parser.add_argument("--spec", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.plain:
        return run_plain(args.plain, args.spec, args.result)
    import torch

    gpus = torch.cuda.device_count()
    if not gpus and not args.allow_cpu:
        sys.exit("branch_gpu_check: no CUDA device here; run it where a GPU is (or --allow-cpu to smoke it)")
    scratch = Path(tempfile.mkdtemp(prefix="paft-gpu-check-"))
    try:
        spec = spec_file(scratch, args.steps, gpus > 0)
        rows = []
        for together in (True, False):
            figs, peak, wall = paft_branches(scratch, spec, together)
            rows += [("paft, both at once" if together else "paft, one after the other", b, figs[b], peak,
                      wall) for b in BRANCHES]
        for branch in BRANCHES:
            fig, peak = plain_trl(scratch, spec, branch)
            rows.append(("plain TRL", branch, fig, peak, None))
        if gpus >= 2:  # the SFT branch as two processes: DDP, then FSDP2 (only GPUs shard)
            for strategy in ("ddp", "fsdp"):
                spread = spec_file(scratch / strategy, args.steps, True, processes=2, strategy=strategy)
                home = scratch / f"{strategy}-home"
                begin = time.perf_counter()
                with GpuPeak() as gpu:
                    finished(started([sys.executable, "-m", "paft_core.training.sft", str(spread)], home),
                             f"{strategy} sft")
                measured = stage_figures(home, "sft")
                rows.append((f"paft, 2-process {strategy} (global batch ×2)", "sft", measured, gpu.peak,
                             time.perf_counter() - begin))
        print(f"\n{gpus} GPU(s), {args.steps} steps per branch, torch {torch.__version__}\n")
        print(table(rows))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
