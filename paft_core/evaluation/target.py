"""What `paft eval` scores: the spec's base model, a model folder (a merge, say), or an adapter on its base.

Each target gets a content fingerprint, the model half of the evaluation cache key.
"""

import hashlib
from dataclasses import dataclass
from pathlib import Path

from paft_core import files, models
from paft_core.config import ModelSpec
from paft_core.errors import ModelError
from paft_core.merging import checkpoint, deltas

TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json")
ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")


@dataclass(frozen=True)
class Target:
    """A model ready for lm-eval: the folder it loads, an optional adapter, a label and a fingerprint."""

    label: str
    path: Path
    fingerprint: str
    adapter: Path | None = None


def base(spec: ModelSpec) -> Target:
    """The spec's base model, resolved (and converted once) as the training branches see it."""
    resolved = models.resolve(spec)
    _check_tokenizer(resolved.path, "model.source")
    return Target("base", resolved.path, resolved.fingerprint)


def folder(path: Path, spec: ModelSpec) -> Target:
    """A Hugging Face model folder, such as a merged PAFT model; the spec's safety settings apply."""
    path = Path(path).expanduser()
    try:
        models.check_folder(path, spec)
    except ModelError as err:
        raise ModelError(str(err).replace("model.source:", "--model:", 1)) from None
    _check_tokenizer(path, "--model")
    return Target(_name(path), path.resolve(), models.fingerprint(path))


def adapter(path: Path, spec: ModelSpec) -> Target:
    """A PEFT adapter folder, evaluated on the spec's base model."""
    path = Path(path).expanduser()
    missing = [name for name in ADAPTER_FILES if not (path / name).is_file()]
    if missing:
        raise ModelError(f"--adapter: {path} is not a PEFT adapter folder (no {missing[0]})")
    on = base(spec)
    if any(on.path.glob("*.safetensors")):  # shapes from headers, before lm-eval loads anything
        reader = checkpoint.Reader(on.path)
        deltas.check_against_base([deltas.open_delta(path, _name(path), reader)], reader)
    digest = hashlib.sha256(on.fingerprint.encode())
    for name in ADAPTER_FILES:
        digest.update(files.sha256(path / name).encode())
    return Target(f"adapter-{_name(path)}", on.path, digest.hexdigest(), path.resolve())


def _name(path: Path) -> str:
    """A readable label: the folder's name, or its stage folder's for the generic `model/` and `adapter/`."""
    path = path.resolve()
    return path.parent.name if path.name in ("model", "adapter") else path.name


def _check_tokenizer(path: Path, field: str) -> None:
    if not any((path / name).is_file() for name in TOKENIZER_FILES):
        raise ModelError(f"{field}: {path} has no tokenizer ({', '.join(TOKENIZER_FILES)}); "
                         "save the tokenizer beside the weights")
