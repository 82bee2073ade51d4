"""Offline runs of every suite on the tiny random Llama: every benchmark, the average, MLflow, the cache."""

import json
from pathlib import Path

import pytest

from paft_core.evaluation import harness, runner, suites, target
from tests import tiny

FAST = {"source": "offline", "profile": "quick", "limit": 1, "probe_limit": 1, "max_gen_toks": 8,
        "bootstrap_iters": 0}
V1, V2 = "open_llm_v1-offline-quick-limit1", "open_llm_v2-offline-quick-limit1"  # FAST's labels
LABELS = {"open_llm_v1": V1, "open_llm_v2": V2, "paft_probes": "paft_probes-limit1"}  # probes: no source


def eval_spec(tiny_base, **evaluation):
    return tiny.spec(tiny_base, evaluation={**FAST, **evaluation})


@pytest.fixture(scope="module")
def scored(tiny_base, tmp_path_factory):
    """Every suite evaluated once on the tiny base in a fresh PAFT_HOME: (home, spec, metrics)."""
    home = tmp_path_factory.mktemp("eval-home")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PAFT_HOME", str(home))
        patch.delenv("MLFLOW_TRACKING_URI", raising=False)  # an earlier stage in this process may have set it
        spec = eval_spec(tiny_base, suites=list(suites.SUITES))
        result = runner.evaluate(spec, target.base(spec.model))
    assert result.stage == "eval" and not result.reused and result.labels()[0] == LABELS["paft_probes"]
    return home, spec, result.metrics()


@pytest.mark.parametrize("suite", suites.SUITES.values(), ids=lambda s: s.name)
def test_offline_run_scores_every_benchmark_and_the_average(scored, suite):
    _, _, metrics = scored
    label = LABELS[suite.name]  # offline, quick and limit say so in every key
    names = [b.name for b in suite.benchmarks] + ["average"]
    assert all(0.0 <= metrics[f"eval/{label}/{name}"] <= 100.0 for name in names)
    assert {key.split("/")[2] for key in metrics if key.startswith(f"eval/{label}/")} >= set(names)


def test_the_mlflow_run_holds_scores_params_table_and_lm_eval_outputs(scored):
    home, _, metrics = scored
    client, runs = tiny.tracked_runs(home)
    run = runs[0]
    assert run.info.run_name == "eval:base" and run.info.status == "FINISHED"
    assert run.data.metrics == pytest.approx(metrics)
    params = run.data.params
    assert params[f"paft.eval.{V1}.shots.arc"] == "1"  # quick caps the 25 shots
    assert params[f"paft.eval.{V2}.versions.leaderboard_ifeval"] == "3.0"
    assert params["paft.eval.lm_eval_version"] == "0.4.13" and params["paft.evaluation.source"] == "offline"
    assert run.data.tags[f"paft.cache.{V1}"] == "miss"
    table = json.loads(Path(client.download_artifacts(run.info.run_id, "eval/scores.json")).read_text())
    assert {row[0] for row in table["data"]} == set(LABELS.values())
    outputs = [a.path for a in client.list_artifacts(run.info.run_id, f"lm_eval/{V1}")]
    assert f"lm_eval/{V1}/results.json" in outputs
    samples = client.list_artifacts(run.info.run_id, f"lm_eval/{V1}/samples")
    assert any(a.path.endswith("gsm8k.jsonl") for a in samples)


def test_second_run_of_the_same_model_hits_the_cache(scored, monkeypatch, tiny_base):
    home, spec, metrics = scored
    monkeypatch.setenv("PAFT_HOME", str(home))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setattr(harness, "run", lambda *a, **k: pytest.fail("an unchanged model was evaluated again"))
    again = runner.evaluate(spec, target.base(spec.model))
    assert again.metrics() == metrics and again.reused
    client, runs = tiny.tracked_runs(home)
    assert runs[-1].data.tags[f"paft.cache.{V2}"] == "hit"
    first = runs[0].info.run_id
    assert runs[-1].data.params[f"paft.eval.{V2}.cached_from"] == first


def test_changed_settings_miss_the_cache(tiny_base):
    base = target.Target("base", tiny_base, "f" * 64)
    one, two = (runner.plan(eval_spec(tiny_base, limit=n).evaluation, base)[0] for n in (1, 2))
    assert one.folder != two.folder
    assert (one.label, two.label) == (V1, V1.replace("limit1", "limit2"))


def test_thread_count_keeps_the_cache(tiny_base):
    base = target.Target("base", tiny_base, "f" * 64)
    one, two = (runner.plan(eval_spec(tiny_base, threads=n).evaluation, base)[0] for n in (None, 1))
    assert one.folder == two.folder  # how fast a model was scored is not part of what was scored
