"""Merge-recipe search: train (or reuse) both branches, score candidate merges on the two skills, keep the
Pareto front, pick one recipe, evaluate it on the full suite, register and gate it like any PAFT model.

Candidates come from Optuna, `sweep.workers` of them in flight, each merged and scored as its own Prefect
task (and MLflow child run); the spec's own recipe is scored beside them and the sequential baseline marked.
"""

import time
from concurrent import futures

from prefect import flow, get_run_logger
from prefect.futures import wait
from prefect.task_runners import ThreadPoolTaskRunner

from paft_core import sweep, variants
from paft_core.config import PipelineRun, write_config
from paft_core.stage import BRANCHES
from tasks.approval import approved
from tasks.compare import sequential_spec, write_spec
from tasks.parent_run import close_parent_run, end_after, open_parent_run
from tasks.process import StageFailed
from tasks.registry import promote, summarize
from tasks.stages import evaluate_model, merge_deltas, prepare, run_folder, train_branch
from tasks.sweep import drop_merges, report, score_baseline, score_candidate


@flow(name="paft-sweep", task_runner=ThreadPoolTaskRunner(max_workers=16))
def sweep_flow(spec: PipelineRun) -> dict:
    """Search merge recipes over the trained branches; register the picked one through the promotion gate."""
    sweep.check(spec)
    parent = open_parent_run(spec)
    try:
        folder = run_folder()
        spec_file = prepare(spec, folder)
        branches = [train_branch.submit(spec_file, branch, parent) for branch in BRANCHES]
        wait(branches)
        [branch.result() for branch in branches]  # raises the first branch failure
        baseline = sequential_baseline(spec, folder, parent) if spec.sweep.baselines else None
        results = search(spec, folder, parent)
        points = {result["name"]: list(result["values"].values()) for result in results}
        chosen = sweep.front(points)
        picked = sweep.pick(points, chosen, spec.sweep.pick_weights)
        drop_merges(results, chosen)
        shown = report(spec, parent, folder, results, chosen, picked, baseline.result() if baseline else None)
        winner = next(result for result in results if result["name"] == picked)
        summary = register_pick(spec, sweep.Candidate(picked, winner["merge"]), folder, parent)
    except BaseException as error:
        end_after(error, spec, parent)
        raise
    summary |= {"sweep/candidates": float(len(results)), "sweep/front": float(len(chosen))}
    close_parent_run(spec, parent, "FINISHED", summary)
    return {**summary, "console": shown["console"], "folder": shown["folder"]}


def search(spec: PipelineRun, folder: str, parent: str) -> list[dict]:
    """Score the spec's recipe and `sweep.candidates` others from Optuna, `sweep.workers` in flight: each
    finished candidate is told at once and the next asked, so no worker waits for a slower one."""
    plan, started, budget = sweep.Search(spec), time.monotonic(), spec.sweep.candidates
    results = [score_candidate.submit(spec, sweep.reference(spec), folder, parent)]
    flying: dict = {}
    asked = 0
    while asked < budget or flying:
        over = spec.sweep.minutes and time.monotonic() - started > spec.sweep.minutes * 60
        while asked < budget and len(flying) < spec.sweep.workers and not over:
            (candidate,) = plan.ask(1)
            flying[candidate.name] = candidate, score_candidate.submit(spec, candidate, folder, parent)
            results.append(flying[candidate.name][1])
            asked += 1
        if over and not flying:
            break
        # the thread pool's own futures: waiting on them asks the Prefect API nothing
        done, _ = futures.wait([future.wrapped_future for _, future in flying.values()],
                               return_when=futures.FIRST_COMPLETED)
        for name in [name for name, (_, future) in flying.items() if future.wrapped_future in done]:
            candidate, future = flying.pop(name)
            found = _finished(future)
            plan.tell(candidate, list(found["values"].values()) if found else None)
    scored = [found for found in map(_finished, results) if found]
    if len(scored) < len(results):
        get_run_logger().warning(f"paft: {len(results) - len(scored)} of {len(results)} candidates failed "
                                 "(their task runs say why); the front is drawn from the rest")
    if not scored:
        raise StageFailed("every candidate of the sweep failed; see the candidate task runs")
    return scored


def _finished(future) -> dict | None:
    """A candidate's result, or None when its merge or evaluation failed (Optuna is told it failed)."""
    try:
        return future.result()
    except StageFailed:
        return None


def sequential_baseline(spec: PipelineRun, folder: str, parent: str):
    """The sequential SFT → preference model scored like a candidate (its stages reused when cached)."""
    wanted = spec.model_copy(update={"comparison": spec.comparison.model_copy(
        update={"enabled": True, "baselines": ["sequential"]})})
    made = variants.specs(wanted)
    spec_files = {name: write_spec(variant, folder, name) for name, variant in made.items() if name != "paft"}
    plain = variants.PLAIN_SFT
    trained = [train_branch.submit(spec_files[plain], "sft", parent, plain)] if plain in spec_files else []
    sft_only = merge_deltas.submit(spec_files["sft-only"], parent, "sft-only", wait_for=trained)
    spec_file = sequential_spec.submit(spec, sft_only, folder)
    done = train_branch.submit(spec_file, "preference", parent, "sequential")
    merged = merge_deltas.submit(spec_file, parent, "sequential", wait_for=[done])
    return score_baseline.submit(spec, spec_file, merged, folder, parent)


def register_pick(spec: PipelineRun, picked: sweep.Candidate, folder: str, parent: str) -> dict:
    """The picked recipe merged (again, if its folder was dropped), evaluated on the full suite, registered
    and gated as any PAFT model."""
    chosen = spec.model_copy(update={"merge": sweep.candidate_spec(spec, picked).merge})
    spec_file = str(write_config(chosen, f"{folder}/picked/spec.yaml"))
    merged = merge_deltas(spec_file, parent, f"picked-{picked.name}")
    evaluated = evaluate_model(spec_file, f"{merged.folder}/model", parent)
    decision = approved(chosen, promote(chosen, merged, evaluated), parent)
    return summarize(chosen, parent, merged, evaluated, decision.version)
