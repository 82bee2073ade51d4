"""Wall time and peak RSS of `paft merge` (TIES, density 0.5) against the floor and against peft.

Usage (from the repo root, after `make run` has set up .venv; SmolLM2-135M, the embedded default):

    .venv/bin/python benchmarks/merge_speed.py --repeats 3 --peft-repeats 1
    .venv/bin/python benchmarks/merge_speed.py --size 1.7b --repeats 2 --mergekit-repeats 1

`--size 1.7b` or `7b`: a synthetic bf16 Llama checkpoint of that shape with two rank-16 adapters, built shard
by shard under .bench/ (merge_scale.py) and deleted afterwards (3.4 GB and 14.5 GB of disk); there peft is
skipped (it holds the model in float32 several times over: more memory than this machine has).

Four subjects, each in a fresh process, measured in the same run, in turn:
- floor: read the base checkpoint and write one of the same size (safetensors load_file + save_file);
- paft: the `paft merge CONFIG --out DIR` command itself, on two rank-8 adapters on every linear layer
  (report, plots and its MLflow run in a SQLite store included);
- peft: `add_weighted_adapter(..., "ties_svd")` + `merge_and_unload` + `save_pretrained` (135M only);
- mergekit 0.1.5: `mergekit-yaml` TIES (density 0.5, normalize) of `base+adapter` for each adapter, its own
  LoRA syntax (it merges each adapter into a copy of the base, then merges the copies), lazy unpickling, a
  fresh LoRA cache per run. Installed on first use into .bench/mergekit-venv (its transformers is not the
  project's). Skipped, with its estimate printed, where its measured peak RSS (MERGEKIT_RSS_PER_BYTE times
  the base checkpoint) would not fit the machine's available memory.
Per subject: the process's wall time, the work's time after imports (for paft: the merge, report and
plots, from its complete.json), the process's own peak RSS (wait4), and the peak of the RSS summed over
the process and its children (paft's MLflow helper), sampled from /proc every 20 ms.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SUBJECTS = ("floor", "paft", "peft", "mergekit")
MERGEKIT = ROOT / ".bench" / "mergekit-venv"
MERGEKIT_RSS_PER_BYTE = 4.3  # mergekit's peak RSS per byte of base checkpoint, measured at 1.7B (14.0 GiB)


def main() -> None:
    """Prepare the adapters once, run every subject `repeats` times in turn, print a Markdown table."""
    args = _arguments()
    (ROOT / ".bench").mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(dir=ROOT / ".bench") as scratch:
        scratch = Path(scratch)
        if args.size == "135m":
            _child_python(["prepare", str(scratch)])
            subjects = SUBJECTS
        else:
            _prepare_synthetic(args.size, scratch)
            subjects = ("floor", "paft", "mergekit")
        fewer = {"peft": args.peft_repeats, "mergekit": args.mergekit_repeats}  # the slow references
        subjects = tuple(subject for subject in subjects if fewer.get(subject, args.repeats) > 0
                         and (subject != "mergekit" or _mergekit_ready(scratch)))
        runs = {subject: [] for subject in subjects}
        for repeat in range(args.repeats):
            for subject in subjects:
                if repeat >= fewer.get(subject, args.repeats):
                    continue
                runs[subject].append(_measure(subject, scratch, repeat))
                print(f"{subject} repeat {repeat}: {runs[subject][-1]}", flush=True)
        base_mib = json.loads((scratch / "merge.json").read_text())["base_bytes"] / 2**20
    _print_table(runs, base_mib)


def _prepare_synthetic(size: str, scratch: Path) -> None:
    """merge_scale.py's checkpoint, adapters and spec, and the base's size for the table."""
    script = str(ROOT / "benchmarks" / "merge_scale.py")
    subprocess.run([sys.executable, script, "prepare", size, str(scratch)], check=True, cwd=ROOT,
                   env=_environment())
    sizes = {"base_bytes": sum(path.stat().st_size for path in (scratch / "base").glob("*.safetensors")),
             "base": str(scratch / "base"), "dtype": "bfloat16"}
    (scratch / "merge.json").write_text(json.dumps(sizes))


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--peft-repeats", type=int, default=1, help="repeats of the slow peft path")
    parser.add_argument("--mergekit-repeats", type=int, default=1, help="repeats of mergekit (0: skip it)")
    parser.add_argument("--size", choices=("135m", "1.7b", "7b"), default="135m",
                        help="SmolLM2-135M itself, or a synthetic bf16 checkpoint of that shape")
    return parser.parse_args()


def _measure(subject: str, scratch: Path, repeat: int) -> dict[str, float]:
    """Run one subject in its own process; return wall, work seconds and peak RSS in MiB."""
    out = scratch / f"{subject}-{repeat}"
    command = [sys.executable, __file__, "--child", subject, str(scratch), str(out)]
    if subject == "paft":  # the command itself, as a user runs it
        command = [sys.executable, "-m", "paft", "merge", str(scratch / "merge.yaml"), "--out",
                   str(out)]
    elif subject == "mergekit":
        command = _mergekit_command(scratch, out)
    elif (scratch / "base").is_dir():  # a synthetic checkpoint: read and write its shards
        script = str(ROOT / "benchmarks" / "merge_scale.py")
        command = [sys.executable, script, "floor", str(scratch / "base"), str(out)]
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, cwd=ROOT, env=_environment())
    peaks = [0]
    sampler = threading.Thread(target=_sample_tree_rss, args=(process.pid, peaks), daemon=True)
    sampler.start()
    stdout = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    sampler.join()
    if status != 0:
        raise SystemExit(f"{subject} failed with status {status}")
    if subject == "paft":
        work = json.loads((out / "complete.json").read_text())["seconds"]
    elif subject == "mergekit":
        work = wall  # it reports no time of its own
    else:
        work = json.loads(stdout.strip().splitlines()[-1])["seconds"]
    subprocess.run(["rm", "-rf", str(out)], check=True)
    return {"wall": wall, "work": work, "rss": usage.ru_maxrss / 1024, "tree_rss": peaks[0] / 1024}


def _sample_tree_rss(pid: int, peaks: list[int]) -> None:
    """Keep in peaks[0] the largest RSS (KiB) summed over `pid` and its descendants, until it exits."""
    status = Path(f"/proc/{pid}/status")
    while status.exists() and "\nState:\tZ" not in status.read_text():  # Z: exited, not yet reaped
        peaks[0] = max(peaks[0], _tree_rss(pid))
        time.sleep(0.02)


def _tree_rss(pid: int) -> int:
    """RSS (KiB) of a process and its descendants; 0 for one that is already gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        children = [int(child) for task in Path(f"/proc/{pid}/task").iterdir()
                    for child in (task / "children").read_text().split()]
    except (FileNotFoundError, ProcessLookupError):
        return 0
    own = next((int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:")), 0)
    return own + sum(_tree_rss(child) for child in children)


def _environment() -> dict[str, str]:
    offline = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    return {**os.environ, **offline, "PYTHONPATH": str(ROOT)}  # the project's model cache, converted once


def _child_python(arguments: list[str]) -> None:
    command = [sys.executable, __file__, "--child", *arguments]
    subprocess.run(command, check=True, cwd=ROOT, env=_environment())


def _print_table(runs: dict[str, list[dict[str, float]]], base_mib: float) -> None:
    """Medians per subject and the ratios the targets are stated in."""
    keys = ("wall", "work", "rss", "tree_rss")
    median = {subject: {key: statistics.median(run[key] for run in rows) for key in keys}
              for subject, rows in runs.items()}
    print("| subject | process wall (s) | work after imports (s) | peak RSS (MiB) | with children (MiB) |")
    print("| --- | --- | --- | --- | --- |")
    for subject, row in median.items():
        print(f"| {subject} | {row['wall']:.2f} | {row['work']:.2f} | {row['rss']:.0f} "
              f"| {row['tree_rss']:.0f} |")
    floor, paft = median["floor"], median["paft"]
    print(f"\npaft / floor: wall {paft['wall'] / floor['wall']:.2f}×, "
          f"work {paft['work'] / floor['work']:.2f}×")
    for reference in ("peft", "mergekit"):
        if reference in median:
            print(f"{reference} / paft: wall {median[reference]['wall'] / paft['wall']:.2f}×")
    print(f"paft peak RSS / base checkpoint ({base_mib:.0f} MiB): {paft['rss'] / base_mib:.2f}×, "
          f"with its MLflow helper {paft['tree_rss'] / base_mib:.2f}×")
    print(f"runs: {', '.join(f'{subject} {len(rows)}' for subject, rows in runs.items())}")


def _mergekit_ready(scratch: Path) -> bool:
    """Whether mergekit's estimated peak RSS fits the available memory (installed then; said when not)."""
    needed = MERGEKIT_RSS_PER_BYTE * json.loads((scratch / "merge.json").read_text())["base_bytes"]
    available = next(int(line.split()[1]) * 1024 for line in Path("/proc/meminfo").read_text().splitlines()
                     if line.startswith("MemAvailable:"))
    if needed > available:
        print(f"mergekit skipped: it would need about {needed / 2**30:.1f} GiB of RAM "
              f"({MERGEKIT_RSS_PER_BYTE}× the base checkpoint), {available / 2**30:.1f} GiB available")
        return False
    _install_mergekit()
    _write_mergekit_config(scratch)
    return True


def _install_mergekit() -> None:
    """mergekit 0.1.5 in its own venv under .bench/, once (it pulls another transformers than ours)."""
    if (MERGEKIT / "bin" / "mergekit-yaml").is_file():
        return
    print("installing mergekit 0.1.5 into .bench/mergekit-venv (once)", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(MERGEKIT)], check=True)
    packages = ["torch==2.13.0", "mergekit==0.1.5"]  # torch pinned: the CPU build, as the project's
    subprocess.run([str(MERGEKIT / "bin" / "pip"), "install", "--quiet", *packages], check=True)


def _write_mergekit_config(scratch: Path) -> None:
    """The same recipe for mergekit-yaml: TIES 0.5 with normalize, each adapter on the base by `+`."""
    facts = json.loads((scratch / "merge.json").read_text())
    base = facts["base"]
    models = [{"model": f"{base}+{scratch / name}", "parameters": {"weight": 1.0, "density": 0.5}}
              for name in ("sft", "preference")]
    config = {"merge_method": "ties", "base_model": base, "models": models,
              "parameters": {"normalize": True}, "dtype": facts["dtype"]}
    (scratch / "mergekit.json").write_text(json.dumps(config))  # YAML is a superset of JSON


def _mergekit_command(scratch: Path, out: Path) -> list[str]:
    """mergekit-yaml on the config written once, with a fresh LoRA cache inside this run's output."""
    return [str(MERGEKIT / "bin" / "mergekit-yaml"), str(scratch / "mergekit.json"), str(out),
            "--lora-merge-cache", str(out / "lora-cache"), "--lazy-unpickle", "--no-copy-tokenizer",
            "--quiet", "--no-write-model-card"]


# ---- children: each runs in a fresh interpreter ------------------------------------------------------


def _child(subject: str, scratch: Path, out: Path | None) -> None:
    """Run one subject and print {"seconds": work time after imports} as the last line."""
    from paft_core import models
    from paft_core.config import ModelSpec

    base = models.resolve(ModelSpec()).path
    work = {"prepare": _prepare, "floor": _floor, "peft": _peft}[subject]
    seconds = work(base, scratch, out)
    print(json.dumps({"seconds": seconds}), flush=True)


def _prepare(base: Path, scratch: Path, _out) -> float:
    """Two seeded rank-8 adapters on every linear layer, with B ≠ 0 as after training, and the spec."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from paft_core.config import PipelineRun, write_config

    for seed, name in enumerate(("sft", "preference")):
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_pretrained(base)
        config = LoraConfig(r=8, lora_alpha=16, target_modules="all-linear", init_lora_weights=False)
        get_peft_model(model, config).save_pretrained(scratch / name)
    merge = {"method": "ties", "density": 0.5, "deltas": [str(scratch / "sft"), str(scratch / "preference")]}
    tracking = {"tracking_uri": f"sqlite:///{scratch / 'mlflow.db'}", "experiment": "merge-benchmark"}
    write_config(PipelineRun.model_validate({"merge": merge, "tracking": tracking}), scratch / "merge.yaml")
    sizes = {"base_bytes": (base / "model.safetensors").stat().st_size, "base": str(base), "dtype": "float32"}
    (scratch / "merge.json").write_text(json.dumps(sizes))
    return 0.0


def _floor(base: Path, _scratch, out: Path) -> float:
    from safetensors.torch import load_file, save_file

    started = time.perf_counter()
    out.mkdir(parents=True)
    save_file(load_file(base / "model.safetensors"), out / "model.safetensors", metadata={"format": "pt"})
    return time.perf_counter() - started


def _peft(base: Path, scratch: Path, out: Path) -> float:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    started = time.perf_counter()
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base), scratch / "sft",
                                      adapter_name="sft")
    model.load_adapter(scratch / "preference", adapter_name="preference")
    model.add_weighted_adapter(["sft", "preference"], [1.0, 1.0], "merged", combination_type="ties_svd",
                               density=0.5)
    model.set_adapter("merged")
    model.merge_and_unload(adapter_names=["merged"]).save_pretrained(out)
    return time.perf_counter() - started


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        _child(sys.argv[2], Path(sys.argv[3]), Path(sys.argv[4]) if len(sys.argv) > 4 else None)
    else:
        main()
