"""The paper's comparison as spec transformations: each baseline is the PAFT spec with a few fields changed.

Stage folders are keyed by what each stage reads, so a variant that shares a stage with another (the SFT
adapter of `paft`, `sft-only` and `sequential`) reuses its folder instead of training it again.

- `base`: the base model, scored as it is.
- `sft-only`, `preference-only`: one branch's delta added to the base (task arithmetic, weight 1).
- `sequential`: the preference branch trained on the `sft-only` model, its delta added to that model: the
  usual SFT → DPO recipe, whose alignment tax PAFT claims to avoid.
- `paft-no-l1`: the PAFT merge of an SFT branch trained without the L1 penalty.
- `paft`: the spec itself.
"""

from pathlib import Path

from paft_core.config import PipelineRun

ORDER = ("base", "sft-only", "preference-only", "sequential", "paft-no-l1", "paft")
# The trained branches each merged variant reads (`sequential` also reads the `sft-only` model).
NEEDS = {"sft-only": ("sft",), "preference-only": ("preference",), "paft-no-l1": ("sft-no-l1", "preference"),
         "paft": ("sft", "preference")}


def names(spec: PipelineRun) -> list[str]:
    """The variants a spec asks for, in report order; `paft` always, the rest when the comparison is on."""
    wanted = set(spec.comparison.baselines) if spec.comparison.enabled else set()
    return [name for name in ORDER if name in wanted or name == "paft"]


def specs(spec: PipelineRun) -> dict[str, PipelineRun]:
    """Every wanted variant's spec that is known before training (`sequential` needs the SFT model first)."""
    wanted = names(spec)
    made = {"base": spec, "sft-only": single_branch(spec, "sft"), "paft": spec,
            "preference-only": single_branch(spec, "preference"), "paft-no-l1": without_l1(spec)}
    keep = set(wanted) | ({"sft-only"} if "sequential" in wanted else set())
    return {name: made[name] for name in ORDER if name in keep and name in made}


def single_branch(spec: PipelineRun, branch: str) -> PipelineRun:
    """The base plus one branch's delta, unscaled and untrimmed."""
    merge = {"method": "task_arithmetic", "deltas": [branch], "weights": [1.0], "lambda": 1.0}
    return _with(spec, merge=merge)


def without_l1(spec: PipelineRun) -> PipelineRun:
    """PAFT with the SFT branch trained without its L1 penalty (its own SFT stage folder)."""
    return _with(spec, sft={**spec.sft.model_dump(), "l1": {**spec.sft.l1.model_dump(), "strength": 0.0}})


def sequential(spec: PipelineRun, sft_model: Path) -> PipelineRun:
    """The preference branch trained on the SFT model (a merged folder), then added to it."""
    model = {**spec.model.model_dump(), "source": str(sft_model)}
    return _with(single_branch(spec, "preference"), model=model)


def _with(spec: PipelineRun, **sections) -> PipelineRun:
    """A new validated spec with whole sections replaced."""
    raw = spec.model_dump(mode="json", by_alias=True)
    return PipelineRun.model_validate({**raw, **sections})
