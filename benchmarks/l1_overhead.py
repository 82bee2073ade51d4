"""Step time of PAFT's L1 SFT against plain TRL SFTTrainer: same model, data, seed and settings.

    .venv/bin/python benchmarks/l1_overhead.py --steps 20 --repeats 3

Variants run interleaved (plain, then each L1 mode, repeated) so machine noise hits all alike; each
run's step time is the median over its steps after the warm-up; the table shows the median over
repeats and the ratio to plain TRL. Logging (every 5 steps) is on for all, so the sparsity log our
trainer adds is part of what is measured.
"""

import argparse
import os
import statistics
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import torch  # noqa: E402
from transformers import TrainerCallback  # noqa: E402
from trl import SFTConfig, SFTTrainer  # noqa: E402

from paft_core import data, models  # noqa: E402
from paft_core.config import DataSpec, L1Spec, LoraSpec, ModelSpec, TrainSpec  # noqa: E402
from paft_core.training import common  # noqa: E402
from paft_core.training.sft import L1SFTTrainer  # noqa: E402

VARIANTS = {
    "plain TRL SFTTrainer": None,
    "L1 loss on LoRA weights (λ=1e-4)": L1Spec(strength=1e-4, target="lora", mode="loss"),
    "L1 loss on ΔW = s·B·A (λ=1e-4)": L1Spec(strength=1e-4, target="delta", mode="loss"),
    "L1 proximal on LoRA weights (λ=1e-4)": L1Spec(strength=1e-4, target="lora", mode="proximal"),
}


class StepTimer(TrainerCallback):
    """Wall time of every optimizer step."""

    def __init__(self) -> None:
        self.times: list[float] = []

    def on_step_begin(self, args, state, control, **kwargs):
        self.start = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        self.times.append(time.perf_counter() - self.start)


def run_once(base, dataset, l1: L1Spec | None, steps: int, warmup: int, out: str) -> float:
    """Train `warmup + steps` steps; return the median step time after the warm-up."""
    train = TrainSpec(max_steps=steps + warmup, batch_size=2, learning_rate=1e-3, max_length=128,
                      logging_steps=5, save_steps=10_000, seed=0)
    torch.manual_seed(0)
    model, tokenizer = common.load_base(base.path, ModelSpec(source=str(base.path)), train)
    args = SFTConfig(**{**common.trainer_args(train, out), "report_to": []}, packing=False)
    shared = dict(model=model, args=args, train_dataset=dataset, processing_class=tokenizer,
                  peft_config=common.lora_config(LoraSpec()))
    trainer = SFTTrainer(**shared) if l1 is None else L1SFTTrainer(**shared, l1=l1)
    timer = StepTimer()
    trainer.add_callback(timer)
    trainer.train()
    return statistics.median(timer.times[warmup:])


def main() -> None:
    """Measure every variant, interleaved, and print a markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m-instruct", help="model.source to benchmark")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=".paft/bench")
    parser.add_argument("--only", default="", help="run only variants whose name contains this (plus plain)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    base = models.resolve(ModelSpec(source=args.model))
    dataset = data.load(DataSpec(source="demo"), "sft").dataset
    chosen = {name: l1 for name, l1 in VARIANTS.items() if l1 is None or args.only in name}
    times: dict[str, list[float]] = {name: [] for name in chosen}
    for _ in range(args.repeats):
        for name, l1 in chosen.items():
            times[name].append(run_once(base, dataset, l1, args.steps, args.warmup, args.out))
    plain = statistics.median(times["plain TRL SFTTrainer"])
    print(f"\nmodel {args.model}, {args.steps} steps after {args.warmup} warm-up, batch 2, "
          f"{args.threads} threads, {args.repeats} interleaved repeats, torch {torch.__version__}\n")
    print("| variant | median step (s) | per-repeat medians (s) | ratio to plain TRL |")
    print("|---|---|---|---|")
    for name, values in times.items():
        median = statistics.median(values)
        spread = ", ".join(f"{v:.3f}" for v in values)
        print(f"| {name} | {median:.3f} | {spread} | {median / plain:.3f} |")


if __name__ == "__main__":
    main()
