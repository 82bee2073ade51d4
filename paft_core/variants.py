"""The paper's comparison as spec transformations: each baseline is the PAFT spec with a few fields changed.

Stage folders are keyed by what each stage reads, so a variant that shares a stage with another (the SFT
adapter of `paft`, `sft-only` and `sequential`) reuses its folder instead of training it again.

- `base`: the base model, scored as it is.
- `sft-only`, `preference-only`: one branch's delta added to the base (task arithmetic, weight 1); the SFT
  is plain (no L1), as the paper's SFT baseline, unless `comparison.baseline_sft` is `l1`.
- `sequential`: the preference branch trained on the `sft-only` model, its delta added to that model: the
  usual SFT → DPO recipe, whose alignment tax PAFT claims to avoid.
- `paft-no-l1`: the PAFT merge, same sparsifiers and densities, of an SFT branch trained without L1.
- `paft`: the spec itself.
"""

from pathlib import Path

from paft_core.config import PipelineRun
from paft_core.merging.methods import Recipe

ORDER = ("base", "sft-only", "preference-only", "sequential", "paft-no-l1", "paft")
PLAIN_SFT = "sft-no-l1"  # the trained SFT branch without L1, where a variant needs it


def needs(spec: PipelineRun) -> dict[str, tuple[str, ...]]:
    """The trained branches each merged variant reads (`sequential` also reads the `sft-only` model)."""
    baseline_sft = PLAIN_SFT if spec.comparison.baseline_sft == "plain" else "sft"
    return {"sft-only": (baseline_sft,), "preference-only": ("preference",),
            "paft-no-l1": (PLAIN_SFT, "preference"), "paft": ("sft", "preference")}


def names(spec: PipelineRun) -> list[str]:
    """The variants a spec asks for, in report order; `paft` always, the rest when the comparison is on."""
    wanted = set(spec.comparison.baselines) if spec.comparison.enabled else set()
    return [name for name in ORDER if name in wanted or name == "paft"]


def specs(spec: PipelineRun) -> dict[str, PipelineRun]:
    """Every wanted variant's spec known before training (`sequential` needs the SFT model first).

    Under `sft-no-l1`, the spec that trains the plain SFT branch when some variant reads it.
    """
    wanted = names(spec)
    plain = without_l1(spec)
    baseline = plain if spec.comparison.baseline_sft == "plain" else spec
    made = {"base": spec, "sft-only": single_branch(baseline, "sft"), "paft": spec,
            "preference-only": single_branch(spec, "preference"), "paft-no-l1": plain, PLAIN_SFT: plain}
    keep = set(wanted) | ({"sft-only"} if "sequential" in wanted else set())
    read = {branch for name in keep if name in made for branch in needs(spec).get(name, ())}
    keep |= {PLAIN_SFT} & read
    return {name: made[name] for name in (*ORDER, PLAIN_SFT) if name in keep and name in made}


def sft_used(spec: PipelineRun) -> dict[str, str]:
    """For the report: which SFT delta each variant holds, and how the merge trimmed it."""
    l1 = spec.sft.l1
    trained = f"L1 SFT (λ = {l1.strength:g}, {l1.target}, {l1.mode})" if l1.strength else "plain SFT"
    baseline = "plain SFT (λ = 0)" if spec.comparison.baseline_sft == "plain" else trained
    merge = spec.merge
    index = merge.deltas.index("sft") if "sft" in merge.deltas else None
    trim = ""
    if index is not None:
        recipe = Recipe.from_spec(merge)
        trim = f", {recipe.sparsifiers[index]} at density {recipe.densities[index]:g}"
    used = {"base": "none", "sft-only": f"{baseline}, untrimmed", "preference-only": "none",
            "sequential": f"{baseline}, untrimmed, then preference trained on it",
            "paft-no-l1": f"plain SFT (λ = 0){trim}", "paft": f"{trained}{trim}"}
    return {name: used[name] for name in names(spec)}


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
