"""A tiny random Llama and a byte-level BPE tokenizer trained in code: the test suite's base model."""

import json
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from paft_core.config import PipelineRun

SPECIAL = ["<pad>", "<|endoftext|>", "<|im_start|>", "<|im_end|>"]
CHATML = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def build_tokenizer(corpus: list[str]) -> PreTrainedTokenizerFast:
    """Train a 512-token byte-level BPE with ChatML special tokens on `corpus`."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=512, special_tokens=SPECIAL,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tokenizer.train_from_iterator(corpus, trainer=trainer)
    wrapped = PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token="<|im_end|>",
                                      pad_token="<pad>", bos_token=None)
    wrapped.chat_template = CHATML
    return wrapped


def build_model(folder: Path, corpus: list[str], seed: int = 0, hidden_size: int = 64) -> Path:
    """Save a 2-layer random Llama (hidden 64 by default) and its tokenizer to `folder` as safetensors."""
    import torch

    tokenizer = build_tokenizer(corpus)
    width = {"hidden_size": hidden_size, "intermediate_size": 2 * hidden_size}
    config = LlamaConfig(vocab_size=len(tokenizer), **width,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=512, pad_token_id=tokenizer.pad_token_id,
                         eos_token_id=tokenizer.eos_token_id, bos_token_id=None, tie_word_embeddings=False)
    torch.manual_seed(seed)
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def paths_demo(name: str) -> Path:
    """A file of the project's demo data."""
    from paft_core.paths import DEMO_DATA

    return DEMO_DATA / name


def corpus_from(*jsonl: Path) -> list[str]:
    """Every text field of every row of the given JSONL files, to train the tokenizer on."""
    lines = []
    for path in jsonl:
        for row in map(json.loads, path.read_text().splitlines()):
            lines.extend(_texts(row))
    return lines


def _texts(value) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [t for v in value.values() for t in _texts(v)]
    if isinstance(value, list):
        return [t for v in value for t in _texts(v)]
    return []


def spec(tiny_base, **overrides) -> PipelineRun:
    """A pipeline spec on the tiny model: a few steps of each branch on 16 demo rows."""
    train = {"max_steps": 4, "batch_size": 2, "learning_rate": 1e-2, "logging_steps": 1,
             "save_steps": 2, "max_length": 128, "seed": 7}
    raw = {
        "name": "tiny",
        "model": {"source": str(tiny_base)},
        "sft": {"data": {"source": "demo", "limit": 16}, "train": dict(train), "l1": {"strength": 0.0}},
        "preference": {"data": {"source": "demo", "limit": 16}, "train": dict(train)},
    }
    for dotted, value in overrides.items():
        node = raw
        *parents, leaf = dotted.split("__")
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    return PipelineRun.model_validate(raw)


def build_in_memory(base, branch_spec, build, out):
    """A branch's trainer on the tiny base, seeded as a stage would be (not yet trained)."""
    import torch

    from paft_core.config import ModelSpec
    from paft_core.data import load
    from paft_core.training import common

    kind = "sft" if hasattr(branch_spec, "l1") else "preference"
    torch.manual_seed(branch_spec.train.seed)
    model, tokenizer = common.load_base(base, ModelSpec(source=str(base)), branch_spec.train)
    dataset = load(branch_spec.data, kind).dataset
    return build(branch_spec, model, tokenizer, dataset, out, [])


def adapter_deltas(adapter_dir) -> dict:
    """ΔW = (α/r)·B·A per module, read from a saved PEFT adapter."""
    from safetensors.torch import load_file

    config = json.loads((adapter_dir / "adapter_config.json").read_text())
    scale = config["lora_alpha"] / config["r"]
    weights = load_file(adapter_dir / "adapter_model.safetensors")
    return {key.replace(".lora_A.weight", ""): scale * weights[key.replace("lora_A", "lora_B")] @ a
            for key, a in weights.items() if "lora_A" in key}


def snapshot(model) -> dict:
    """A copy of every named parameter."""
    return {name: p.detach().clone() for name, p in model.named_parameters()}


def train_and_check_only_lora_changed(trainer) -> None:
    """Train, then assert every LoRA tensor moved and every base weight is bit-identical."""
    import torch

    before = snapshot(trainer.model)
    trainer.train()
    after = snapshot(trainer.model)
    lora = [name for name in before if "lora_" in name]
    assert lora and all(not torch.equal(before[n], after[n]) for n in lora)
    assert all(torch.equal(before[n], after[n]) for n in before if n not in lora)


def tracked_runs(home, experiment: str = "paft"):
    """The MLflow client of a PAFT_HOME's default store and its experiment's runs, oldest first."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{home / 'mlflow.db'}")
    found = client.get_experiment_by_name(experiment)
    return client, client.search_runs([found.experiment_id], order_by=["attributes.start_time ASC"])


def make_adapter(base: Path, folder: Path, seed: int, **lora) -> Path:
    """Save a PEFT LoRA adapter on `base` with random A and B (so ΔW ≠ 0), as training would leave it."""
    import torch
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(seed)
    model = LlamaForCausalLM.from_pretrained(base)
    options = {"r": 4, "lora_alpha": 8, "target_modules": "all-linear", "init_lora_weights": False, **lora}
    get_peft_model(model, LoraConfig(**options)).save_pretrained(folder)
    return folder


def finished_branch(run: PipelineRun, branch: str, adapter_source: Path, fingerprint: str) -> Path:
    """Place an adapter where `paft train <branch>` would have left it, in a complete stage folder."""
    import shutil

    from paft_core import stage

    reads = stage.branch_reads(run, branch)
    folder = stage.default_folder(branch, reads)
    stage.claim(folder, branch, reads)
    stage.check_inputs(folder, {"model": fingerprint})
    shutil.copytree(adapter_source, folder / "adapter")
    stage.finish(folder, {"adapter": "adapter"})
    return folder


# Tiny random configs of architectures the merge must handle: module names as in the real models.
# GPT-2 stores c_attn / c_proj / c_fc as Conv1D, (in, out); Phi-3 fuses qkv_proj and gate_up_proj;
# Gemma ties lm_head to the embeddings by default.
ARCHITECTURES = {
    "llama": ("LlamaConfig", "LlamaForCausalLM", {"hidden_size": 32, "intermediate_size": 64,
                                                  "num_attention_heads": 4, "num_key_value_heads": 2}),
    "mistral": ("MistralConfig", "MistralForCausalLM", {"hidden_size": 32, "intermediate_size": 64,
                                                        "num_attention_heads": 4, "num_key_value_heads": 2}),
    "qwen2": ("Qwen2Config", "Qwen2ForCausalLM", {"hidden_size": 32, "intermediate_size": 64,
                                                  "num_attention_heads": 4, "num_key_value_heads": 2}),
    "phi3": ("Phi3Config", "Phi3ForCausalLM", {"hidden_size": 32, "intermediate_size": 64,
                                               "num_attention_heads": 4, "num_key_value_heads": 2}),
    "gemma": ("GemmaConfig", "GemmaForCausalLM", {"hidden_size": 32, "intermediate_size": 64, "head_dim": 8,
                                                  "num_attention_heads": 4, "num_key_value_heads": 2}),
    "gpt2": ("GPT2Config", "GPT2LMHeadModel", {"n_embd": 32, "n_head": 4, "n_positions": 64}),
}


def build_architecture(folder: Path, architecture: str, seed: int = 0, **config) -> Path:
    """Save a 2-layer random model of one of ARCHITECTURES (vocabulary 64, no tokenizer) to `folder`."""
    import torch
    import transformers

    config_class, model_class, sizes = ARCHITECTURES[architecture]
    layers = {"n_layer": 2} if architecture == "gpt2" else {"num_hidden_layers": 2}
    options = {**sizes, **layers, "vocab_size": 64, "bos_token_id": 0, "eos_token_id": 0, "pad_token_id": 0,
               **config}
    torch.manual_seed(seed)
    model = getattr(transformers, model_class)(getattr(transformers, config_class)(**options))
    model.save_pretrained(folder)
    return folder


def make_any_adapter(base: Path, folder: Path, seed: int, save_embedding_layers="auto", **lora) -> Path:
    """Save a PEFT LoRA adapter on any causal LM folder with random A and B (ΔW ≠ 0)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(base)
    options = {"r": 4, "lora_alpha": 8, "target_modules": "all-linear", "init_lora_weights": False, **lora}
    model = get_peft_model(model, LoraConfig(**options))
    model.save_pretrained(folder, save_embedding_layers=save_embedding_layers)
    return folder
