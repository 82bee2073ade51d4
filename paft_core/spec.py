"""The base of every spec."""

from pydantic import BaseModel, ConfigDict


class Spec(BaseModel):
    """Base of every spec: unknown keys are errors and values never change after loading."""

    model_config = ConfigDict(extra="forbid", frozen=True)
