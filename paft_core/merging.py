"""The merge stage: stream the base checkpoint and the deltas into a merged HF checkpoint, with a report.

Every input is checked from file headers before a tensor is merged: shapes against the base, adapter
variants, NaN/Inf in LoRA factors, the base each branch was trained on, free disk. The model is written to
`.model.tmp` and renamed when whole, and `complete.json` comes last, so a crash never leaves a folder that
looks finished. Memory holds one base tensor and its deltas at a time, not one model per input.
Weights are written in `merge.dtype` ("base": each tensor as the base stores it, byte for byte where no
delta touches it); the report measures what that cast rounds away of the merged delta (report.py).
"""

import ctypes
import json
import os
import shutil
import time
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager, nullcontext
from dataclasses import replace
from pathlib import Path

import torch

from paft_core import checkpoint, deltas, files, models, plots, stage, tracking_process
from paft_core.config import PipelineRun
from paft_core.errors import DataError, OutputError
from paft_core.lora_export import Exporter
from paft_core.merge import Recipe, combine
from paft_core.model_card import write_card
from paft_core.report import Collector, rounding
from paft_core.sparsify import Magnitudes

BRANCHES = ("sft", "preference")
FLOATING = ("F64", "F32", "F16", "BF16")  # what merge.dtype casts; FP8 and integer tensors keep their bytes
OUTPUT_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
LOST_WARNING = 0.01  # a delta losing more of its merged L1 mass than this to the cast gets one line
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # mallopt parameters, from glibc's malloc.h
MAX_WORKERS = 4  # modules merged at once; each holds a base tensor, its deltas and masks in memory
WEIGHT_FILES = (".safetensors", ".bin", ".pt", ".pth", ".gguf")
SKIPPED = {"model.safetensors.index.json", "pytorch_model.bin.index.json", "README.md",
           models.FINGERPRINT_FILE}


def run(spec: PipelineRun, out: Path | None = None, helper: tracking_process.Helper | None = None) -> Path:
    """Merge the spec's deltas into its base model; return the stage folder (reused when complete).

    The MLflow run is kept by `helper`: the caller's, started earlier still, or one started and stopped here.
    """
    with nullcontext(helper) if helper else tracking_process.Helper() as helper:
        return _run(spec, out, helper)


def _run(spec: PipelineRun, out: Path | None, helper: tracking_process.Helper) -> Path:
    base = models.resolve(spec.model)
    reader = checkpoint.Reader(base.path)
    inputs = [_locate(spec, name, base.fingerprint) for name in spec.merge.deltas]
    opened = [deltas.open_delta(path, label, reader) for label, path, _ in inputs]
    _check(opened, reader)
    reads = {"model": base.fingerprint, "merge": spec.merge.model_dump(by_alias=True),
             "deltas": {label: fingerprint for label, _, fingerprint in inputs}}
    out = Path(out) if out else stage.default_folder("merge", reads)
    if stage.claim(out, "merge", reads) == "complete":
        print(f"paft: merge already complete in {out}; reusing it", flush=True)
        return out
    _check_disk(out, sum(entry.nbytes for entry in _layout(reader, spec.merge.dtype).values()) * 1.05)
    tags = {"paft.base_model": base.source, "paft.base_fingerprint": base.fingerprint,
            "paft.output": str(out)}
    with helper.stage_run(spec.tracking, "merge", reads, tags) as tracked:
        summary = _merge(spec, base, reader, opened, out, reads, tracked.raise_if_failed)
        tracked.call("log_merge", str(out), summary)
        stage.finish(out, {"run_id": tracked.run_id, "model": "model", **summary})
    return out


def _merge(spec: PipelineRun, base: models.ResolvedModel, reader: checkpoint.Reader, opened: list,
           out: Path, reads: dict, tracking_ok: Callable[[], None]) -> dict[str, float]:
    """Write model/, report.json, plots/ (and lora/) into the stage folder; return the summary figures.

    `tracking_ok` runs after each tensor: a store that could not be opened stops the merge there.
    """
    started = time.perf_counter()
    recipe = Recipe.from_spec(spec.merge)
    collector = Collector([delta.label for delta in opened])
    exporter = (Exporter(spec.merge.lora_rank, deltas.conv1d_weights(reader)) if spec.merge.lora_rank
                else None)
    layout = _layout(reader, spec.merge.dtype)
    dtypes = _dtype_names(layout, layout)

    def write(folder: Path) -> None:
        folder.mkdir(parents=True)
        _copy_side_files(base.path, folder)
        _record_dtype(folder, spec.merge.dtype)
        tensors = _merged_tensors(reader, layout, opened, recipe, collector, exporter)
        checkpoint.write(folder, layout, tensors, on_tensor=lambda _: tracking_ok())
        write_card(folder, base, reads, collector.summary(), dtypes)

    stage.publish(out, "model", write)
    report = {**collector.to_dict(), "dtype": dtypes}
    files.write_json_atomic(out / "report.json", report)
    plots.write_all(report, out / "plots")
    summary = {**collector.summary(), "seconds": time.perf_counter() - started,
               "modules": float(len(collector.modules))}
    if exporter:
        stage.publish(out, "lora", lambda folder: exporter.write(folder, str(base.path)))
        summary["lora_relative_error"] = exporter.relative_error()
    _warn_if_rounded_away(summary, collector.labels, _dtype_names(layout, collector.modules))
    return summary


def _merged_tensors(reader: checkpoint.Reader, layout: dict[str, checkpoint.Entry], opened: list,
                    recipe: Recipe, collector: Collector, exporter: Exporter | None):
    """Yield (name, value) for every base tensor in order: merged where a delta changes it, else as is.

    Modules are merged by worker threads, each on one torch thread (on 2 cores, 1.7× faster than one
    module at a time on two), at most `workers + 1` ahead of the writer so memory stays bounded.
    Every tensor is written in its `layout` dtype: an untouched one is cast only when that differs.
    """
    changes = [set(delta.targets()) for delta in opened]

    def work(name: str) -> tuple:
        tensor = reader.get(name)
        raw = [_finite(delta, name, delta.delta(name, tensor)) if name in changed
               else torch.zeros_like(tensor, dtype=torch.float32)  # e.g. a norm only a full fine-tune moved
               for delta, changed in zip(opened, changes, strict=True)]
        magnitudes = [Magnitudes(delta) for delta in raw]
        merged, kept = combine(recipe, name, raw, magnitudes)
        factored = exporter.factor(name, merged) if exporter and exporter.covers(name, merged) else None
        total = tensor.float() + merged
        written = total.to(checkpoint.DTYPES[layout[name].dtype])
        measured = collector.measure(raw, magnitudes, kept, rounding(merged, total, written, tensor))
        return written, measured, factored

    def cast(name: str) -> tuple:
        return reader.get(name).to(checkpoint.DTYPES[layout[name].dtype]), None, None

    workers = min(MAX_WORKERS, os.cpu_count() or 1)
    with (_torch_threads(1 if workers > 1 else torch.get_num_threads()), _heap_keeps_freed_blocks(),
          ThreadPoolExecutor(workers) as pool):
        pending: deque = deque()
        for name in reader.names():
            if any(name in changed for changed in changes):
                pending.append((name, pool.submit(work, name)))
            else:
                same = layout[name] is reader.entries[name]
                pending.append((name, reader.entries[name] if same else pool.submit(cast, name)))
            while len(pending) > workers or (pending and not isinstance(pending[0][1], Future)):
                yield _collect(pending.popleft(), collector, exporter)
        while pending:
            yield _collect(pending.popleft(), collector, exporter)


def _collect(item: tuple, collector: Collector, exporter: Exporter | None) -> tuple:
    """Wait for one module's result and record its figures, in checkpoint order."""
    name, value = item
    if not isinstance(value, Future):
        return name, value  # an untouched tensor: copied byte for byte, never loaded
    tensor, measured, factored = value.result()
    if measured is not None:  # None: an untouched tensor cast to merge.dtype
        collector.record(name, measured)
    if factored:
        exporter.record(factored)
    return name, tensor


@contextmanager
def _torch_threads(count: int):
    """Run torch ops on `count` intra-op threads, then restore the previous setting."""
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@contextmanager
def _heap_keeps_freed_blocks():
    """Let glibc reuse freed blocks of up to 32 MiB instead of unmapping them, then give the memory back.

    Each module allocates and frees a dozen temporaries of a few MiB. By default glibc maps large blocks
    afresh and unmaps them on free, so every temporary costs its size in page faults: measured on
    SmolLM2, the merge loop spent more time in the kernel than in arithmetic (mallopt(3)).
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc (macOS, musl): nothing to tune
        libc = None
    if not (libc and hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim")):
        yield
        return
    libc.mallopt(M_MMAP_THRESHOLD, 32 << 20)
    libc.mallopt(M_TRIM_THRESHOLD, 128 << 20)
    try:
        yield
    finally:
        libc.mallopt(M_TRIM_THRESHOLD, 128 << 10)  # glibc's defaults
        libc.mallopt(M_MMAP_THRESHOLD, 128 << 10)
        libc.malloc_trim(0)


def _finite(delta, name: str, value: torch.Tensor) -> torch.Tensor:
    """Refuse a delta that holds NaN or Inf (LoRA factors were checked up front; a checkpoint streams)."""
    if isinstance(delta, deltas.FullDelta) and not torch.isfinite(value).all():
        raise DataError(f"{delta.path}: delta '{delta.label}' holds NaN or Inf in {name}")
    return value


def _locate(spec: PipelineRun, name: str, base_fingerprint: str) -> tuple[str, Path, str]:
    """A delta named in the spec: a finished branch of this run, or a folder; (label, path, fingerprint)."""
    if name in BRANCHES:
        folder = stage.default_folder(name, stage.branch_reads(spec, name))
        if not (folder / stage.DONE).is_file():
            raise DataError(f"merge.deltas: branch '{name}' has no finished adapter (expected in {folder}); "
                            f"run `paft train {name} CONFIG` first")
        path, label = folder / "adapter", name
    else:
        path = Path(name).expanduser()
        if not path.is_dir():
            raise DataError(f"merge.deltas: {name} is not a branch ({', '.join(BRANCHES)}) or a folder")
        label = path.name if path.name != "adapter" else path.parent.name
    _check_trained_on(path, label, base_fingerprint)
    return label, path, _fingerprint(path)


def _check_trained_on(path: Path, label: str, base_fingerprint: str) -> None:
    """Refuse an adapter whose stage folder records another base model than the one being merged into."""
    owner = path.parent / stage.OWNER
    recorded = json.loads(owner.read_text()).get("inputs", {}).get("model") if owner.is_file() else None
    if recorded and recorded != base_fingerprint:
        raise DataError(f"{path}: delta '{label}' was trained on base {recorded[:12]}, not on this spec's "
                        f"base {base_fingerprint[:12]}; merge it into the model it was trained on")


def _fingerprint(path: Path) -> str:
    """Content hash of a delta: adapter config and weights, or a full checkpoint's fingerprint."""
    if (path / deltas.ADAPTER_CONFIG).is_file():
        parts = [files.sha256(path / deltas.ADAPTER_CONFIG), files.sha256(path / deltas.ADAPTER_WEIGHTS)]
        return files.sha256_text("".join(parts))
    return models.fingerprint(path)


def _check(opened: list, reader: checkpoint.Reader) -> None:
    """Everything that can be checked before the first tensor is merged."""
    deltas.check_against_base(opened, reader)
    for delta in opened:
        if isinstance(delta, deltas.LoraDelta):
            delta.check_finite()


def _check_disk(out: Path, needed: float) -> None:
    """Refuse to start a merge the disk cannot hold."""
    free = shutil.disk_usage(out).free
    if free < needed:
        raise OutputError(f"{out}: {free / 2**30:.1f} GiB free, the merged model needs "
                          f"{needed / 2**30:.1f} GiB; free space or choose another output folder")


def _layout(reader: checkpoint.Reader, dtype: str) -> dict[str, checkpoint.Entry]:
    """The merged checkpoint's tensors: the base's, with floating ones in `dtype` unless it is "base"."""
    if dtype == "base":
        return reader.entries
    code = checkpoint.CODES[OUTPUT_DTYPES[dtype]]
    return {name: replace(entry, dtype=code) if entry.dtype in FLOATING and entry.dtype != code else entry
            for name, entry in reader.entries.items()}


def _dtype_names(layout: dict[str, checkpoint.Entry], names: Iterable[str]) -> str:
    """The floating dtypes the named tensors are written in, for people: e.g. "bfloat16, float32"."""
    found = {str(checkpoint.DTYPES[layout[name].dtype]).removeprefix("torch.") for name in names
             if layout[name].dtype in FLOATING}
    return ", ".join(sorted(found))


def _warn_if_rounded_away(summary: dict[str, float], labels: list[str], dtype: str) -> None:
    """One line when the cast to the output dtype rounds away more than LOST_WARNING of any delta."""
    shares = {label: summary[f"{label}/cast_lost_l1_share"] for label in labels}
    if max(summary["cast/lost_l1_share"], *shares.values()) <= LOST_WARNING:
        return
    each = ", ".join(f"{label} {share:.0%}" for label, share in shares.items())
    print(f"paft: {dtype} output rounds away {summary['cast/lost_l1_share']:.0%} of the merged delta's L1 "
          f"mass ({each}); merge.dtype: float32 keeps it", flush=True)


def _record_dtype(folder: Path, dtype: str) -> None:
    """Make the copied config.json name merge.dtype (transformers 5 reads `dtype`, 4.x `torch_dtype`)."""
    config = folder / "config.json"
    if dtype == "base" or not config.is_file():
        return
    values = json.loads(config.read_text())
    values.update(dict.fromkeys([key for key in ("dtype", "torch_dtype") if key in values] or ["dtype"],
                                dtype))
    config.write_text(json.dumps(values, indent=2, sort_keys=True) + "\n")


def _copy_side_files(source: Path, target: Path) -> None:
    """Config, generation config, tokenizer and chat template: every small file but weights and caches."""
    for path in sorted(source.iterdir()):
        if path.is_file() and path.suffix not in WEIGHT_FILES and path.name not in SKIPPED:
            shutil.copy2(path, target / path.name)
