"""PAFT's L1 on LoRA adapters: the penalty, the proximal step, and the sparsity log callback.

The L1 target is either what the LoRA weights learned, ‖B‖₁ + ‖A − A₀‖₁ (B starts at zero, A at a random
init A₀ that is no part of ΔW and must not be paid for), or the effective weight delta ΔW = s·B·A per
module (s = α/r, or α/√r with rsLoRA). As a loss term it is the paper's λ‖·‖₁ (Pentyala et al., 2024,
arXiv 2406.17923); as a proximal step it soft-thresholds B toward 0 and A toward A₀ after every optimizer
step (proximal gradient / ISTA, Beck & Teboulle, 2009), which leaves exact zeros in B and in A − A₀.
"""

from pathlib import Path

import torch
from peft.tuners.lora import LoraLayer
from safetensors.torch import load_file, save_file
from transformers import Trainer, TrainerCallback

from paft_core import density, files
from paft_core.training import launch

INIT_FILE = "lora_init.safetensors"  # A₀ beside the trainer's checkpoints: a resumed run pays the same L1
# An L1 loss term under Adam leaves a weight it dominates oscillating within about one learning rate of
# zero, never at zero: B with this share of entries inside two learning rates is as good as dead.
DEAD_SHARE = 0.99


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


def lora_origins(model: torch.nn.Module, folder: Path) -> dict[int, torch.Tensor]:
    """Each trainable LoRA weight's starting point, by parameter id: A₀ for every A, zero for every B.

    A₀ is saved to `folder` on the first build and read back on a resumed one, so the penalty's anchor
    never depends on the random state of the process that resumes.
    """
    named = {name: p for name, p in model.named_parameters() if "lora_" in name and p.requires_grad}
    path = Path(folder) / INIT_FILE
    if path.is_file():
        saved = load_file(path)
    else:  # every rank of a launched branch starts from the same seed, hence the same A₀; rank 0 keeps it
        saved = {name: p.detach().clone().contiguous() for name, p in named.items() if "lora_A" in name}
        if launch.is_main():
            Path(folder).mkdir(parents=True, exist_ok=True)
            files.publish_file(path, lambda tmp: save_file(saved, tmp))
    return {id(p): saved[name].to(p.device, p.dtype) if name in saved else torch.zeros_like(p)
            for name, p in named.items()}


def l1_norm(model: torch.nn.Module, target: str, origins: dict[int, torch.Tensor]) -> torch.Tensor:
    """‖·‖₁ of what the LoRA weights learned (target 'lora') or of every ΔW ('delta'), differentiable."""
    if target == "delta":
        return torch.stack([t.abs().sum() for t in delta_weights(model)]).sum()
    return torch.stack([(p - origins[id(p)]).abs().sum() for p in lora_weights(model)]).sum()


def soft_threshold_(tensors: list[torch.Tensor], amount: float,
                    origins: dict[int, torch.Tensor] | None = None) -> None:
    """In place: x ← x₀ + soft(x − x₀, amount), the prox of amount·‖x − x₀‖₁ (x₀ = 0 when absent)."""
    with torch.no_grad():
        for tensor in tensors:
            origin = origins.get(id(tensor)) if origins else None
            moved = tensor - origin if origin is not None else tensor
            shrunk = moved.sign() * (moved.abs() - amount).clamp_min(0)
            tensor.copy_(shrunk + origin if origin is not None else shrunk)


class ProximalL1(TrainerCallback):
    """After each optimizer step, soft-threshold B toward 0 and A toward A₀ by lr·λ (each group's own lr)."""

    def __init__(self, strength: float, origins: dict[int, torch.Tensor]) -> None:
        self.strength = strength
        self.origins = origins

    def on_optimizer_step(self, args, state, control, model=None, optimizer=None, **kwargs):
        """Shrink what every LoRA weight learned by this step's lr·λ."""
        lora = {id(p) for p in lora_weights(model)}
        for group in optimizer.param_groups:
            params = [p for p in group["params"] if id(p) in lora]
            soft_threshold_(params, group["lr"] * self.strength, self.origins)


def sparsity_metrics(model: torch.nn.Module, with_delta: bool) -> dict[str, float]:
    """`sparsity/lora/*` always; `sparsity/delta/*` (one matmul per module) when asked."""
    metrics = {f"sparsity/lora/{k}": v for k, v in density.stats(lora_weights(model)).items()}
    if with_delta:
        with torch.no_grad():
            deltas = delta_weights(model)
        metrics.update({f"sparsity/delta/{k}": v for k, v in density.stats(deltas).items()})
    return metrics


def share_within(model: torch.nn.Module, bound: float) -> float:
    """Share of the entries of every LoRA B (ΔW = s·B·A is zero where B is) with |x| ≤ bound."""
    with torch.no_grad():
        weights = [p for name, p in model.named_parameters() if "lora_B" in name and p.requires_grad]
        inside = sum(int((p.abs() <= bound).sum()) for p in weights)
        return inside / max(sum(p.numel() for p in weights), 1)


class SparsityLog(TrainerCallback):
    """LoRA-weight sparsity with every training-loss log; ΔW sparsity at every checkpoint and at the end.

    The trainer gets it in its constructor's `callbacks`, ahead of MLflowCallback (which records the logs
    it is handed, and may end its own run at on_train_end), then sets `trainer`: a callback has none.
    """

    def __init__(self) -> None:
        self.trainer: Trainer | None = None  # whose public `log` carries the ΔW figures

    def on_log(self, args, state, control, logs=None, model=None, **kwargs):
        """Add LoRA-weight sparsity to the log of the training loss, in the same row."""
        # Only the training-loss row: the ΔW rows on_save and on_train_end log re-enter here and pass through.
        if not (logs and "loss" in logs and model is not None and model.training):
            return
        # Added to `logs` itself, not logged anew: callbacks after this one (MLflow) get it in the same call,
        # and a nested trainer.log would log TRL's pending averages (SFT's task_loss, l1/*) a second time.
        metrics = sparsity_metrics(model, with_delta=False)
        logs.update(metrics)
        row = state.log_history[-1] if state.log_history else {}
        if row.get("loss") == logs["loss"]:  # Trainer.log appends this row just before on_log (5.23.0)
            row.update(metrics)

    def on_save(self, args, state, control, **kwargs):
        """ΔW sparsity (one matmul per module) where a checkpoint is written anyway."""
        self.trainer.log(sparsity_metrics(self.trainer.model, with_delta=True))

    def on_train_end(self, args, state, control, **kwargs):
        """The final sparsity of the LoRA weights and of ΔW, before MLflowCallback may end its run."""
        self.trainer.log(sparsity_metrics(self.trainer.model, with_delta=True))
