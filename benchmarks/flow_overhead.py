"""Orchestration overhead of the Prefect flow, and what running the two branches in parallel buys.

    .venv/bin/python benchmarks/flow_overhead.py                  # tiny model: flow vs the same stages direct
    .venv/bin/python benchmarks/flow_overhead.py --what branches  # embedded default: parallel vs sequential

Tiny (tests/tiny.py's random Llama, the flow tests' fast evaluation): the `paft` stage commands the flow
runs (validate, model, train sft ‖ train preference, merge, eval of the merged model), called directly with
the branches concurrent as in the flow, against `paft run CONFIG` on Prefect's ephemeral API (the default:
it starts a temporary server) and against a Prefect server already running. Each variant gets a fresh
PAFT_HOME, so nothing is reused; variants are interleaved when repeated. The flow's own time is its MLflow
parent run (start to end), without process start and Prefect start-up.

Branches (configs/pipeline/demo.yaml, SmolLM2-135M, one torch thread each as the spec says): `paft train
sft` and `paft train preference` at once, against one after the other, into fresh --out folders.
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRL_EXPERIMENTAL_SILENCE="1",
                  PREFECT_SERVER_ANALYTICS_ENABLED="false")

from paft_core import paths, servers  # noqa: E402
from paft_core.config import write_config  # noqa: E402
from tests import tiny  # noqa: E402

FAST_EVAL = {"source": "offline", "profile": "quick", "limit": 1, "max_gen_toks": 8, "bootstrap_iters": 0,
             "benchmarks": ["arc", "gsm8k"]}  # as in tests/flows: a few seconds of lm-eval


def paft(*arguments: str, env: dict[str, str]) -> subprocess.Popen:
    """Start one `paft` command from the project root."""
    return subprocess.Popen([sys.executable, "-m", "paft", *arguments], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def finish(*processes: subprocess.Popen) -> None:
    """Wait for every process; stop with its last error line if one failed."""
    for process in processes:
        _, err = process.communicate()
        if process.returncode:
            sys.exit(f"benchmark: {' '.join(process.args[3:5])} failed: {err.strip().splitlines()[-1:]}")


def timed(*commands: tuple[str, ...], env: dict[str, str]) -> float:
    """Run the commands at once; return the wall time until the last one ends."""
    start = time.perf_counter()
    finish(*(paft(*command, env=env) for command in commands))
    return time.perf_counter() - start


def direct(config: str, env: dict[str, str]) -> dict[str, float]:
    """The flow's stages as plain `paft` commands, branches concurrent; per-stage and total wall."""
    stages = {"validate": timed(("validate", config), env=env), "model": timed(("model", config), env=env),
              "train sft ‖ preference": timed(("train", "sft", config), ("train", "preference", config),
                                              env=env)}
    merged = Path(env["PAFT_HOME"]) / "merged"
    stages["merge"] = timed(("merge", config, "--out", str(merged)), env=env)
    stages["eval"] = timed(("eval", config, "--model", str(merged / "model")), env=env)
    return {**stages, "total": sum(stages.values())}


def flow(config: str, env: dict[str, str]) -> dict[str, float]:
    """`paft run CONFIG`: its process wall time and the flow's own (its MLflow parent run)."""
    total = timed(("run", config), env=env)
    client, runs = tiny.tracked_runs(Path(env["PAFT_HOME"]), "bench")
    (parent,) = [run for run in runs if run.data.tags.get("paft.stage") == "pipeline"]
    return {"flow body": (parent.info.end_time - parent.info.start_time) / 1000, "total": total}


def tiny_overhead(repeats: int) -> None:
    """Direct stages against the flow, ephemeral and with a running server, interleaved."""
    scratch = Path(tempfile.mkdtemp(prefix="paft-flow-bench-"))
    corpus = tiny.corpus_from(paths.DEMO_DATA / "sft.jsonl", paths.DEMO_DATA / "preference.jsonl")
    spec = tiny.spec(tiny.build_model(scratch / "tiny", corpus), evaluation=FAST_EVAL,
                     tracking={"experiment": "bench"})
    config = write_config(spec, scratch / "spec.yaml")
    port = servers.free_port()
    base = {**os.environ, "PREFECT_HOME": str(scratch / "prefect")}
    base.pop("PREFECT_API_URL", None)
    log = scratch / "server.log"
    server = servers.start(_server_command(port), base, log)
    servers.wait_healthy(server, f"http://127.0.0.1:{port}/api/health", "Prefect server", log)
    variants = {"direct `paft` stages": (direct, {}),
                "`paft run`, ephemeral API": (flow, {}),
                "`paft run`, running server": (flow, {"PREFECT_API_URL": f"http://127.0.0.1:{port}/api"})}
    results: dict[str, list[dict[str, float]]] = {name: [] for name in variants}
    try:
        for repeat in range(repeats):
            for index, (name, (measure, extra)) in enumerate(variants.items()):
                env = {**base, **extra, "PAFT_HOME": str(scratch / f"home-{repeat}-{index}")}  # no reuse
                results[name].append(measure(str(config), env))
    finally:
        servers.stop(server)
    _print_tiny(results, repeats)


def _server_command(port: int) -> list[str]:
    from deployments.serve import server_command

    return server_command("127.0.0.1", port)


def _print_tiny(results: dict[str, list[dict[str, float]]], repeats: int) -> None:
    reference = statistics.median(r["total"] for r in results["direct `paft` stages"])
    print(f"\ntiny random Llama, 4 steps per branch, offline quick eval (arc, gsm8k, 1 item), {repeats} "
          f"interleaved repeat(s), load {os.getloadavg()[0]:.2f}\n")
    print("| variant | median wall (s) | per repeat (s) | minus direct (s) | parts (median, s) |")
    print("|---|---|---|---|---|")
    for name, runs in results.items():
        median = statistics.median(r["total"] for r in runs)
        parts = ", ".join(f"{key} {statistics.median(r[key] for r in runs):.1f}" for key in runs[0]
                          if key != "total")
        spread = ", ".join(f"{r['total']:.1f}" for r in runs)
        print(f"| {name} | {median:.1f} | {spread} | {median - reference:+.1f} | {parts} |")


def branches() -> None:
    """The embedded default's two branches at once, then one after the other, fresh folders each time."""
    scratch = Path(tempfile.mkdtemp(prefix="paft-branch-bench-"))
    env = {**os.environ, "PAFT_HOME": str(scratch / "home")}
    config = str(ROOT / "configs/pipeline/demo.yaml")
    timed(("model", config), env=env)  # the one-time GGUF conversion, outside both timings

    def train(branch: str, tag: str) -> tuple[str, ...]:
        return ("train", branch, config, "--out", str(scratch / f"{tag}-{branch}"))

    parallel = timed(train("sft", "par"), train("preference", "par"), env=env)
    sft = timed(train("sft", "seq"), env=env)
    preference = timed(train("preference", "seq"), env=env)
    print(f"\nembedded default (configs/pipeline/demo.yaml), load {os.getloadavg()[0]:.2f}\n")
    print("| variant | wall (s) |\n|---|---|")
    print(f"| both branches at once | {parallel:.1f} |")
    print(f"| one after the other (sft {sft:.1f} + preference {preference:.1f}) | {sft + preference:.1f} |")
    print(f"| speed-up | {(sft + preference) / parallel:.2f}× |")


def main() -> None:
    """Run the chosen measurements and print markdown tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--what", choices=["tiny", "branches"], default="tiny",
                        help="tiny: flow overhead (about 3 min); branches: parallel vs sequential (slow)")
    parser.add_argument("--repeats", type=int, default=1, help="interleaved repeats of the tiny variants")
    args = parser.parse_args()
    tiny_overhead(args.repeats) if args.what == "tiny" else branches()


if __name__ == "__main__":
    main()
