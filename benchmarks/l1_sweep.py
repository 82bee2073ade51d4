"""PAFT's L1 claim, measured: at equal density of the merged SFT delta, how much SFT skill survives, by λ.

    .venv/bin/python benchmarks/l1_sweep.py --targets lora delta --lambdas 0 1e-5 1e-4 1e-3 1e-2

Trains the demo's SFT branch (configs/pipeline/demo.yaml, embedded SmolLM2-135M-Instruct) once per
(target, λ), cached in `.bench/l1-sweep/`; then, for each adapter and each density d, trims every module's
ΔW = s·B·A to its top d by magnitude (the merge's `magnitude` sparsifier, so 1 − d exact zeros) and scores
the base plus that delta on the SFT probe: held-out word problems (data/generate.py `sft_probe_rows`),
asked with the chat template, greedy, exact match of the `#### N` answer. Skill kept at d is
(score − base) / (plain SFT untrimmed − base); paired standard errors are against the base, per item.
Writes `.bench/l1-sweep/results.json` and `l1_sweep.png`, and prints a Markdown table.
"""

import argparse
import json
import os
import re
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")

import torch  # noqa: E402
from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: E402

from paft_core import models  # noqa: E402
from paft_core.config import PipelineRun, load_config  # noqa: E402
from paft_core.evaluation import paired  # noqa: E402
from paft_core.merging import sparsify
from paft_core.merging.checkpoint import Reader  # noqa: E402
from paft_core.merging.deltas import LoraDelta  # noqa: E402
from paft_core.paths import PROJECT_ROOT  # noqa: E402
from paft_core.training import sft  # noqa: E402

sys.path.insert(0, str(PROJECT_ROOT / "data"))
from generate import sft_probe_rows  # noqa: E402

ANSWER = re.compile(r"####\s*(-?\d+)")


def train(spec: PipelineRun, target: str, strength: float, steps: int, folder: Path) -> Path:
    """The demo's SFT branch with this L1 setting, cached by folder."""
    raw = spec.model_dump(mode="json", by_alias=True)
    raw["sft"]["l1"] = {"strength": strength, "target": target if strength else "lora", "mode": "loss"}
    raw["sft"]["train"]["max_steps"] = steps
    raw["sft"]["train"]["threads"] = 1  # the machine is shared: one thread trains fastest under load
    raw["merge"] = {"method": "task_arithmetic", "deltas": ["sft"]}
    out = folder / f"sft-{target}-{strength:g}" if strength else folder / "sft-plain"
    return sft.train(PipelineRun.model_validate(raw), out) / "adapter"


def score(model, tokenizer, items: list[dict], batch: int, max_new_tokens: int) -> list[int]:
    """1 per item whose greedy answer ends in the right `#### N`, else 0."""
    outcomes = []
    for start in range(0, len(items), batch):
        chunk = items[start:start + batch]
        prompts = [tokenizer.apply_chat_template([{"role": "user", "content": row["question"]}],
                                                 tokenize=False, add_generation_prompt=True) for row in chunk]
        encoded = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
        with torch.no_grad():
            generated = model.generate(**encoded, max_new_tokens=max_new_tokens, do_sample=False,
                                       pad_token_id=tokenizer.pad_token_id)
        texts = tokenizer.batch_decode(generated[:, encoded["input_ids"].shape[1]:], skip_special_tokens=True)
        for row, text in zip(chunk, texts, strict=True):
            found = ANSWER.search(text)
            outcomes.append(int(bool(found) and found.group(1) == row["answer"]))
    return outcomes


def trimmed_deltas(adapter: Path, base: Reader, density: float) -> dict[str, torch.Tensor]:
    """ΔW per base tensor, trimmed to its top `density` by magnitude (the merge's sparsifier)."""
    lora = LoraDelta(adapter, "sft", base)
    return {name: sparsify.magnitude(lora.delta(name), density) for name in lora.targets()}


def concentration(deltas: dict[str, torch.Tensor], share: float = 0.1) -> float:
    """Share of ΔW's L1 mass held by each tensor's top `share` entries by magnitude, overall."""
    top = total = 0.0
    for delta in deltas.values():
        flat = delta.abs().flatten()
        k = max(1, int(share * flat.numel()))
        top += float(flat.topk(k).values.sum())
        total += float(flat.sum())
    return top / total if total else 0.0


def evaluate(model, tokenizer, adapter: Path, base: Reader, densities, items, args) -> dict:
    """Per density: probe outcomes of base + trimmed ΔW; the untrimmed delta's concentration."""
    weights = dict(model.named_parameters())
    found = {}
    for density in densities:
        deltas = trimmed_deltas(adapter, base, density)
        if density == 1.0:
            found["concentration_top10"] = concentration(deltas)
        originals = {name: weights[name].detach().clone() for name in deltas}
        with torch.no_grad():
            for name, delta in deltas.items():
                weights[name].add_(delta)
        found[f"{density:g}"] = score(model, tokenizer, items, args.batch, args.max_new_tokens)
        with torch.no_grad():  # back to the base exactly (add then subtract would round)
            for name, original in originals.items():
                weights[name].copy_(original)
        print(f"  density {density:g}: {sum(found[f'{density:g}'])}/{len(items)}", flush=True)
    return found


def table(results: dict, densities) -> str:
    """Markdown: per (target, λ), score and skill kept at each density, with paired stderr vs base."""
    base = results["base"]
    full = results["runs"]["plain"]["1"]
    gain = (sum(full) - sum(base)) / len(base)
    head = "| target | λ | top-10 % L1 mass | " + " | ".join(f"d={d:g}: score (kept)" for d in densities)
    lines = [head + " |", "|---" * (3 + len(densities)) + "|"]
    for run in results["runs"].values():
        cells = []
        for density in densities:
            outcomes = run[f"{density:g}"]
            mean, stderr = paired.difference(base, outcomes)
            kept = mean / gain if gain else float("nan")
            score = 100 * sum(outcomes) / len(outcomes)
            cells.append(f"{score:.1f} ± {100 * stderr:.1f} ({100 * kept:.0f} %)")
        target, strength = run["target"], run["strength"]
        lines.append(f"| {target} | {strength:g} | {100 * run['concentration_top10']:.0f} % | "
                     + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(results: dict, densities, path: Path) -> None:
    """Skill kept against λ, one line per (target, density)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    base, full = results["base"], results["runs"]["plain"]["1"]
    gain = (sum(full) - sum(base)) / len(base)
    figure, axis = plt.subplots(figsize=(7, 4.5))
    for target in sorted({run["target"] for run in results["runs"].values() if run["target"] != "none"}):
        runs = [results["runs"]["plain"]] + [r for r in results["runs"].values() if r["target"] == target]
        runs.sort(key=lambda r: r["strength"])
        xs = [max(r["strength"], 1e-8) for r in runs]
        for density in densities:
            kept = [100 * paired.difference(base, r[f"{density:g}"])[0] / gain for r in runs]
            axis.plot(xs, kept, marker="o", label=f"{target}, density {density:g}")
    axis.set_xscale("log")
    axis.axhline(80, color="grey", linestyle=":", linewidth=1)
    axis.set(xlabel="λ (0 plotted at 1e-8)", ylabel="SFT skill kept, % of plain SFT's gain",
             title="L1 strength vs SFT skill kept after magnitude trimming")
    axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=100)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", nargs="+", default=["lora", "delta"])
    parser.add_argument("--lambdas", nargs="+", type=float, default=[1e-5, 1e-4, 1e-3, 1e-2])
    parser.add_argument("--delta-lambdas", nargs="+", type=float, default=None,
                        help="λ values for target delta (its norm sums far more entries); default: --lambdas")
    parser.add_argument("--densities", nargs="+", type=float, default=[1.0, 0.05, 0.02])
    parser.add_argument("--steps", type=int, default=None, help="SFT steps; default: the demo's")
    parser.add_argument("--items", type=int, default=100)
    parser.add_argument("--batch", type=int, default=25)
    parser.add_argument("--max-new-tokens", type=int, default=28)
    parser.add_argument("--threads", type=int, default=1, help="torch threads for scoring")
    parser.add_argument("--folder", type=Path, default=Path(".bench/l1-sweep"))
    args = parser.parse_args()
    args.folder.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{(args.folder / 'mlflow.db').resolve()}")
    spec = load_config(PROJECT_ROOT / "configs" / "pipeline" / "demo.yaml")
    steps = args.steps or spec.sft.train.max_steps
    items = sft_probe_rows(args.items)
    plan = [("none", 0.0)] + [(t, s) for t in args.targets
                              for s in (args.delta_lambdas or args.lambdas if t == "delta" else args.lambdas)]
    adapters = {(t, s): train(spec, t, s, steps, args.folder) for t, s in plan}
    torch.set_num_threads(args.threads)
    base = models.resolve(spec.model)
    tokenizer = AutoTokenizer.from_pretrained(base.path, padding_side="left")
    model = AutoModelForCausalLM.from_pretrained(base.path, dtype=torch.float32).eval()
    saved = args.folder / "results.json"
    results = json.loads(saved.read_text()) if saved.is_file() else {}  # a stopped sweep resumes
    if results.get("items") != len(items) or results.get("steps") != steps:
        results = {"base": score(model, tokenizer, items, args.batch, args.max_new_tokens), "runs": {},
                   "steps": steps, "items": len(items)}
        saved.write_text(json.dumps(results))
    print(f"base: {sum(results['base'])}/{len(items)}", flush=True)
    reader = Reader(base.path)
    for (target, strength), adapter in adapters.items():
        print(f"{target} λ={strength:g}", flush=True)
        key = "plain" if not strength else f"{target}-{strength:g}"
        if all(f"{d:g}" in results["runs"].get(key, {}) for d in args.densities):
            continue
        found = evaluate(model, tokenizer, adapter, reader, args.densities, items, args)
        results["runs"][key] = {"target": target, "strength": strength, **found}
        (args.folder / "results.json").write_text(json.dumps(results))
    print(table(results, args.densities))
    plot(results, args.densities, args.folder / "l1_sweep.png")


if __name__ == "__main__":
    main()
