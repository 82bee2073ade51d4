"""`make run` for real: the demo config on SmolLM2-135M, a few steps a branch, through `paft run`."""

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

from paft_core import models, variants
from paft_core.config import ModelSpec
from paft_core.paths import PROJECT_ROOT

SHORT = {"max_steps": 2, "save_steps": 100, "logging_steps": 1}


def short_demo(folder: Path) -> Path:
    """The shipped demo config with two steps a branch and two items a benchmark task and a probe."""
    demo = yaml.safe_load((PROJECT_ROOT / "configs" / "pipeline" / "demo.yaml").read_text())
    for branch in ("sft", "preference"):
        demo[branch]["train"].update(SHORT)
    demo["evaluation"]["limit"] = 2
    demo["evaluation"]["probe_limit"] = 2  # the fewest items that give a paired standard error
    config = folder / "demo.yaml"
    config.write_text(yaml.safe_dump(demo))
    return config


def assert_probes_and_paired_figures(text: str) -> None:
    """The report shows the probes, each variant against base on each probe (paired), the tax, the twins."""
    assert "## PAFT demo probes (`paft_probes" in text and "not leaderboard numbers" in text
    assert "Alignment tax on the PAFT demo probes" in text and "paired standard error" in text
    lines = text.splitlines()
    for name in variants.ORDER[1:]:  # whatever the sign: beats, trails or ties
        assert f"| {name} − base |" in text
        for probe in ("sft_skill", "preference_skill"):
            assert any(line.startswith(f"- {name} ") and f" base on {probe}" in line and "paired SE" in line
                       for line in lines), (name, probe)
    assert "| paft − sequential |" in text and "## Open LLM Leaderboard v1" in text


@pytest.mark.slow
def test_the_demo_config_runs_the_whole_comparison_on_smollm2(paft_home, tmp_path, prefect_server):
    from prefect.settings import PREFECT_API_URL

    env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value()}  # the test server, not an ephemeral one
    shown = subprocess.run([sys.executable, "-m", "paft", "run", str(short_demo(tmp_path))],
                           env=env, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=2400)
    assert shown.returncode == 0, shown.stdout[-3000:] + shown.stderr[-3000:]
    console = shown.stdout + shown.stderr
    assert all(name in console for name in variants.ORDER)
    assert "PAFT demo probes" in console and "sft-only" in console and " base on sft_skill" in console
    assert "paired SE" in console and "Alignment tax on the PAFT demo probes" in console
    assert "paft ui" in console and "paft serve" in console
    # the step counter, with elapsed<ETA
    assert re.search(r"paft train sft \(steps\): 1/2 \[\d\d:\d\d<\d\d:\d\d", console)

    base = models.resolve(ModelSpec())  # converted once from the package, then cached
    assert (base.path / "model.safetensors").is_file() and models.fingerprint(base.path) == base.fingerprint
    states = list((paft_home / "stages").glob("*/trainer_state.json"))
    assert len(states) == 4  # SFT with and without L1, preference in parallel and on top of SFT
    for state in states:
        losses = [entry["loss"] for entry in json.loads(state.read_text())["log_history"] if "loss" in entry]
        assert len(losses) == 2 and all(math.isfinite(loss) for loss in losses)
    (report,) = (paft_home / "runs").glob("*/report/report.md")
    assert_probes_and_paired_figures(report.read_text())
    assert (report.parent / "scores.png").is_file() and (report.parent / "alignment_tax.png").is_file()

    client = MlflowClient(f"sqlite:///{paft_home / 'mlflow.db'}")
    (parent,) = client.search_runs([client.get_experiment_by_name("paft-demo").experiment_id],
                                   "tags.`paft.stage` = 'pipeline'")
    assert parent.info.status == "FINISHED"
    assert {f"compare/{name}/average" for name in variants.ORDER} <= set(parent.data.metrics)
    assert parent.data.metrics["compare/alignment_tax_stderr"] >= 0  # paired, from per-item outcomes
    paired = {f"compare/paired/{name}_vs_base/{probe}{end}" for name in variants.ORDER[1:]
              for probe in ("sft_skill", "preference_skill", "average") for end in ("", "_stderr")}
    assert paired | {"compare/paired/paft_vs_sequential/average_stderr"} <= set(parent.data.metrics)
    assert int(client.get_model_version_by_alias("demo", "candidate").version) == 1
    assert int(client.get_model_version_by_alias("demo", "champion").version) == 1  # the first candidate
