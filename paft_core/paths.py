"""Where PAFT keeps its state: the project's `.paft/` folder unless PAFT_HOME says otherwise."""

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DEMO_DATA = PROJECT_ROOT / "data" / "demo"


def home() -> Path:
    """Root of caches, stage outputs and the default MLflow store."""
    return Path(os.environ.get("PAFT_HOME", Path.cwd() / ".paft")).resolve()


def model_cache() -> Path:
    """Folder of converted base models (GGUF → safetensors), reused across runs."""
    return home() / "models"


def stages() -> Path:
    """Folder of stage outputs (adapters, trainer state), one sub-folder per stage and spec."""
    return home() / "stages"
