"""The merged delta re-factored into a PEFT LoRA adapter of a chosen rank, by truncated SVD.

Eckart–Young: the rank-r truncation of the SVD is the best rank-r approximation in Frobenius norm, so the
reported relative error ‖ΔW − B·A‖/‖ΔW‖ is the least any rank-r adapter can have. Factors are written in
the layout peft loads: for a Conv1D weight, stored (in, out), peft's ΔW is (B·A)ᵀ, so the factored matrix
is the transposed delta.
"""

import json
import math
from pathlib import Path

import torch
from safetensors.torch import save_file

PREFIX = "base_model.model."
# peft's LoRA for an embedding has other tensors and math; lm_head is a Linear and is exported
EMBEDDINGS = ("embed_tokens.weight", "wte.weight", "wpe.weight")


class Exporter:
    """Collects rank-r factors module by module while a merge streams, then writes one adapter."""

    def __init__(self, rank: int, transposed: set[str] | frozenset[str] = frozenset()):
        self.rank = rank
        self.transposed = transposed  # base weights stored (in, out): Conv1D (deltas.conv1d_weights)
        self.factors: dict[str, torch.Tensor] = {}
        self.errors: dict[str, float] = {}
        self.error_sq = self.norm_sq = 0.0

    def covers(self, name: str, merged: torch.Tensor) -> bool:
        """Linear and Conv1D weights: peft's LoRA for embeddings and norms has other tensors and math."""
        return merged.dim() == 2 and not name.endswith(EMBEDDINGS)

    def factor(self, name: str, merged: torch.Tensor) -> tuple:
        """Factor one module's merged ΔW (out × in) as B (out × r) · A (r × in) (pure: thread-safe)."""
        matrix = merged.float().T if name in self.transposed else merged.float()
        u, s, vh = torch.linalg.svd(matrix, full_matrices=False)
        rank = min(self.rank, s.numel())
        root = s[:rank].sqrt()
        lora_b, lora_a = u[:, :rank] * root, root[:, None] * vh[:rank]
        return (name.removesuffix(".weight"), _pad(lora_a, self.rank, 0).contiguous(),
                _pad(lora_b, self.rank, 1).contiguous(), float(s[rank:].square().sum()),
                float(s.square().sum()))

    def record(self, factored: tuple) -> None:
        """Keep one module's factors and add its error to the totals."""
        module, lora_a, lora_b, error_sq, norm_sq = factored
        self.factors[f"{PREFIX}{module}.lora_A.weight"] = lora_a
        self.factors[f"{PREFIX}{module}.lora_B.weight"] = lora_b
        self.errors[module] = math.sqrt(error_sq / norm_sq) if norm_sq else 0.0
        self.error_sq += error_sq
        self.norm_sq += norm_sq

    def relative_error(self) -> float:
        """‖ΔW − B·A‖_F / ‖ΔW‖_F over all modules together."""
        return math.sqrt(self.error_sq / self.norm_sq) if self.norm_sq else 0.0

    def write(self, folder: Path, base_model: str) -> None:
        """Write adapter_model.safetensors and an adapter_config.json with scaling 1 (α = r)."""
        folder.mkdir(parents=True, exist_ok=True)
        save_file(self.factors, str(folder / "adapter_model.safetensors"), metadata={"format": "pt"})
        modules = sorted({key.removeprefix(PREFIX).rsplit(".", 2)[0] for key in self.factors})
        # peft decides the transposition per layer type on load; the flag only spares it a warning
        conv1d = bool(modules) and all(f"{module}.weight" in self.transposed for module in modules)
        config = {"peft_type": "LORA", "task_type": "CAUSAL_LM", "r": self.rank, "lora_alpha": self.rank,
                  "target_modules": modules, "lora_dropout": 0.0, "bias": "none", "use_rslora": False,
                  "base_model_name_or_path": base_model, "fan_in_fan_out": conv1d, "inference_mode": True}
        (folder / "adapter_config.json").write_text(json.dumps(config, indent=2))
        (folder / "reconstruction.json").write_text(json.dumps(
            {"rank": self.rank, "relative_error": self.relative_error(), "modules": self.errors}, indent=2))


def _pad(factor: torch.Tensor, rank: int, dim: int) -> torch.Tensor:
    """Zero-pad a factor to the full rank when a module is smaller than the rank asked for."""
    missing = rank - factor.shape[dim]
    if missing <= 0:
        return factor
    shape = list(factor.shape)
    shape[dim] = missing
    return torch.cat([factor, factor.new_zeros(shape)], dim=dim)
