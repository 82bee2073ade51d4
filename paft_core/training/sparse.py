"""PAFT's L1 sparsity on LoRA adapters: the penalty, the proximal step, and the sparsity log.

The L1 target is either the LoRA weights A and B, or the effective weight delta ΔW = s·B·A per module
(s = α/r, or α/√r with rsLoRA). As a loss term it is the paper's λ‖·‖₁ (Pentyala et al., 2024,
arXiv 2406.17923); as a proximal step it soft-thresholds the LoRA weights after every optimizer step
(proximal gradient / ISTA, Beck & Teboulle, 2009), which leaves exact zeros.
"""

import torch
from peft.tuners.lora import LoraLayer
from transformers import TrainerCallback

from paft_core import sparsity


def lora_weights(model: torch.nn.Module) -> list[torch.Tensor]:
    """The trainable LoRA tensors (A and B of every adapted module)."""
    return [p for name, p in model.named_parameters() if "lora_" in name and p.requires_grad]


def delta_weights(model: torch.nn.Module) -> list[torch.Tensor]:
    """ΔW = s·B·A of every LoRA module for its active adapter, differentiable."""
    deltas = []
    for module in model.modules():
        if isinstance(module, LoraLayer):
            for adapter in module.active_adapters:
                if adapter in module.lora_A:
                    deltas.append(module.get_delta_weight(adapter))
    return deltas


def l1_norm(model: torch.nn.Module, target: str) -> torch.Tensor:
    """‖·‖₁ of the LoRA weights (target 'lora') or of every ΔW (target 'delta'), differentiable."""
    tensors = lora_weights(model) if target == "lora" else delta_weights(model)
    return torch.stack([t.abs().sum() for t in tensors]).sum()


def soft_threshold_(tensors: list[torch.Tensor], amount: float) -> None:
    """In place: x ← sign(x)·max(|x| − amount, 0), the proximal operator of amount·‖x‖₁."""
    with torch.no_grad():
        for tensor in tensors:
            tensor.copy_(tensor.sign() * (tensor.abs() - amount).clamp_min(0))


class ProximalL1(TrainerCallback):
    """After each optimizer step, soft-threshold LoRA weights by lr·λ (each group's own lr)."""

    def __init__(self, strength: float) -> None:
        self.strength = strength

    def on_optimizer_step(self, args, state, control, model=None, optimizer=None, **kwargs):
        """Shrink every LoRA weight toward zero by this step's lr·λ."""
        lora = {id(p) for p in lora_weights(model)}
        for group in optimizer.param_groups:
            params = [p for p in group["params"] if id(p) in lora]
            soft_threshold_(params, group["lr"] * self.strength)


def sparsity_metrics(model: torch.nn.Module, with_delta: bool) -> dict[str, float]:
    """`sparsity/lora/*` always; `sparsity/delta/*` (one matmul per module) when asked."""
    metrics = {f"sparsity/lora/{k}": v for k, v in sparsity.stats(lora_weights(model)).items()}
    if with_delta:
        with torch.no_grad():
            deltas = delta_weights(model)
        metrics.update({f"sparsity/delta/{k}": v for k, v in sparsity.stats(deltas).items()})
    return metrics


class SparsityLogging:
    """Trainer mixin: LoRA sparsity at every log, ΔW sparsity at every checkpoint and at the end."""

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        """Add LoRA-weight sparsity to the trainer's own metrics."""
        if self.model.training and "loss" in logs:
            logs.update(sparsity_metrics(self.model, with_delta=False))
        super().log(logs, start_time)

    def _save_checkpoint(self, model, trial) -> None:
        # ΔW stats cost one matmul per module: log them where a checkpoint is written anyway.
        self.log(sparsity_metrics(self.model, with_delta=True))
        super()._save_checkpoint(model, trial)

    def train(self, *args, **kwargs):
        """Train, then log the final sparsity of the weights and of ΔW."""
        output = super().train(*args, **kwargs)
        self.log(sparsity_metrics(self.model, with_delta=True))
        return output
