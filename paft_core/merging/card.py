"""The merged model's card (README.md), its recipe (paft-merge.yaml) and the base's side files beside it."""

import json
import shutil
from pathlib import Path

import yaml

from paft_core import models
from paft_core.models import ResolvedModel

RECIPE = "paft-merge.yaml"
WEIGHT_FILES = (".safetensors", ".bin", ".pt", ".pth", ".gguf")
SKIPPED = {"model.safetensors.index.json", "pytorch_model.bin.index.json", "README.md",
           models.FINGERPRINT_FILE}


def write_card(folder: Path, base: ResolvedModel, reads: dict, summary: dict[str, float],
               dtype: str) -> None:
    """Write README.md (HF model card with metadata) and the merge recipe beside the weights."""
    recipe = {"base_model": {"source": base.source, "fingerprint": base.fingerprint},
              "deltas": reads["deltas"], "merge": reads["merge"]}
    (folder / RECIPE).write_text(yaml.safe_dump(recipe, sort_keys=False))
    figures = "\n".join(f"| {key} | {value:.4g} |" for key, value in summary.items())
    deltas = "\n".join(f"- `{label}` (sha256 {value[:12]})" for label, value in reads["deltas"].items())
    card = f"""---
library_name: transformers
tags: [paft, merge, {reads['merge']['method']}]
---

# Merged with PAFT

Parallel SFT + preference training, merged (Pentyala et al., 2024, https://arxiv.org/abs/2406.17923).

- Base model: `{base.source}` (sha256 {base.fingerprint[:12]})
- Method: `{reads['merge']['method']}` on the exact weight deltas ΔW; recipe in `{RECIPE}`.
- Weights: {dtype} (`merge.dtype: {reads['merge']['dtype']}`); `cast/lost_l1_share` below is the share of
  the merged delta's L1 mass that rounding to it lost.
- Deltas:
{deltas}

## Recipe

```yaml
{yaml.safe_dump(recipe['merge'], sort_keys=False).strip()}
```

## Sparsity and interference of the deltas

| figure | value |
| --- | --- |
{figures}
"""
    (folder / "README.md").write_text(card)


def record_dtype(folder: Path, dtype: str) -> None:
    """Make the copied config.json name merge.dtype (transformers 5 reads `dtype`, 4.x `torch_dtype`)."""
    config = folder / "config.json"
    if dtype == "base" or not config.is_file():
        return
    values = json.loads(config.read_text())
    values.update(dict.fromkeys([k for k in ("dtype", "torch_dtype") if k in values] or ["dtype"], dtype))
    config.write_text(json.dumps(values, indent=2, sort_keys=True) + "\n")


def copy_side_files(source: Path, target: Path) -> None:
    """Config, generation config, tokenizer and chat template: every small file but weights and caches."""
    for path in sorted(source.iterdir()):
        if path.is_file() and path.suffix not in WEIGHT_FILES and path.name not in SKIPPED:
            shutil.copy2(path, target / path.name)
