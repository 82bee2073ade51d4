"""Typed, frozen, strict specs for a PAFT run, and `load_config` to read them from YAML."""

from pathlib import Path
from typing import Literal

import yaml
from pydantic import Field, ValidationError, model_validator

from paft_core import files
from paft_core.errors import ConfigError
from paft_core.merge_config import MergeSpec
from paft_core.presets import DPO_LOSSES, SMOOTHED_LOSSES, keeps_loss_l1_delta
from paft_core.spec import Spec
from paft_core.sweep_config import SweepSpec

EMBEDDED_MODEL = "smollm2-135m-instruct"


class ModelSpec(Spec):
    """Where the base model comes from: the embedded default, a local folder, a .gguf file or a hub id."""

    source: str = EMBEDDED_MODEL
    revision: str | None = None  # hub revision (branch, tag or commit); pin it for reproducible runs
    trust_remote_code: bool = False  # custom modelling code runs arbitrary Python: opt in explicitly
    allow_pickle: bool = False  # .bin/.pt weights unpickle arbitrary objects: opt in explicitly


class DataSpec(Spec):
    """A dataset: `demo`, a local .jsonl/.json/.parquet file, or a hub id."""

    source: str = "demo"
    split: str = "train"
    limit: int | None = Field(None, gt=0)  # first N rows only; None keeps all


class LoraSpec(Spec):
    """LoRA adapter shape; both branches start from the same base with their own adapter."""

    r: int = Field(8, ge=1)
    alpha: float = Field(16.0, gt=0)
    dropout: float = Field(0.0, ge=0, lt=1)
    target_modules: list[str] | Literal["all-linear"] = "all-linear"
    use_rslora: bool = False  # scale alpha/sqrt(r) instead of alpha/r (Kalajdzievski, 2023)


class L1Spec(Spec):
    """PAFT's L1 penalty that makes the SFT delta sparse (Pentyala et al., 2024)."""

    strength: float = Field(0.0, ge=0)  # λ; 0 turns the penalty off
    target: Literal["lora", "delta"] = "lora"  # what A and B learned, ‖B‖₁ + ‖A − A₀‖₁, or ΔW = s·B·A
    mode: Literal["loss", "proximal"] = "loss"  # λ‖·‖₁ added to the loss, or soft-threshold per step

    @model_validator(mode="after")
    def _proximal_acts_on_weights(self) -> "L1Spec":
        if self.mode == "proximal" and self.target == "delta":
            raise ValueError("l1.mode 'proximal' needs l1.target 'lora': soft-thresholding acts on "
                             "the trained weights, not on the product B·A")
        return self


class TrainSpec(Spec):
    """Optimisation settings shared by both branches."""

    learning_rate: float = Field(2e-4, gt=0)
    epochs: float = Field(1.0, gt=0)
    max_steps: int = Field(-1, ge=-1, ne=0)  # -1: run `epochs` epochs
    batch_size: int = Field(2, ge=1)
    grad_accum: int = Field(1, ge=1)
    max_length: int = Field(512, ge=16)  # longer rows are truncated
    warmup_steps: int = Field(0, ge=0)
    max_grad_norm: float = Field(1.0, ge=0)  # gradient clipping; 0 turns it off
    lr_scheduler: Literal["linear", "cosine", "constant", "constant_with_warmup"] = "linear"
    seed: int = 42
    logging_steps: int = Field(5, ge=1)
    save_steps: int = Field(50, ge=1)  # checkpoint interval: what a resumed run can fall back to
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"  # fp32 on CPU; bf16 on recent GPUs
    gradient_checkpointing: bool = False  # trades ~30% speed for activation memory
    threads: int | None = Field(None, ge=1)  # torch CPU threads for this branch; None: torch decides
    # > 1: `accelerate launch` of the branch, one process per GPU (or core); global batch = batch_size ×
    # grad_accum × processes. strategy: configs/accelerate/<strategy>.yaml (deepspeed: if installed)
    processes: int = Field(1, ge=1)
    strategy: Literal["ddp", "fsdp", "deepspeed"] = "ddp"


class SFTSpec(Spec):
    """The SFT branch: LoRA on instruction data with an L1 penalty."""

    data: DataSpec = DataSpec(source="demo")
    lora: LoraSpec = LoraSpec()
    train: TrainSpec = TrainSpec()
    l1: L1Spec = L1Spec()


class PreferenceSpec(Spec):
    """The preference branch: DPO (any TRL loss type) or ORPO, LoRA from the same base."""

    method: Literal["dpo", "orpo"] = "dpo"
    loss_type: list[str] = Field(["sigmoid"], min_length=1)  # DPO only; several summed with `loss_weights`
    loss_weights: list[float] | None = None
    beta: float = Field(0.1, gt=0)  # DPO: KL strength; ORPO: weight of the odds-ratio term
    # ε, the assumed share of flipped labels: robust, aot and aot_unpaired may use it; exo_pair needs it > 0
    label_smoothing: float = Field(0.0, ge=0, lt=0.5)
    data: DataSpec = DataSpec(source="demo")
    lora: LoraSpec = LoraSpec()
    train: TrainSpec = TrainSpec(learning_rate=5e-5)

    @model_validator(mode="after")
    def _losses_fit_method(self) -> "PreferenceSpec":
        unknown = [name for name in self.loss_type if name not in DPO_LOSSES]
        if unknown:
            raise ValueError(f"preference.loss_type {unknown} unknown; valid: {', '.join(DPO_LOSSES)}")
        if self.method == "orpo" and self.loss_type != ["sigmoid"]:
            raise ValueError("preference.loss_type applies to method 'dpo' only; remove it for 'orpo'")
        if self.loss_weights is not None and len(self.loss_weights) != len(self.loss_type):
            raise ValueError(f"preference.loss_weights has {len(self.loss_weights)} values but "
                             f"preference.loss_type has {len(self.loss_type)}")
        return self

    @model_validator(mode="after")
    def _label_smoothing_fits_losses(self) -> "PreferenceSpec":
        if "exo_pair" in self.loss_type and self.label_smoothing == 0:
            raise ValueError("preference.label_smoothing must be > 0 for loss_type exo_pair (TRL's EXO "
                             "takes log ε; the EXO paper uses 1e-3)")
        if self.label_smoothing and not set(self.loss_type) & set(SMOOTHED_LOSSES):
            # TRL 1.16 would ignore it silently (its sigmoid loss no longer smooths, unlike cDPO)
            raise ValueError(f"preference.label_smoothing is used only by method 'dpo' with loss_type "
                             f"{', '.join(SMOOTHED_LOSSES)}; remove it or add one of them")
        return self


class TrackingSpec(Spec):
    """MLflow location; None uses MLFLOW_TRACKING_URI or the project's own store in .paft/."""

    tracking_uri: str | None = None
    experiment: str = "paft"


class EvalSpec(Spec):
    """Leaderboard evaluation with lm-eval: which suites, on which data, with which settings."""

    # v1: PAFT's; paft_probes: the PAFT demo probes (project data, chat template), never leaderboard numbers
    suites: list[Literal["open_llm_v1", "open_llm_v2", "paft_probes"]] = Field(["open_llm_v1"], min_length=1)
    benchmarks: list[str] | None = None  # a subset of the suites' benchmarks, e.g. [arc, gsm8k]; None: all
    source: Literal["hub", "offline"] = "hub"  # offline: project-made twins in data/eval/, labelled offline
    profile: Literal["full", "quick"] = "full"  # quick: CPU demo, labelled so (≤1 shot, 20 items, short gens)
    limit: int | None = Field(None, gt=0)  # first N items of each leaderboard task; None: all (quick: 20)
    probe_limit: int | None = Field(None, gt=0)  # first N items of each PAFT demo probe; None: all (200)
    max_gen_toks: int | None = Field(None, gt=0)  # cap on generated tokens; None: per benchmark (quick: 256)
    chat_template: bool = False  # v2 only: the model's chat template, few-shot as multi-turn (probes: always)
    backend: Literal["hf", "vllm"] = "hf"  # vllm: faster generation on GPU; needs the vllm package
    batch_size: int | Literal["auto"] = 1  # the leaderboard ran 1 per GPU; padding moves scores a bit
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"  # auto: as the checkpoint stores it
    device: str | None = None  # None: cuda when available, else cpu
    threads: int | None = Field(None, ge=1)  # torch threads while stages share the machine; alone: every core
    bootstrap_iters: int = Field(100000, ge=0)  # stderr of non-mean metrics; mean metrics have a closed form
    seed: int = 0  # lm-eval's random seed; its numpy, torch and few-shot seeds stay 1234
    log_samples: bool = True  # per-sample inputs and outputs, kept with the results and in MLflow
    request_cache: bool = False  # lm-eval's per-request cache, one per model: a killed run resumes

    @model_validator(mode="after")
    def _known_and_consistent(self) -> "EvalSpec":
        from paft_core.evaluation import suites  # evaluation imports nothing from here: no cycle

        try:
            suites.select(list(self.suites), self.benchmarks)
        except ConfigError as err:
            raise ValueError(str(err)) from None
        if self.batch_size != "auto" and self.batch_size < 1:
            raise ValueError(f"batch_size {self.batch_size} must be at least 1 (or 'auto')")
        if self.chat_template and "open_llm_v2" not in self.suites:
            raise ValueError("chat_template applies to open_llm_v2 only; open_llm_v1 is scored without one")
        return self


class OrchestrationSpec(Spec):
    """Where the flow trains the branches: as processes beside it, or each as its own deployment."""

    # "paft-branch/<name>", one flow run per branch; "paft-branch/train-{branch}": each on its own pool.
    # PAFT_HOME must be one storage on every machine (NFS, a bucket mount): the merge reads both adapters.
    branch_deployment: str | None = None
    worker_timeout: int = Field(300, ge=1)  # seconds to wait for a worker on a branch's pool, then fail

    @model_validator(mode="after")
    def _only_branch_is_filled_in(self) -> "OrchestrationSpec":
        try:
            (self.branch_deployment or "").format(branch="sft")
        except (KeyError, IndexError, ValueError):
            raise ValueError(f"branch_deployment {self.branch_deployment!r}: only {{branch}} may be filled "
                             "in, e.g. paft-branch/train-{branch}") from None
        return self


BASELINES = ("base", "sft-only", "preference-only", "sequential", "paft-no-l1")


class ComparisonSpec(Spec):
    """The paper's comparison: baselines trained and scored beside the PAFT model (shared stages reused)."""

    enabled: bool = False  # on: `paft run` trains and evaluates every baseline too, then writes a report
    baselines: list[Literal[BASELINES]] = list(BASELINES)  # sequential: preference trained on the SFT model
    baseline_sft: Literal["plain", "l1"] = "plain"  # SFT of sft-only and sequential: the paper's plain SFT


class PromotionSpec(Spec):
    """Gate for the registry alias `champion`: the candidate must beat it on average and drop nowhere much."""

    max_drop: float = Field(5.0, ge=0)  # points (0-100) any one benchmark may lose against the champion
    approval: bool = False  # then `champion` moves only when a person approves in the Prefect UI
    approval_timeout: int = Field(86400, ge=60)  # seconds to wait for that answer; none: champion kept


class PipelineRun(Spec):
    """A whole PAFT run: one base model, an SFT branch and a preference branch, tracked in MLflow."""

    name: str = Field("paft", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    model: ModelSpec = ModelSpec()
    sft: SFTSpec = SFTSpec()
    preference: PreferenceSpec = PreferenceSpec()
    merge: MergeSpec = MergeSpec()
    tracking: TrackingSpec = TrackingSpec()
    orchestration: OrchestrationSpec = OrchestrationSpec()
    evaluation: EvalSpec = EvalSpec()
    comparison: ComparisonSpec = ComparisonSpec()
    promotion: PromotionSpec = PromotionSpec()
    sweep: SweepSpec = SweepSpec()  # read by `paft sweep` only

    @model_validator(mode="after")
    def _merge_honours_l1(self) -> "PipelineRun":
        if keeps_loss_l1_delta(self.merge, self.sft.l1):
            raise ValueError("merge.sparsify keeps the SFT delta as trained, but sft.l1.mode 'loss' leaves "
                             "no exact zeros; use 'magnitude' (preset paft-ties) or sft.l1.mode 'proximal'")
        return self

    @model_validator(mode="after")
    def _sweep_fits(self) -> "PipelineRun":
        self.sweep.check_deltas(self.merge.deltas)
        return self


def write_config(spec: Spec, path: str | Path) -> Path:
    """Write a spec as YAML that `load_config` reads back (field aliases, fields in declaration order)."""
    (path := Path(path)).parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(spec.model_dump(mode="json", by_alias=True), sort_keys=False))
    return path


def load_config(path: str | Path, schema: type[Spec] = PipelineRun) -> Spec:
    """Read a YAML file into `schema`; raise ConfigError with one line per problem, naming the field."""
    if not (path := Path(path)).is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        raw = yaml.safe_load(files.utf8_text(path, str(path), ConfigError))
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML ({err})".replace("\n", " ")) from None
    if raw is None:  # an empty file, or comments only
        raise ConfigError(f"{path}: the spec is empty; write `{{}}` to run every default (the embedded demo)")
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of fields at the top level")
    try:
        return schema.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(describe(err, path)) from None


def describe(err: ValidationError, path: Path | str) -> str:
    """One line per pydantic error: file, dotted field path, what is wrong."""
    fields = [".".join(str(part) for part in item["loc"]) or "(top level)" for item in err.errors()]
    return "\n".join(f"{path}: {field}: {item['msg'].removeprefix('Value error, ')}"
                     for field, item in zip(fields, err.errors(), strict=True))
