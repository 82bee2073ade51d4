"""PAFT and the paper's baselines in one flow: base, SFT only, preference only, sequential SFT → preference,
PAFT without L1 and PAFT, each scored on the same suite, then gated promotion and one report.

Every variant is the PAFT spec with a few fields changed (paft_core/variants.py); stages that read the same
inputs share one content-addressed folder, so the PAFT branches are trained once for all variants.
"""

from prefect import flow
from prefect.task_runners import ThreadPoolTaskRunner

from paft_core import variants
from paft_core.config import PipelineRun
from tasks.approval import approved
from tasks.compare import evaluate_variant, report, sequential_spec, write_spec
from tasks.parent_run import close_parent_run, end_after, open_parent_run
from tasks.registry import promote
from tasks.stages import merge_deltas, prepare, run_folder, train_branch


@flow(name="paft-compare", task_runner=ThreadPoolTaskRunner(max_workers=16))
def compare_flow(spec: PipelineRun) -> dict:
    """Train the branches once, merge and score every variant as soon as its inputs exist, report."""
    parent = open_parent_run(spec)
    try:
        folder = run_folder()
        prepare(spec, folder)
        made = variants.specs(spec)
        spec_files = {name: write_spec(variant, folder, name) for name, variant in made.items()}
        # One SFT lane beside preference: plain SFT first, as the sequential baseline waits on it.
        plain = variants.PLAIN_SFT
        trained = {}
        if plain in spec_files:
            trained[plain] = train_branch.submit(spec_files[plain], "sft", parent, plain)
        first = list(trained.values())
        trained["preference"] = train_branch.submit(spec_files["paft"], "preference", parent, "paft")
        trained["sft"] = train_branch.submit(spec_files["paft"], "sft", parent, "paft", wait_for=first)
        merged = {name: merge_deltas.submit(spec_files[name], parent, name,
                                            wait_for=[trained[b] for b in needs])
                  for name, needs in variants.needs(spec).items() if name in spec_files}
        if "sequential" in variants.names(spec):  # preference trained on the SFT-only model
            spec_files["sequential"] = sequential_spec.submit(spec, merged["sft-only"], folder)
            trained["sequential"] = train_branch.submit(spec_files["sequential"], "preference", parent,
                                                        "sequential")
            merged["sequential"] = merge_deltas.submit(spec_files["sequential"], parent, "sequential",
                                                       wait_for=[trained["sequential"]])
        scores = {name: evaluate_variant.submit(spec_files[name], name, merged.get(name), parent)
                  for name in variants.names(spec)}
        decision = approved(spec, promote(spec, merged["paft"], scores["paft"]), parent)
        summary = report(spec, parent, folder, scores, merged, trained, decision)
    except BaseException as error:
        end_after(error, spec, parent)
        raise
    close_parent_run(spec, parent, "FINISHED", summary["metrics"])
    return summary
