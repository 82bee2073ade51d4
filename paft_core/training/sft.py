"""The SFT branch: TRL's SFTTrainer with a LoRA adapter and PAFT's L1 penalty.

Loss mode adds λ‖·‖₁ to the loss of every micro-batch, scaled so that one optimizer step sees the
penalty once, whatever the gradient accumulation; proximal mode soft-thresholds the LoRA weights
after each optimizer step instead (see `training/sparse.py`).
"""

from pathlib import Path

from trl import SFTConfig, SFTTrainer

from paft_core.config import L1Spec, PipelineRun, SFTSpec
from paft_core.training import common, sparse


class L1SFTTrainer(sparse.SparsityLogging, SFTTrainer):
    """SFTTrainer whose loss carries λ‖·‖₁ of the LoRA weights or of ΔW (PAFT, arXiv 2406.17923)."""

    def __init__(self, *args, l1: L1Spec | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.l1 = l1 or L1Spec()
        self.origins = sparse.lora_origins(self.model, Path(self.args.output_dir)) if self.l1.strength else {}
        if self.l1.mode == "proximal" and self.l1.strength > 0:
            self.add_callback(sparse.ProximalL1(self.l1.strength, self.origins))

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        """SFT loss, plus the L1 term when it is a loss term; both logged on their own."""
        out = super().compute_loss(model, inputs, return_outputs=return_outputs,
                                   num_items_in_batch=num_items_in_batch)
        if not model.training:
            return out
        loss, outputs = out if return_outputs else (out, None)
        scaled = self._loss_scaled_for_accumulation(num_items_in_batch)
        # A loss Trainer will not divide is a share of the step's loss: undo that for the logged value.
        self._metrics["train"]["task_loss"].append(
            loss.item() * (self.current_gradient_accumulation_steps if scaled else 1))
        if not (self.l1.strength > 0 and self.l1.mode == "loss"):
            return out
        norm = sparse.l1_norm(model, self.l1.target, self.origins)
        penalty = self.l1.strength * norm
        self._metrics["train"]["l1/norm"].append(norm.item())
        self._metrics["train"]["l1/penalty"].append(penalty.item())
        if scaled:
            # Trainer will not divide this loss by the accumulation steps: do it for the penalty,
            # so each optimizer step carries λ‖·‖₁ exactly once.
            penalty = penalty / self.current_gradient_accumulation_steps
        loss = loss + penalty
        return (loss, outputs) if return_outputs else loss

    def train(self, *args, **kwargs):
        """Train; say in one line when the L1 penalty left an adapter that changes (almost) nothing."""
        output = super().train(*args, **kwargs)
        share = sparse.share_within(self.model, 2 * self.args.learning_rate) if self.l1.strength else 0.0
        if share >= sparse.DEAD_SHARE:
            print(f"paft: sft.l1.strength {self.l1.strength:g} left {share:.1%} of the LoRA B entries within "
                  "two learning rates of zero: ΔW is all zero or noise, the SFT delta will teach nothing; "
                  "lower sft.l1.strength", flush=True)
        return output

    def _loss_scaled_for_accumulation(self, num_items_in_batch) -> bool:
        # The same rule as transformers' Trainer.training_step (5.23) uses to skip its own division.
        if self.loss_is_scaled_for_ga is not None:
            return self.loss_is_scaled_for_ga
        accepts = self.model_accepts_loss_kwargs and num_items_in_batch is not None
        return accepts or self.compute_loss_func is not None


def build_trainer(spec: SFTSpec, model, tokenizer, dataset, output_dir: Path, callbacks) -> L1SFTTrainer:
    """An L1SFTTrainer for one SFT spec, with a fresh LoRA adapter on `model`."""
    args = SFTConfig(**common.trainer_args(spec.train, output_dir), packing=False)
    return L1SFTTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer,
                        peft_config=common.lora_config(spec.lora), callbacks=callbacks, l1=spec.l1)


def train(spec: PipelineRun, out: Path | None = None, callbacks=()) -> Path:
    """Run the SFT branch of `spec`; return its stage folder (adapter in `adapter/`)."""
    return common.run_branch(spec, "sft", build_trainer, out, callbacks)
