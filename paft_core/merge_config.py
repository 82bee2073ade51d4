"""The `merge:` section of a spec: which deltas, how each is trimmed and weighted, how they combine."""

from typing import Literal

from pydantic import ConfigDict, Field, model_validator

from paft_core.presets import MERGE_PRESETS, MergeMethod
from paft_core.spec import Spec

Sparsifier = Literal["method", "magnitude", "dare", "breadcrumbs", "keep"]
FRACTION = {"type": "number", "exclusiveMinimum": 0, "maximum": 1}  # JSON schema: Prefect's form checks it
SHARE = {"type": "number", "minimum": 0, "exclusiveMaximum": 1}
PLACEMENT = {"device"}  # where a merge computes: no part of its output's identity (folders, sweep cache)


class LinesSpec(Spec):
    """LiNeS layer scaling of the merged delta: λ·(α + β·depth), depth 0 at the first layer, 1 at the last."""

    alpha: float = Field(1.0, ge=0)
    beta: float = Field(0.0, ge=0)


class MergeSpec(Spec):
    """How the deltas are combined into the base (methods and their papers: paft_core/presets.py)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    preset: str | None = None  # a name in MERGE_PRESETS; fields given here override it
    method: MergeMethod = "ties"
    deltas: list[str] = Field(["sft", "preference"], min_length=1)  # branches, adapter or checkpoint paths
    weights: list[float] | None = None  # one per delta; None: 1.0 each
    density: float | list[float] = Field(  # fraction of each delta kept (magnitude or DARE), one or per delta
        0.5, json_schema_extra={"anyOf": [FRACTION, {"type": "array", "items": FRACTION}]})
    sparsify: list[Sparsifier] | None = None  # per delta; "method": what the method does, "keep": as trained
    outliers: float | list[float] = Field(  # breadcrumbs: share of a delta's largest entries dropped
        0.01, json_schema_extra={"anyOf": [SHARE, {"type": "array", "items": SHARE}]})
    lines: LinesSpec | None = None  # LiNeS: scale λ by depth (None: the same λ everywhere)
    lambda_: float = Field(1.0, alias="lambda", gt=0)  # scale of the merged delta (negate with weights)
    majority_sign: Literal["total", "frequency"] = "total"  # TIES sign election
    seed: int = 0  # DARE's random drop
    lora_rank: int | None = Field(None, ge=1)  # also export the merged delta as a LoRA of this rank
    # merged weights' dtype; "base": each tensor as the base stores it (bf16 rounds tiny ΔW away)
    dtype: Literal["base", "float32", "bfloat16", "float16"] = "base"
    # where the arithmetic runs: auto is CUDA when torch sees a GPU (I/O streamed either way)
    device: Literal["auto", "cpu", "cuda"] = "auto"

    @model_validator(mode="before")
    @classmethod
    def _expand_preset(cls, data: object) -> object:
        if not isinstance(data, dict) or data.get("preset") is None:
            return data
        if data["preset"] not in MERGE_PRESETS:
            raise ValueError(f"preset '{data['preset']}' unknown; valid: {', '.join(MERGE_PRESETS)}")
        return {**MERGE_PRESETS[data["preset"]], **data}

    @model_validator(mode="after")
    def _lists_match_deltas(self) -> "MergeSpec":
        count = len(self.deltas)
        for name in ("weights", "density", "sparsify", "outliers"):
            value = getattr(self, name)
            if isinstance(value, list) and len(value) != count:
                raise ValueError(f"{name} has {len(value)} values for {count} deltas "
                                 f"({', '.join(self.deltas)}); give one per delta")
        for value in self.density if isinstance(self.density, list) else [self.density]:
            if not 0 < value <= 1:
                raise ValueError(f"density {value} is outside (0, 1]: the fraction of a delta kept")
        for value in self.outliers if isinstance(self.outliers, list) else [self.outliers]:
            if not 0 <= value < 1:
                raise ValueError(f"outliers {value} is outside [0, 1): the share of a delta's largest "
                                 "entries breadcrumbs drops")
        return self
