"""What both branches share: the stage lifecycle around a TRL trainer, LoRA and trainer settings.

`run_branch` validates data, claims the output folder, resolves the base model, opens the stage's
MLflow run, trains (resuming from the last checkpoint of an interrupted folder) and publishes the
adapter atomically. Everything that can be wrong with the input fails before the trainer is built.
"""

import argparse
import dataclasses
import random
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from pathlib import Path

import torch
from peft import LoraConfig
from transformers import AutoModelForCausalLM, AutoTokenizer, Trainer, TrainerCallback
from transformers.integrations import MLflowCallback

from paft_core import command, data, models, preflight, stage
from paft_core.config import LoraSpec, ModelSpec, PipelineRun, TrainSpec, load_config
from paft_core.merging import deltas
from paft_core.ops import tracking
from paft_core.results import StageResult
from paft_core.stage import Branch
from paft_core.training import launch

BuildTrainer = Callable[..., Trainer]
# Trainer arguments that TrainingArguments rewrites after init (or masks): never "changed" for a user
NORMALISED = {"accelerator_config", "debug", "include_for_metrics", "hub_token", "report_to", "output_dir",
              "logging_dir", "activation_checkpointing"}
# train.precision → the dtype the base model is loaded in (fp16 trains with AMP on fp32 weights)
PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float32}


def run_branch(spec: PipelineRun, branch: Branch, build: BuildTrainer, out: Path | None = None,
               callbacks: Sequence[TrainerCallback] = ()) -> Path:
    """Train one branch into `out` (default: .paft/stages/<branch>-<spec hash>); return the folder.

    Launched over several processes, every rank trains; rank 0 alone claims the folder, opens the MLflow
    run, publishes the adapter and marks the stage complete (the Trainer writes checkpoints the same way).
    """
    branch_spec = getattr(spec, branch)
    reads = stage.branch_reads(spec, branch)
    out = folder(spec, branch, out)
    dataset = data.load(branch_spec.data, branch)
    base = models.resolve(spec.model)
    preflight.fits(dataset, branch, base.path, spec)  # before the folder is claimed
    if launch.is_main() and stage.claim(out, branch, reads) == "complete":
        print(f"paft: {branch} already complete in {out}; reusing it", flush=True)
        return out
    if launch.is_main():
        stage.check_inputs(out, {"model": base.fingerprint, "data": dataset.fingerprint})
    _seed_and_threads(branch_spec.train)
    checkpoint = last_whole_checkpoint(out / "checkpoints")
    tags = {"paft.base_model": base.source, "paft.base_fingerprint": base.fingerprint,
            "paft.data_fingerprint": dataset.fingerprint, "paft.output": str(out),
            "paft.resumed_from": Path(checkpoint).name if checkpoint else "none",
            "paft.processes": str(branch_spec.train.processes)}
    tracked = tracking.stage_run(spec.tracking, branch, reads, tags) if launch.is_main() else nullcontext()
    with tracked as run_id:
        model, tokenizer = load_base(base.path, spec.model, branch_spec.train)
        trainer = build(branch_spec, model, tokenizer, dataset.dataset, out / "checkpoints",
                        [TrackedSettings(), *callbacks])
        trainer.train(resume_from_checkpoint=checkpoint)
        if not launch.is_main():  # take part in gathering the adapter (FSDP); rank 0 writes it
            trainer.save_model(out / ".adapter.tmp")
            return out
        adapter = stage.publish(out, "adapter", lambda folder: _save_adapter(trainer, folder))
        trainer.state.save_to_json(str(out / "trainer_state.json"))
        tracking.log_folder(adapter, "adapter")
        stage.finish(out, {"run_id": run_id, "adapter": "adapter", "global_step": trainer.state.global_step,
                           "resumed_from": tags["paft.resumed_from"],
                           "processes": branch_spec.train.processes})
    return out


def folder(spec: PipelineRun, branch: Branch, out: Path | None) -> Path:
    """A branch's stage folder: `out` when given, else .paft/stages/<branch>-<hash of what it reads>."""
    return Path(out) if out else stage.default_folder(branch, stage.branch_reads(spec, branch))


class TrackedSettings(MLflowCallback):
    """transformers' MLflow callback (metrics each log step) logging only the trainer arguments that differ
    from their defaults, as `trainer.<name>`, not all 200 of them with the model's config.

    Its `setup` reads `args.run_name` and `args.to_dict()` only (transformers 5.23.0): it is handed those.
    """

    def setup(self, args, state, model):
        super().setup(_Changed(args), state, None)


class _Changed:
    """What MLflowCallback.setup reads of TrainingArguments, holding only the non-default values."""

    def __init__(self, args):
        # Field defaults, not a default config: building another TrainingArguments resets accelerate's state.
        defaults = {field.name: _default(field) for field in dataclasses.fields(args)}
        self.run_name = args.run_name
        values = {key: value for key, value in args.to_dict().items() if key not in NORMALISED}
        self._changed = {f"trainer.{key}": value for key, value in values.items()
                         if (value or defaults.get(key)) and value != defaults.get(key)}  # None ≡ [] ≡ 0

    def to_dict(self) -> dict:
        return self._changed


def _default(field: dataclasses.Field):
    return field.default_factory() if field.default_factory is not dataclasses.MISSING else field.default


def _save_adapter(trainer: Trainer, folder: Path) -> None:
    """The trained adapter, its config written the same way in every process."""
    trainer.save_model(folder)
    deltas.canonicalize_adapter_config(folder)


def last_whole_checkpoint(folder: Path) -> str | None:
    """The newest checkpoint the Trainer finished saving (it writes trainer_state.json last), if any."""
    whole = [path for path in folder.glob("checkpoint-*") if (path / "trainer_state.json").is_file()]
    # A kill mid-save leaves a newer, partial folder that transformers' get_last_checkpoint would pick.
    return str(max(whole, key=lambda path: int(path.name.split("-")[-1]))) if whole else None


def load_base(folder: Path, spec: ModelSpec, train: TrainSpec) -> tuple:
    """Load the resolved base model and its tokenizer (safetensors unless pickle is allowed)."""
    model = AutoModelForCausalLM.from_pretrained(
        folder, dtype=PRECISIONS[train.precision], trust_remote_code=spec.trust_remote_code,
        use_safetensors=None if spec.allow_pickle else True)
    tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=spec.trust_remote_code)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer


def lora_config(spec: LoraSpec) -> LoraConfig:
    """The peft LoraConfig for a LoraSpec (no bias, causal LM)."""
    return LoraConfig(r=spec.r, lora_alpha=spec.alpha, lora_dropout=spec.dropout,
                      target_modules=spec.target_modules, use_rslora=spec.use_rslora,
                      bias="none", task_type="CAUSAL_LM")


def trainer_args(train: TrainSpec, output_dir: Path) -> dict:
    """TrainingArguments fields common to SFTConfig, DPOConfig and ORPOConfig."""
    on_gpu = torch.cuda.is_available()
    return dict(
        output_dir=str(output_dir), learning_rate=train.learning_rate, num_train_epochs=train.epochs,
        max_steps=train.max_steps, per_device_train_batch_size=train.batch_size,
        gradient_accumulation_steps=train.grad_accum, warmup_steps=train.warmup_steps,
        max_grad_norm=train.max_grad_norm,
        lr_scheduler_type=train.lr_scheduler, seed=train.seed, data_seed=train.seed,
        logging_steps=train.logging_steps, save_strategy="steps", save_steps=train.save_steps,
        save_total_limit=2, report_to="none", use_cpu=not on_gpu,  # MLflow: TrackedSettings, added below
        bf16=train.precision == "bf16", fp16=train.precision == "fp16",
        gradient_checkpointing=train.gradient_checkpointing, max_length=train.max_length,
        ddp_find_unused_parameters=False,  # several processes: every LoRA weight takes part in each step
    )


def _seed_and_threads(train: TrainSpec) -> None:
    random.seed(train.seed)
    torch.manual_seed(train.seed)
    if train.threads:
        torch.set_num_threads(train.threads)


def arguments(parser: argparse.ArgumentParser) -> None:
    """A branch stage's command line: the spec and an optional output folder."""
    command.spec_argument(parser)
    parser.add_argument("--out", type=Path, help="output folder (default: .paft/stages/<branch>-<hash>)")


def stage_main(branch: Branch, train: Callable[..., Path], args: argparse.Namespace) -> StageResult | None:
    """Train one branch of the spec at `args.config` (`train`), launched over its processes when it has
    several; say where its adapter is (rank 0)."""
    spec = load_config(args.config)
    settings = getattr(spec, branch).train
    launch.check(settings, f"{branch}.train")
    command.check_tracking(spec)
    started = time.time()
    out = folder(spec, branch, args.out)
    if launch.wanted(settings) and not (out / stage.DONE).is_file():
        launch.run(f"paft_core.training.{branch}", settings, launch.forwarded(args))  # rank 0 says where
    else:
        out = train(spec, args.out)
        if not launch.is_main():
            return None
        print(f"paft: {branch} adapter in {out / 'adapter'}", flush=True)
    return command.finished(branch, out, started)


def run_as_command(branch: Branch, main: command.Handler) -> None:
    """`python -m paft_core.training.<branch> SPEC`: run the branch's stage entry and exit."""
    command.stage_main(f"paft_core.training.{branch}", f"train the {branch} branch of a pipeline spec",
                       arguments, main)
