"""The preference branch: DPO (any TRL loss type) or ORPO, as a LoRA adapter on the shared base.

The DPO reference model is the base with the adapter disabled (TRL does this when it gets a
`peft_config` and no `ref_model`), so no second copy of the model is ever loaded. ORPO needs no
reference model. TRL moved ORPO to `trl.experimental.orpo`; this is the only file importing it.
Every TRL 1.16 DPO loss trains against that reference; exo_pair needs `label_smoothing` > 0, which
the spec checks before any training.
"""

import argparse
import os
from pathlib import Path

from trl import DPOConfig, DPOTrainer

from paft_core.config import PipelineRun, PreferenceSpec
from paft_core.results import StageResult
from paft_core.training import common
from paft_core.training.l1 import SparsityLog

os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
from trl.experimental.orpo import ORPOConfig, ORPOTrainer  # noqa: E402  (after the silence switch)


class PAFTDPOTrainer(DPOTrainer):
    """DPO (Rafailov et al., 2023, arXiv 2305.18290) that also logs the adapter's sparsity."""

    def __init__(self, *args, callbacks=None, **kwargs) -> None:
        sparsity = SparsityLog()  # ahead of the given callbacks: MLflowCallback records what it adds
        super().__init__(*args, callbacks=[sparsity, *(callbacks or ())], **kwargs)
        sparsity.trainer = self


class PAFTORPOTrainer(ORPOTrainer):
    """ORPO (Hong et al., 2024, arXiv 2403.07691) that also logs the adapter's sparsity."""

    def __init__(self, *args, callbacks=None, **kwargs) -> None:
        sparsity = SparsityLog()  # ahead of the given callbacks: MLflowCallback records what it adds
        super().__init__(*args, callbacks=[sparsity, *(callbacks or ())], **kwargs)
        sparsity.trainer = self


def build_trainer(spec: PreferenceSpec, model, tokenizer, dataset, output_dir: Path, callbacks):
    """A DPO or ORPO trainer for one preference spec, with a fresh LoRA adapter on `model`."""
    shared = dict(model=model, train_dataset=dataset, processing_class=tokenizer,
                  peft_config=common.lora_config(spec.lora), callbacks=callbacks)
    if spec.method == "orpo":
        args = ORPOConfig(**common.trainer_args(spec.train, output_dir), beta=spec.beta)
        return PAFTORPOTrainer(args=args, **shared)
    args = DPOConfig(**common.trainer_args(spec.train, output_dir), beta=spec.beta,
                     loss_type=list(spec.loss_type), loss_weights=spec.loss_weights,
                     label_smoothing=spec.label_smoothing)
    return PAFTDPOTrainer(ref_model=None, args=args, **shared)


def train(spec: PipelineRun, out: Path | None = None, callbacks=()) -> Path:
    """Run the preference branch of `spec`; return its stage folder (adapter in `adapter/`)."""
    return common.run_branch(spec, "preference", build_trainer, out, callbacks)



def main(args: argparse.Namespace) -> StageResult:
    """The preference stage: `python -m paft_core.training.preference SPEC [--out DIR]`."""
    return common.stage_main("preference", train, args)


arguments = common.arguments  # the stage's command line, as every branch's

if __name__ == "__main__":
    common.run_as_command("preference", main)
