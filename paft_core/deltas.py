"""Weight deltas ΔW per base tensor: from a PEFT LoRA adapter, (α/r)·B·A, or fine-tuned minus base.

Each delta is computed on demand for one tensor at a time in float32, so a merge never holds more than
one module's deltas. LoRA variants whose ΔW is not (α/r)·B·A on the unchanged base (DoRA, LoRA bias,
PiSSA-style inits that rewrite the base, …) are refused rather than merged wrong.
"""

import json
import re
from functools import cached_property
from pathlib import Path
from typing import Protocol

import torch

from paft_core.checkpoint import Reader
from paft_core.errors import DataError

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
PREFIX = "base_model.model."
FACTORS = (".lora_A.weight", ".lora_B.weight")
# LoraConfig fields whose non-default value changes what ΔW means; the merge covers none of them.
UNSUPPORTED = ("use_dora", "lora_bias", "use_qalora", "use_bdlora", "modules_to_save", "layer_replication",
               "target_parameters", "trainable_token_indices", "alora_invocation_tokens", "megatron_config",
               "kasa_config", "arrow_config", "velora_config", "monteclora_config")
BASE_REWRITING_INITS = ("pissa", "olora", "corda", "loftq", "lora_ga")  # these change W itself


class Delta(Protocol):
    """What a merge needs from a delta, whatever it was trained as."""

    label: str
    path: Path

    def targets(self) -> dict[str, tuple[int, ...]]:
        """Base tensor names this delta changes, with the shape it gives them."""

    def delta(self, name: str, base: torch.Tensor) -> torch.Tensor:
        """ΔW for one base tensor, in float32."""


class LoraDelta:
    """ΔW = s·B·A per adapted module, s = α/r (or α/√r with rsLoRA), read from the adapter's safetensors."""

    def __init__(self, path: Path, label: str):
        self.path, self.label = Path(path), label
        self.config = json.loads((self.path / ADAPTER_CONFIG).read_text())
        _refuse_unsupported(self.config, self.path)
        self.reader = Reader(self.path / ADAPTER_WEIGHTS)
        self.modules = _lora_modules(self.reader.names(), self.path)

    def targets(self) -> dict[str, tuple[int, ...]]:
        """Base weight names with ΔW's shape (out, in) taken from the factors' headers."""
        shapes = {}
        for module in self.modules:
            rank_in = self.reader.entries[f"{PREFIX}{module}.lora_A.weight"].shape
            out_rank = self.reader.entries[f"{PREFIX}{module}.lora_B.weight"].shape
            shape = (out_rank[0], rank_in[1])
            shapes[f"{module}.weight"] = shape[::-1] if self.config.get("fan_in_fan_out") else shape
        return shapes

    @cached_property
    def factors(self) -> dict[str, torch.Tensor]:
        """Every lora_A/lora_B, loaded once: adapters are small (rank × (in + out) per module)."""
        return {name: self.reader.get(name) for name in self.reader.names()}

    def delta(self, name: str, base: torch.Tensor | None = None) -> torch.Tensor:
        """s·B·A for the module owning base tensor `name`."""
        module = name.removesuffix(".weight")
        lora_a = self.factors[f"{PREFIX}{module}.lora_A.weight"].float()
        lora_b = self.factors[f"{PREFIX}{module}.lora_B.weight"].float()
        product = (lora_b @ lora_a) * self.scale(module, lora_a.shape[0])
        return product.T if self.config.get("fan_in_fan_out") else product

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

    def delta(self, name: str, base: torch.Tensor) -> torch.Tensor:
        """Fine-tuned minus base for one tensor, in float32."""
        return self.reader.get(name).float() - base.float()


def open_delta(path: Path, label: str, base: Reader) -> Delta:
    """A LoRA adapter folder or a full fine-tuned checkpoint, recognised by its files."""
    path = Path(path)
    if (path / ADAPTER_CONFIG).is_file():
        if not (path / ADAPTER_WEIGHTS).is_file():
            raise DataError(f"{path}: adapter has no {ADAPTER_WEIGHTS} (only safetensors are read)")
        return LoraDelta(path, label)
    if path.is_dir() and (any(path.glob("*.safetensors"))):
        return FullDelta(path, label, base)
    raise DataError(f"{path}: delta '{label}' is neither a PEFT adapter ({ADAPTER_CONFIG}) nor a "
                    "safetensors checkpoint folder")


def check_against_base(deltas: list[Delta], base: Reader) -> None:
    """Refuse deltas whose tensors the base lacks or shapes it does not have, and LoRAs on other modules."""
    for delta in deltas:
        for name, shape in delta.targets().items():
            entry = base.entries.get(name)
            if entry is None:
                raise DataError(f"{delta.path}: delta '{delta.label}' changes {name}, which the base "
                                f"model {base.path} does not have; was it trained on another base?")
            if entry.shape != shape:
                raise DataError(f"{delta.path}: delta '{delta.label}' gives {name} shape {shape}, "
                                f"the base {entry.shape}; was it trained on another base?")
    _check_same_targets([delta for delta in deltas if isinstance(delta, LoraDelta)])


def _check_same_targets(adapters: list[LoraDelta]) -> None:
    """LoRA adapters must adapt the same modules, or one delta would silently count as zero there."""
    if len(adapters) < 2:
        return
    first = set(adapters[0].targets())
    for other in adapters[1:]:
        theirs = set(other.targets())
        if theirs != first:
            only = sorted(first - theirs) or sorted(theirs - first)
            raise DataError(f"adapters '{adapters[0].label}' and '{other.label}' target different modules "
                            f"(e.g. {only[0]}); train both with the same lora.target_modules")


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


def _lora_modules(keys: list[str], path: Path) -> list[str]:
    """Module names that carry both LoRA factors; any other tensor means a variant we do not merge."""
    modules = []
    for key in keys:
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
    return modules
