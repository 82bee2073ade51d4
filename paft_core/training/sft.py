"""The SFT branch: TRL's SFTTrainer with a LoRA adapter and PAFT's L1 penalty.

Loss mode adds λ‖·‖₁ to the loss of every micro-batch, scaled so that one optimizer step sees the
penalty once, whatever the gradient accumulation; proximal mode soft-thresholds the LoRA weights
after each optimizer step instead (see `training/l1.py`).
"""

import argparse
from pathlib import Path

from trl import SFTConfig, SFTTrainer

from paft_core.config import L1Spec, PipelineRun, SFTSpec
from paft_core.results import StageResult
from paft_core.training import common
from paft_core.training.l1 import DEAD_SHARE, ProximalL1, SparsityLog, l1_norm, lora_origins, share_within


class L1SFTTrainer(SFTTrainer):
    """SFTTrainer whose loss carries λ‖·‖₁ of the LoRA weights or of ΔW (PAFT, arXiv 2406.17923)."""

    def __init__(self, *args, l1: L1Spec | None = None, callbacks=None, **kwargs) -> None:
        sparsity = SparsityLog()  # ahead of the given callbacks: MLflowCallback records what it adds
        super().__init__(*args, callbacks=[sparsity, *(callbacks or ())], **kwargs)
        sparsity.trainer = self
        self.l1 = l1 or L1Spec()
        self.origins = lora_origins(self.model, Path(self.args.output_dir)) if self.l1.strength else {}
        if self.l1.mode == "proximal" and self.l1.strength > 0:
            self.add_callback(ProximalL1(self.l1.strength, self.origins))

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        """SFT loss, plus the L1 term when it is a loss term; both logged on their own."""
        out = super().compute_loss(model, inputs, return_outputs=return_outputs,
                                   num_items_in_batch=num_items_in_batch)
        if not model.training:
            return out
        loss, outputs = out if return_outputs else (out, None)
        scaled = self._loss_scaled_for_accumulation(num_items_in_batch)
        # `_metrics` is TRL-internal (TRL 1.16.0): the per-micro-batch lists that SFTTrainer.log averages into
        # its next log row; no public hook adds a figure to that row's average.
        # `current_gradient_accumulation_steps` is Trainer-internal (transformers 5.23.0): this step's
        # micro-batches, fewer than args.gradient_accumulation_steps on an epoch's last step.
        # A loss Trainer will not divide is a share of the step's loss: undo that for the logged value.
        # Over several processes, each rank's share: their mean is the step's loss, as Trainer logs it.
        mean = self.accelerator.gather(loss.detach()).mean().item()
        accumulated = self.current_gradient_accumulation_steps if scaled else 1
        self._metrics["train"]["task_loss"].append(mean * accumulated)
        if not (self.l1.strength > 0 and self.l1.mode == "loss"):
            return out
        norm = l1_norm(model, self.l1.target, self.origins)
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
        share = share_within(self.model, 2 * self.args.learning_rate) if self.l1.strength else 0.0
        if share >= DEAD_SHARE and self.is_world_process_zero():
            print(f"paft: sft.l1.strength {self.l1.strength:g} left {share:.1%} of the LoRA B entries within "
                  "two learning rates of zero: ΔW is all zero or noise, the SFT delta will teach nothing; "
                  "lower sft.l1.strength", flush=True)
        return output

    def _loss_scaled_for_accumulation(self, num_items_in_batch) -> bool:
        # A copy of the rule Trainer.training_step uses to skip its own division (transformers 5.23.0):
        # no public method answers it. `loss_is_scaled_for_ga` is documented on Trainer;
        # `model_accepts_loss_kwargs` and `compute_loss_func` (the kept constructor argument) are internal.
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



def main(args: argparse.Namespace) -> StageResult:
    """The SFT stage: `python -m paft_core.training.sft SPEC [--out DIR]`."""
    return common.stage_main("sft", train, args)


arguments = common.arguments  # the stage's command line, as every branch's

if __name__ == "__main__":
    common.run_as_command("sft", main)
