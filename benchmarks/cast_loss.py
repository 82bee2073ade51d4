"""What writing the merge in bf16 loses: the share of each delta's L1 mass that rounds away, from the report.

    .venv/bin/python benchmarks/cast_loss.py SFT_ADAPTER PREFERENCE_ADAPTER

Makes a bf16 copy of the embedded SmolLM2 base in `.bench/cast-loss/`, then runs the real `paft merge`
(preset paft-ties) of the two adapters into it three times: as trained, with the preference delta scaled
by 1/200 (the 7B recipes train DPO at lr 5e-7, 200× below the demo's 1e-4, so their ΔW is about that much
smaller), and the latter with `merge.dtype: float32`. Prints the report's `cast/*` shares per case.
"""

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

import torch
import yaml
from safetensors.torch import load_file, save_file

from paft_core import models
from paft_core.config import ModelSpec


def bf16_base(folder: Path) -> Path:
    """A bf16 copy of the embedded base (config says bfloat16), made once."""
    if (folder / "model.safetensors").is_file():
        return folder
    source = models.resolve(ModelSpec()).path
    shutil.copytree(source, folder, ignore=shutil.ignore_patterns("*.safetensors", "paft-*"))
    tensors = {k: v.to(torch.bfloat16) for k, v in load_file(source / "model.safetensors").items()}
    save_file(tensors, folder / "model.safetensors", metadata={"format": "pt"})
    config = json.loads((folder / "config.json").read_text())
    config["dtype"] = "bfloat16"
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    return folder


def scaled_adapter(adapter: Path, folder: Path, factor: float) -> Path:
    """A copy of `adapter` whose ΔW is `factor` times the original (B scaled)."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy2(adapter / "adapter_config.json", folder / "adapter_config.json")
    weights = load_file(adapter / "adapter_model.safetensors")
    scaled = {k: v * factor if "lora_B" in k else v for k, v in weights.items()}
    save_file(scaled, folder / "adapter_model.safetensors", metadata={"format": "pt"})
    return folder


def merge(base: Path, deltas: list[Path], dtype: str, out: Path) -> dict:
    """Run `paft merge` and return the report's cast figures."""
    spec = {"name": "cast", "model": {"source": str(base)},
            "merge": {"preset": "paft-ties", "deltas": [str(d) for d in deltas], "dtype": dtype},
            "tracking": {"experiment": "cast-loss"}}
    config = out.parent / f"{out.name}.yaml"
    config.write_text(yaml.safe_dump(spec))
    shutil.rmtree(out, ignore_errors=True)
    command = [sys.executable, "-m", "paft", "merge", str(config), "--out", str(out)]
    subprocess.run(command, check=True)
    overall = json.loads((out / "report.json").read_text())["overall"]
    return {key: value for key, value in overall.items() if "cast" in key}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sft", type=Path)
    parser.add_argument("preference", type=Path)
    parser.add_argument("--folder", type=Path, default=Path(".bench/cast-loss"))
    args = parser.parse_args()
    args.folder.mkdir(parents=True, exist_ok=True)
    base = bf16_base(args.folder / "base-bf16")
    sft = scaled_adapter(args.sft, args.folder / "sft", 1.0)  # copies leave the stage folder's base check
    pref = scaled_adapter(args.preference, args.folder / "preference", 1.0)
    faint = scaled_adapter(args.preference, args.folder / "preference-lr5e-7", 1 / 200)
    cases = {"bf16, as trained": ([sft, pref], "base"), "bf16, preference ΔW / 200": ([sft, faint], "base"),
             "float32 output, preference ΔW / 200": ([sft, faint], "float32")}
    for index, (name, (deltas, dtype)) in enumerate(cases.items()):
        figures = merge(base, deltas, dtype, args.folder / f"merge-{index}")
        print(f"| {name} | " + " | ".join(f"{k} {100 * v:.1f} %" for k, v in sorted(figures.items())) + " |")


if __name__ == "__main__":
    main()
