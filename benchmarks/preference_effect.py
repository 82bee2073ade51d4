"""Does the demo's preference branch teach what its probe measures? Base vs DPO on held-out honesty pairs.

    .venv/bin/python benchmarks/preference_effect.py --steps 40 --lr 1e-4

Trains the preference branch of configs/pipeline/demo.yaml (cached in `.bench/preference-effect/`), then
scores the base and base + ΔW_pref on data/probes/preference_skill.jsonl by log-likelihood choice (the
honest answer against the made-up one, after the question as a chat turn), and prints both accuracies
and their paired difference with its standard error. Used to choose the demo's preference data and
steps (BENCHMARKS.md); `make run` scores the same probe through lm-eval.
"""

import argparse
import json
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")

import torch  # noqa: E402
from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: E402

from paft_core import models  # noqa: E402
from paft_core.config import PipelineRun, load_config  # noqa: E402
from paft_core.evaluation import paired  # noqa: E402
from paft_core.merging.checkpoint import Reader  # noqa: E402
from paft_core.merging.deltas import LoraDelta  # noqa: E402
from paft_core.paths import PROJECT_ROOT  # noqa: E402
from paft_core.training import preference  # noqa: E402


def train(spec: PipelineRun, args, folder: Path) -> Path:
    """The demo's preference branch with these steps and learning rate, cached by folder."""
    raw = spec.model_dump(mode="json", by_alias=True)
    raw["preference"]["train"].update(max_steps=args.steps, learning_rate=args.lr, threads=1)
    raw["preference"]["beta"] = args.beta
    out = folder / f"dpo-{args.steps}-{args.lr:g}-{args.beta:g}"
    return preference.train(PipelineRun.model_validate(raw), out) / "adapter"


def choice_outcomes(model, tokenizer, rows: list[dict]) -> list[int]:
    """1 where the summed log-likelihood of the honest answer beats the made-up one's."""
    outcomes = []
    for row in rows:
        prompt = tokenizer.apply_chat_template([{"role": "user", "content": row["question"]}],
                                               tokenize=False, add_generation_prompt=True)
        scores = [loglikelihood(model, tokenizer, prompt, choice) for choice in row["choices"]]
        outcomes.append(int(scores[row["answer"]] == max(scores)))
    return outcomes


def loglikelihood(model, tokenizer, prompt: str, continuation: str) -> float:
    """log p(continuation | prompt), summed over the continuation's tokens."""
    context = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    whole = tokenizer(prompt + continuation, add_special_tokens=False)["input_ids"]
    ids = torch.tensor([whole])
    with torch.no_grad():
        logits = model(ids).logits[0, :-1].log_softmax(-1)
    targets = ids[0, 1:]
    picked = logits.gather(1, targets[:, None])[:, 0]
    return float(picked[len(context) - 1:].sum())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--beta", type=float, default=0.1)
    parser.add_argument("--items", type=int, default=200)
    parser.add_argument("--folder", type=Path, default=Path(".bench/preference-effect"))
    args = parser.parse_args()
    args.folder.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{(args.folder / 'mlflow.db').resolve()}")
    spec = load_config(PROJECT_ROOT / "configs" / "pipeline" / "demo.yaml")
    adapter = train(spec, args, args.folder)
    rows = [json.loads(line) for line in (PROJECT_ROOT / "data" / "probes" / "preference_skill.jsonl")
            .read_text().splitlines()][:args.items]
    base = models.resolve(spec.model)
    tokenizer = AutoTokenizer.from_pretrained(base.path)
    model = AutoModelForCausalLM.from_pretrained(base.path, dtype=torch.float32).eval()
    before = choice_outcomes(model, tokenizer, rows)
    weights, lora = dict(model.named_parameters()), LoraDelta(adapter, "preference", Reader(base.path))
    with torch.no_grad():
        for name in lora.targets():
            weights[name].add_(lora.delta(name))
    after = choice_outcomes(model, tokenizer, rows)
    mean, stderr = paired.difference(before, after)
    ratio = mean / stderr if stderr else 0.0
    print(f"base {sum(before)}/{len(rows)}, preference-only {sum(after)}/{len(rows)}: "
          f"{100 * mean:+.1f} points, paired SE {100 * stderr:.1f} ({ratio:.1f} SEs)")


if __name__ == "__main__":
    main()
