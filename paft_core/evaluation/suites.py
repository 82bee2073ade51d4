"""The suites, each defined once: benchmarks, lm-eval tasks, shots, metrics.

`open_llm_v1` is the six-benchmark suite the PAFT paper reports (Pentyala et al., 2024,
arXiv 2406.17923); `open_llm_v2` is lm-eval's `leaderboard` group scored the way the leaderboard
normalizes it (https://huggingface.co/docs/leaderboards/open_llm_leaderboard/normalization).
`paft_probes` are the PAFT demo probes: project-made lm-eval tasks (YAML in probes/, data in
data/probes/) measuring what each branch teaches; never leaderboard numbers.
"""

from dataclasses import dataclass, replace
from typing import Literal

from paft_core.errors import ConfigError

Combine = Literal["single", "macro", "pooled"]
ChatTemplate = Literal["never", "optional", "always"]


@dataclass(frozen=True)
class Benchmark:
    """One leaderboard column: its lm-eval tasks, shots, the metric read and how subtasks combine.

    `combine`: "single" reads one task; "macro" averages the subtasks with equal weight (after
    normalizing each); "pooled" weights subtasks by their item counts, as lm-eval's groups do.
    `baselines` are random-guess accuracies per task for the v2 normalization; None keeps raw scores.
    """

    name: str
    tasks: tuple[str, ...]
    shots: int
    metrics: tuple[str, ...]  # lm-eval result keys; several are averaged (IFEval's two strict accuracies)
    dataset: str  # the hub dataset the tasks read; a project suite's file in data/probes/
    combine: Combine = "single"
    baselines: tuple[float, ...] | None = None
    fewshot_split: str | None = None  # set where the leaderboard fixed it (the v1 train splits)
    gated: bool = False  # the hub dataset needs a token with accepted terms


@dataclass(frozen=True)
class Suite:
    """A leaderboard or the project's probes: benchmarks, where their task configs are, prompt format."""

    name: str
    title: str  # how reports name it, so probes are never read as leaderboard numbers
    benchmarks: tuple[Benchmark, ...]
    # Folders to index: under lm_eval/tasks (indexing all 14k tasks costs ~10 s), or, for a project
    # suite, under paft_core/evaluation.
    task_dirs: tuple[str, ...]
    chat_template: ChatTemplate  # optional: evaluation.chat_template decides
    # Whether the model input starts with BOS; None follows the tokenizer (lm-eval 0.4.13's default).
    add_bos_token: bool | None = None
    # The project's own tasks and data (the probes): no hub or twin source and no quick profile apply.
    project: bool = False

    def benchmark(self, name: str) -> Benchmark:
        """The benchmark called `name`."""
        return next(b for b in self.benchmarks if b.name == name)


MMLU_SUBJECTS = (
    "abstract_algebra anatomy astronomy business_ethics clinical_knowledge college_biology college_chemistry "
    "college_computer_science college_mathematics college_medicine college_physics computer_security "
    "conceptual_physics econometrics electrical_engineering elementary_mathematics formal_logic global_facts "
    "high_school_biology high_school_chemistry high_school_computer_science high_school_european_history "
    "high_school_geography high_school_government_and_politics high_school_macroeconomics "
    "high_school_mathematics high_school_microeconomics high_school_physics high_school_psychology "
    "high_school_statistics high_school_us_history high_school_world_history human_aging human_sexuality "
    "international_law jurisprudence logical_fallacies machine_learning management marketing "
    "medical_genetics miscellaneous moral_disputes moral_scenarios nutrition philosophy prehistory "
    "professional_accounting professional_law professional_medicine professional_psychology public_relations "
    "security_studies sociology us_foreign_policy virology world_religions"
).split()
BBH_CHOICES = {  # subtask: number of answer choices (its random baseline is 1/n)
    "boolean_expressions": 2, "causal_judgement": 2, "date_understanding": 6, "disambiguation_qa": 3,
    "formal_fallacies": 2, "geometric_shapes": 11, "hyperbaton": 2, "logical_deduction_five_objects": 5,
    "logical_deduction_seven_objects": 7, "logical_deduction_three_objects": 3, "movie_recommendation": 6,
    "navigate": 2, "object_counting": 19, "penguins_in_a_table": 5, "reasoning_about_colored_objects": 18,
    "ruin_names": 6, "salient_translation_error_detection": 6, "snarks": 2, "sports_understanding": 2,
    "temporal_sequences": 4, "tracking_shuffled_objects_five_objects": 5,
    "tracking_shuffled_objects_seven_objects": 7, "tracking_shuffled_objects_three_objects": 3,
    "web_of_lies": 2,
}
MUSR_CHOICES = {"murder_mysteries": 2, "object_placements": 5, "team_allocation": 3}
MATH_TYPES = ("algebra", "counting_and_prob", "geometry", "intermediate_algebra", "num_theory", "prealgebra",
              "precalculus")
GPQA_SUBSETS = ("diamond", "extended", "main")

OPEN_LLM_V1 = Suite(
    name="open_llm_v1",
    title="Open LLM Leaderboard v1",
    benchmarks=(
        Benchmark("arc", ("arc_challenge",), 25, ("acc_norm,none",), "allenai/ai2_arc",
                  fewshot_split="train"),
        Benchmark("hellaswag", ("hellaswag",), 10, ("acc_norm,none",), "Rowan/hellaswag",
                  fewshot_split="train"),
        # The leaderboard's MMLU is the plain mean over subjects; lm-eval's `mmlu` group pools items.
        Benchmark("mmlu", tuple(f"mmlu_{s}" for s in MMLU_SUBJECTS), 5, ("acc,none",), "cais/mmlu",
                  combine="macro"),
        Benchmark("truthfulqa_mc2", ("truthfulqa_mc2",), 0, ("acc,none",), "truthfulqa/truthful_qa"),
        Benchmark("winogrande", ("winogrande",), 5, ("acc,none",), "allenai/winogrande",
                  fewshot_split="train"),
        Benchmark("gsm8k", ("gsm8k",), 5, ("exact_match,strict-match",), "openai/gsm8k"),
    ),
    task_dirs=("arc", "hellaswag", "mmlu/default", "truthfulqa", "winogrande", "gsm8k"),
    chat_template="never",
    # The 2023 leaderboard harness (b281b09, hf-causal-experimental) encoded without special tokens, so
    # no BOS; lm-eval 0.4.13 follows the tokenizer, which gives Llama and Mistral one. Off, as it was.
    add_bos_token=False,
)
OPEN_LLM_V2 = Suite(
    name="open_llm_v2",
    title="Open LLM Leaderboard v2",
    benchmarks=(
        Benchmark("ifeval", ("leaderboard_ifeval",), 0,
                  ("inst_level_strict_acc,none", "prompt_level_strict_acc,none"),
                  "wis-k/instruction-following-eval"),
        Benchmark("bbh", tuple(f"leaderboard_bbh_{k}" for k in BBH_CHOICES), 3, ("acc_norm,none",),
                  "SaylorTwift/bbh", combine="macro", baselines=tuple(1 / n for n in BBH_CHOICES.values())),
        Benchmark("math_lvl5", tuple(f"leaderboard_math_{t}_hard" for t in MATH_TYPES), 4,
                  ("exact_match,none",), "DigitalLearningGmbH/MATH-lighteval", combine="pooled"),
        Benchmark("gpqa", tuple(f"leaderboard_gpqa_{s}" for s in GPQA_SUBSETS), 0, ("acc_norm,none",),
                  "Idavidrein/gpqa", combine="pooled", baselines=(0.25,) * 3, gated=True),
        Benchmark("musr", tuple(f"leaderboard_musr_{k}" for k in MUSR_CHOICES), 0, ("acc_norm,none",),
                  "TAUR-Lab/MuSR", combine="macro", baselines=tuple(1 / n for n in MUSR_CHOICES.values())),
        Benchmark("mmlu_pro", ("leaderboard_mmlu_pro",), 5, ("acc,none",), "TIGER-Lab/MMLU-Pro",
                  baselines=(0.1,)),
    ),
    task_dirs=("leaderboard",),
    chat_template="optional",
)
PAFT_PROBES = Suite(
    name="paft_probes",
    title="PAFT demo probes",
    benchmarks=(
        # The SFT branch's skill: the answer format it teaches (`#### N`), exact match of N.
        Benchmark("sft_skill", ("paft_probe_sft",), 0, ("exact_match,strict-match",), "sft_skill.jsonl"),
        # The preference branch's skill: the honest answer's log-likelihood above the made-up one's.
        Benchmark("preference_skill", ("paft_probe_preference",), 0, ("acc,none",),
                  "preference_skill.jsonl"),
    ),
    task_dirs=("probes",),
    # The branches train on chat-formatted turns, so the probes ask in the same format.
    chat_template="always",
    project=True,
)
SUITES = {suite.name: suite for suite in (OPEN_LLM_V1, OPEN_LLM_V2, PAFT_PROBES)}


def select(names: list[str], benchmarks: list[str] | None) -> list[Suite]:
    """The named suites, cut down to `benchmarks` (None keeps all); unknown names raise ConfigError."""
    unknown = [n for n in names if n not in SUITES]
    if unknown:
        raise ConfigError(f"unknown suite {unknown[0]!r}; valid: {', '.join(SUITES)}")
    chosen = [SUITES[n] for n in names]
    if benchmarks is None:
        return chosen
    valid = [b.name for suite in chosen for b in suite.benchmarks]
    missing = [b for b in benchmarks if b not in valid]
    if missing:
        raise ConfigError(f"unknown benchmark {missing[0]!r} for suites {', '.join(names)}; "
                          f"valid: {', '.join(valid)}")
    cut = [replace(s, benchmarks=tuple(b for b in s.benchmarks if b.name in benchmarks)) for s in chosen]
    return [s for s in cut if s.benchmarks]

# The quick profile: a CPU demo, not a score. Every key it writes carries "-quick".
QUICK_LIMIT = 20  # items per benchmark task, unless `limit` says otherwise
QUICK_MAX_SHOTS = 1
QUICK_MAX_GEN_TOKS = 256  # IFEval asks for 1280 and MATH for 1024 tokens; small models rarely stop early
