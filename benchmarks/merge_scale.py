"""Synthetic Llama-shaped checkpoints at the sizes people merge, and the read+write floor, for `paft merge`.

Usage (from the repo root; files go under .bench/, which git ignores; delete them afterwards):

    .venv/bin/python benchmarks/merge_scale.py prepare 1.7b .bench/merge-1.7b
    .venv/bin/python benchmarks/merge_scale.py floor .bench/merge-1.7b/base .bench/merge-1.7b/floor-out
    .venv/bin/python -m paft merge .bench/merge-1.7b/merge.yaml --out .bench/merge-1.7b/out

`prepare` writes a bf16 base (random weights, one layer at a time, 5 GB shards: never two copies in memory),
two rank-16 adapters on every linear layer with B ≠ 0 as after training, and a TIES spec at density 0.5.
`floor` reads every shard with safetensors and writes it again: the least any merge must do.
Time each subject in a fresh process, in turn, and quote the ratios (BENCHMARKS.md).
"""

import json
import shutil
import sys
import time
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

# name → (hidden, intermediate, layers, attention heads, key-value heads, vocabulary, tied embeddings)
SHAPES = {"135m": (576, 1536, 30, 9, 3, 49152, True), "1.7b": (2048, 8192, 24, 32, 32, 49152, True),
          "7b": (4096, 14336, 32, 32, 8, 32000, False)}
LINEAR = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj", "mlp.gate_proj",
          "mlp.up_proj", "mlp.down_proj")
SHARD_BYTES = 5 << 30


def prepare(shape: str, folder: Path) -> None:
    """Base checkpoint, config, two adapters and the merge spec."""
    hidden, inter, layers, heads, kv, vocab, tied = SHAPES[shape]
    base = folder / "base"
    base.mkdir(parents=True, exist_ok=True)
    config = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": hidden,
              "intermediate_size": inter, "num_hidden_layers": layers, "num_attention_heads": heads,
              "num_key_value_heads": kv, "vocab_size": vocab, "tie_word_embeddings": tied,
              "torch_dtype": "bfloat16", "rms_norm_eps": 1e-5}
    (base / "config.json").write_text(json.dumps(config, indent=2))
    _write_base(base, _shapes(hidden, inter, layers, heads, kv, vocab, tied))
    for seed, name in enumerate(("sft", "preference")):
        _write_adapter(folder / name, hidden, inter, layers, heads, kv, seed)
    spec = {"model": {"source": str(base.resolve())},
            "merge": {"method": "ties", "density": 0.5, "deltas": [str((folder / name).resolve())
                                                                     for name in ("sft", "preference")]},
            "tracking": {"tracking_uri": f"sqlite:///{(folder / 'mlflow.db').resolve()}",
                         "experiment": "merge-scale"}}
    (folder / "merge.yaml").write_text(json.dumps(spec, indent=2))


def _shapes(hidden, inter, layers, heads, kv, vocab, tied) -> list[list[tuple[str, tuple[int, ...]]]]:
    """Tensor names and shapes, grouped by layer, in the order HF writes them."""
    kv_width = hidden // heads * kv
    groups = [[("model.embed_tokens.weight", (vocab, hidden))]]
    for layer in range(layers):
        prefix = f"model.layers.{layer}."
        out_in = _linear_shapes(hidden, inter, kv_width)
        groups.append([(f"{prefix}{module}.weight", out_in[module]) for module in LINEAR]
                      + [(f"{prefix}input_layernorm.weight", (hidden,)),
                         (f"{prefix}post_attention_layernorm.weight", (hidden,))])
    head = [] if tied else [("lm_head.weight", (vocab, hidden))]
    groups.append([("model.norm.weight", (hidden,)), *head])
    return groups


def _linear_shapes(hidden: int, inter: int, kv_width: int) -> dict[str, tuple[int, int]]:
    return {"self_attn.q_proj": (hidden, hidden), "self_attn.k_proj": (kv_width, hidden),
            "self_attn.v_proj": (kv_width, hidden), "self_attn.o_proj": (hidden, hidden),
            "mlp.gate_proj": (inter, hidden), "mlp.up_proj": (inter, hidden),
            "mlp.down_proj": (hidden, inter)}


def _write_base(base: Path, groups: list) -> None:
    """Shards of at most SHARD_BYTES, filled layer by layer; weights N(0, 0.02) as at initialisation."""
    generator = torch.Generator().manual_seed(0)
    shards, current, size = [], {}, 0
    for group in groups:
        for name, shape in group:
            tensor = torch.randn(shape, generator=generator).mul_(0.02).to(torch.bfloat16)
            if current and size + tensor.numel() * 2 > SHARD_BYTES:
                shards.append(_flush(base, current, len(shards)))
                current, size = {}, 0
            current[name], size = tensor, size + tensor.numel() * 2
    shards.append(_flush(base, current, len(shards)))
    count = len(shards)
    weight_map = {}
    for index, names in enumerate(shards):
        final = f"model-{index + 1:05d}-of-{count:05d}.safetensors"
        (base / f"part-{index}.safetensors").rename(base / final)
        weight_map.update(dict.fromkeys(names, final))
    (base / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))


def _flush(base: Path, tensors: dict, index: int) -> list[str]:
    save_file(tensors, base / f"part-{index}.safetensors", metadata={"format": "pt"})
    return list(tensors)


def _write_adapter(folder: Path, hidden: int, inter: int, layers: int, heads: int, kv: int,
                   seed: int) -> None:
    """A PEFT LoRA adapter (r=16, α=32) on every linear layer, B drawn non-zero."""
    generator = torch.Generator().manual_seed(100 + seed)
    folder.mkdir(parents=True, exist_ok=True)
    factors = {}
    for layer in range(layers):
        for module, (out, inp) in _linear_shapes(hidden, inter, hidden // heads * kv).items():
            key = f"base_model.model.model.layers.{layer}.{module}"
            factors[f"{key}.lora_A.weight"] = torch.randn(16, inp, generator=generator) / inp**0.5
            factors[f"{key}.lora_B.weight"] = torch.randn(out, 16, generator=generator) * 1e-3
    save_file(factors, folder / "adapter_model.safetensors", metadata={"format": "pt"})
    config = {"peft_type": "LORA", "task_type": "CAUSAL_LM", "r": 16, "lora_alpha": 32, "bias": "none",
              "target_modules": sorted({module.split(".")[-1] for module in LINEAR}), "lora_dropout": 0.0}
    (folder / "adapter_config.json").write_text(json.dumps(config, indent=2))


def floor(base: Path, out: Path) -> None:
    """Read every shard and write it again, one shard in memory at a time."""
    started = time.perf_counter()
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    for shard in sorted(base.glob("*.safetensors")):
        save_file(load_file(shard), out / shard.name, metadata={"format": "pt"})
    print(json.dumps({"seconds": time.perf_counter() - started}))


if __name__ == "__main__":
    command, *arguments = sys.argv[1:]
    if command == "prepare":
        prepare(arguments[0], Path(arguments[1]))
    else:
        floor(Path(arguments[0]), Path(arguments[1]))
