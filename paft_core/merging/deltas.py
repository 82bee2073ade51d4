"""Weight deltas ΔW per base tensor: from a PEFT LoRA adapter, (α/r)·B·A, or fine-tuned minus base.

Each delta is computed on demand for one tensor at a time in float32, so a merge never holds more than
one module's deltas. LoRA variants whose ΔW is not (α/r)·B·A on the unchanged base (DoRA, LoRA bias,
PiSSA-style inits that rewrite the base, …) are refused rather than merged wrong. A module one adapter
does not target is a zero delta for it, so adapters on different modules merge.
"""

import json
import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Protocol

import torch

from paft_core.errors import DataError
from paft_core.merging.checkpoint import Reader

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
PREFIX = "base_model.model."
FACTORS = (".lora_A.weight", ".lora_B.weight")
# LoraConfig fields whose non-default value changes what ΔW means; the merge covers none of them.
UNSUPPORTED = ("use_dora", "lora_bias", "use_qalora", "use_bdlora", "modules_to_save", "layer_replication",
               "target_parameters", "trainable_token_indices", "alora_invocation_tokens", "megatron_config",
               "kasa_config", "arrow_config", "velora_config", "monteclora_config")
BASE_REWRITING_INITS = ("pissa", "olora", "corda", "loftq", "lora_ga")  # these change W itself
# transformers' causal LMs built of Conv1D layers (pytorch_utils.Conv1D, weight stored (in, out)), and
# the layers that are Conv1D in them; peft transposes B·A for exactly these, whatever fan_in_fan_out says
CONV1D_MODELS = ("gpt2", "openai-gpt", "imagegpt", "decision_transformer")
CONV1D_LAYERS = ("c_attn", "q_attn", "c_proj", "c_fc")
# embedding layers peft saves whole beside the factors (save_embedding_layers, on by default when targeted)
EMBEDDING_LAYERS = ("embed_tokens", "lm_head", "wte")


def canonicalize_adapter_config(folder: Path) -> None:
    """Rewrite a saved adapter_config.json with sorted keys and sorted name lists.

    peft writes `target_modules` from a set, whose order changes between processes: without this, two
    byte-identical adapters trained in two processes would get different fingerprints, stage keys and caches.
    """
    path = Path(folder) / ADAPTER_CONFIG
    config = json.loads(path.read_text())
    for key in ("target_modules", "exclude_modules"):
        if isinstance(config.get(key), list):
            config[key] = sorted(config[key])
    path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


class Delta(Protocol):
    """What a merge needs from a delta, whatever it was trained as."""

    label: str
    path: Path

    def targets(self) -> dict[str, tuple[int, ...]]:
        """Base tensor names this delta changes, with the shape it gives them."""

    def delta(self, name: str, base: torch.Tensor, device: torch.device | None = None) -> torch.Tensor:
        """ΔW for one base tensor, in float32, on `device` (default: the CPU)."""

    def rows(self, name: str, start: int, stop: int, base: torch.Tensor | None) -> torch.Tensor:
        """Rows [start, stop) of ΔW for one base tensor, in float32 (`base`: the same rows of the base)."""


@dataclass(frozen=True)
class Architecture:
    """What the base's config.json says about its tensors' layout."""

    model_type: str | None = None
    tied: bool = False  # tie_word_embeddings: lm_head shares the input embeddings' tensor

    @classmethod
    def of(cls, base: Reader) -> "Architecture":
        """Read the base checkpoint's config.json (absent: a Linear-only, untied model)."""
        config = (base.path if base.path.is_dir() else base.path.parent) / "config.json"
        if not config.is_file():
            return cls()
        values = json.loads(config.read_text())
        # transformers' default is tied, so a config that omits the flag ties
        return cls(values.get("model_type"), bool(values.get("tie_word_embeddings", True)))

    def conv1d(self, name: str) -> bool:
        """Whether base tensor `name` is a Conv1D weight, stored (in, out) rather than (out, in)."""
        return (self.model_type in CONV1D_MODELS and name.endswith(".weight")
                and _layer(name) in CONV1D_LAYERS)


def conv1d_weights(base: Reader) -> set[str]:
    """The base's Conv1D weights: a LoRA on them holds B·A transposed to the stored layout."""
    architecture = Architecture.of(base)
    return {name for name, entry in base.entries.items() if len(entry.shape) == 2
            and architecture.conv1d(name)}


class LoraDelta:
    """ΔW = s·B·A per adapted module, s = α/r (or α/√r with rsLoRA), read from the adapter's safetensors.

    B·A is (out, in); on a Conv1D layer it is transposed to the base's (in, out), decided per module from
    the base's architecture as peft does, not from the adapter's one fan_in_fan_out flag (peft saves the
    flag of the last layer it wrapped: false for GPT-2 with lm_head targeted too).
    """

    def __init__(self, path: Path, label: str, base: Reader):
        self.path, self.label = Path(path), label
        self.config = json.loads((self.path / ADAPTER_CONFIG).read_text())
        _refuse_unsupported(self.config, self.path)
        self.reader = Reader(self.path / ADAPTER_WEIGHTS)
        self.modules, self.copies = _lora_modules(self.reader.names(), self.path)
        self.architecture = Architecture.of(base)

    def targets(self) -> dict[str, tuple[int, ...]]:
        """Base weight names with ΔW's shape as the base stores it, taken from the factors' headers."""
        shapes = {}
        for module in self.modules:
            rank_in = self.reader.entries[f"{PREFIX}{module}.lora_A.weight"].shape
            out_rank = self.reader.entries[f"{PREFIX}{module}.lora_B.weight"].shape
            shape = (out_rank[0], rank_in[1])
            name = f"{module}.weight"
            shapes[name] = shape[::-1] if self.architecture.conv1d(name) else shape
        return shapes

    @cached_property
    def factors(self) -> dict[str, torch.Tensor]:
        """Every lora_A/lora_B, loaded once: adapters are small (rank × (in + out) per module)."""
        return {name: self.reader.get(name) for name in self.reader.names() if name.endswith(FACTORS)}

    def delta(self, name: str, base: torch.Tensor | None = None, device: torch.device | None = None
              ) -> torch.Tensor:
        """s·B·A for the module owning base tensor `name`, in the base's layout (on `device`)."""
        module = name.removesuffix(".weight")
        lora_a = self.factors[f"{PREFIX}{module}.lora_A.weight"].to(device).float()
        lora_b = self.factors[f"{PREFIX}{module}.lora_B.weight"].to(device).float()
        product = (lora_b @ lora_a) * self.scale(module, lora_a.shape[0])
        return product.T if self.architecture.conv1d(name) else product

    def rows(self, name: str, start: int, stop: int, base: torch.Tensor | None = None,
             out: torch.Tensor | None = None) -> torch.Tensor:
        """Rows [start, stop) of s·B·A in the base's layout: B's rows, or A's columns for a Conv1D.

        `out`: a float32 (stop − start, columns) tensor to write them into instead of a new one.
        """
        module = name.removesuffix(".weight")
        lora_a = self.factors[f"{PREFIX}{module}.lora_A.weight"].float()
        lora_b = self.factors[f"{PREFIX}{module}.lora_B.weight"].float()
        scale = self.scale(module, lora_a.shape[0])
        if self.architecture.conv1d(name):
            product = (lora_b @ lora_a[:, start:stop]).T
            return product * scale if out is None else out.copy_(product).mul_(scale)
        return torch.mm(lora_b[start:stop], lora_a, out=out).mul_(scale)  # in place: no second array

    def scale(self, module: str, rank: int) -> float:
        """peft's LoRA scaling for one module, honouring alpha_pattern and rsLoRA."""
        patterns = self.config.get("alpha_pattern") or {}
        # peft's rule (utils.other.get_pattern_key): the first key that matches the name's tail
        key = next((key for key in patterns if re.match(rf"(.*\.)?({key})$", module)), None)
        alpha = patterns[key] if key else self.config["lora_alpha"]
        return alpha / rank**0.5 if self.config.get("use_rslora") else alpha / rank

    def check_finite(self) -> None:
        """Refuse factors holding NaN or Inf (cheap: the factors are small)."""
        for name, factor in self.factors.items():
            if not torch.isfinite(factor).all():
                raise DataError(f"{self.path / ADAPTER_WEIGHTS}: {name} holds NaN or Inf")

    def check_copies(self, base: Reader) -> None:
        """Skip peft's saved copies of embedding layers that equal the base's; refuse changed ones."""
        for key in self.copies:
            name = key.removeprefix(PREFIX).replace(".base_layer.", ".")
            if name not in base.entries:
                raise _missing(self, name, base)
            copy, original = self.reader.get(key), base.get(name)
            if copy.shape != original.shape or not torch.equal(copy, original.to(copy.dtype)):
                raise DataError(f"{self.path / ADAPTER_WEIGHTS}: {key} differs from the base's {name} "
                                "(trained or resized embeddings); the merge adds LoRA deltas to an "
                                "unchanged base only: merge the fine-tuned model as a full checkpoint")


class FullDelta:
    """ΔW = fine-tuned − base for every floating-point tensor both checkpoints hold."""

    def __init__(self, path: Path, label: str, base: Reader):
        self.path, self.label = Path(path), label
        self.reader = Reader(self.path)
        self.base = base

    def targets(self) -> dict[str, tuple[int, ...]]:
        """Tensors present in both checkpoints (a tied lm_head may be missing from either)."""
        return {name: entry.shape for name, entry in self.reader.entries.items()
                if name in self.base.entries and entry.dtype in ("F32", "F16", "BF16", "F64")}

    def delta(self, name: str, base: torch.Tensor, device: torch.device | None = None) -> torch.Tensor:
        """Fine-tuned minus base for one tensor, in float32 (on `device`, where `base` is)."""
        return self.reader.get(name).to(device).float() - base.float()

    def rows(self, name: str, start: int, stop: int, base: torch.Tensor) -> torch.Tensor:
        """Rows [start, stop) of fine-tuned minus base, read from disk one block at a time."""
        return self.reader.get(name, (start, stop)).float() - base.float()


def open_delta(path: Path, label: str, base: Reader) -> Delta:
    """A LoRA adapter folder or a full fine-tuned checkpoint, recognised by its files."""
    path = Path(path)
    if (path / ADAPTER_CONFIG).is_file():
        if not (path / ADAPTER_WEIGHTS).is_file():
            raise DataError(f"{path}: adapter has no {ADAPTER_WEIGHTS} (only safetensors are read)")
        return LoraDelta(path, label, base)
    if path.is_dir() and (any(path.glob("*.safetensors"))):
        return FullDelta(path, label, base)
    raise DataError(f"{path}: delta '{label}' is neither a PEFT adapter ({ADAPTER_CONFIG}) nor a "
                    "safetensors checkpoint folder")


def check_against_base(deltas: list[Delta], base: Reader) -> None:
    """Refuse deltas whose tensors the base lacks or stores in another shape; check embedding copies."""
    for delta in deltas:
        for name, shape in delta.targets().items():
            entry = base.entries.get(name)
            if entry is None:
                raise _missing(delta, name, base)
            if entry.shape != shape:
                raise DataError(f"{delta.path}: delta '{delta.label}' gives {name} shape {shape}, "
                                f"the base {entry.shape}; " + _shape_hint(delta, name, entry.shape))
        if isinstance(delta, LoraDelta):
            delta.check_copies(base)


def _shape_hint(delta: Delta, name: str, shape: tuple[int, ...]) -> str:
    """Why a delta's shape may differ: another base, or a transposed layer of an unknown architecture."""
    if isinstance(delta, LoraDelta) and shape == delta.targets()[name][::-1]:
        return (f"the base stores it transposed, as a Conv1D layer does, but model_type "
                f"'{delta.architecture.model_type}' is not one PAFT knows to use Conv1D "
                f"({', '.join(CONV1D_MODELS)})")
    return "was it trained on another base?"


def _missing(delta: Delta, name: str, base: Reader) -> DataError:
    """Why the base lacks a tensor a delta changes: a tied lm_head, or another base."""
    where = f"{delta.path}: delta '{delta.label}' changes {name}"
    if _layer(name) == "lm_head" and Architecture.of(base).tied:
        return DataError(f"{where}, but the base {base.path} ties lm_head to the input embeddings "
                         "(tie_word_embeddings: true, no lm_head tensor), so merging it would change "
                         "the embeddings too; train without lm_head in lora.target_modules")
    return DataError(f"{where}, which the base model {base.path} does not have; "
                     "was it trained on another base?")


def _refuse_unsupported(config: dict, path: Path) -> None:
    """Name the first adapter setting whose ΔW is not (α/r)·B·A on the unchanged base."""
    where = path / ADAPTER_CONFIG
    if config.get("peft_type", "LORA") != "LORA":
        raise DataError(f"{where}: peft_type {config['peft_type']} is not merged; only LORA adapters are")
    for field in UNSUPPORTED:
        if config.get(field):
            raise DataError(f"{where}: {field} is set; the merge covers plain LoRA and rsLoRA only")
    if config.get("bias", "none") != "none":
        raise DataError(f"{where}: bias '{config['bias']}' trains biases too; the merge covers bias 'none'")
    init = str(config.get("init_lora_weights", True)).lower()
    if init.startswith(BASE_REWRITING_INITS):
        raise DataError(f"{where}: init_lora_weights '{init}' rewrites the base weights; convert the "
                        "adapter to a plain LoRA first (peft: path_initial_model_for_weight_conversion)")


def _lora_modules(keys: list[str], path: Path) -> tuple[list[str], list[str]]:
    """Modules that carry both LoRA factors, and embedding copies; any other tensor is refused."""
    modules, copies = [], []
    for key in keys:
        if _is_embedding_copy(key):
            copies.append(key)
            continue
        if not key.startswith(PREFIX) or not key.endswith(FACTORS):
            raise DataError(f"{path / ADAPTER_WEIGHTS}: tensor {key} is not a lora_A/lora_B weight; "
                            "the merge covers linear LoRA layers only")
        module = key.removeprefix(PREFIX).rsplit(".", 2)[0]
        if key.endswith(FACTORS[0]):
            modules.append(module)
    missing = [module for module in modules if f"{PREFIX}{module}{FACTORS[1]}" not in keys]
    if missing or not modules:
        raise DataError(f"{path / ADAPTER_WEIGHTS}: no complete lora_A/lora_B pair"
                        + (f" for {missing[0]}" if missing else ""))
    return modules, copies


def _is_embedding_copy(key: str) -> bool:
    """A whole embedding layer peft saved with the factors: `…lm_head.base_layer.weight` and the like."""
    name = key.removeprefix(PREFIX).replace(".base_layer.", ".")
    return key.startswith(PREFIX) and "lora_" not in key and _layer(name) in EMBEDDING_LAYERS


def _layer(name: str) -> str:
    """The layer a tensor belongs to: `c_proj` for `transformer.h.0.attn.c_proj.weight`."""
    return name.rsplit(".", 2)[-2] if "." in name else name
