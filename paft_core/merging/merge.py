"""The merge stage: stream the base checkpoint and the deltas into a merged HF checkpoint, with a report.

Every input is checked from file headers before a tensor is merged: shapes against the base, adapter
variants, NaN/Inf in LoRA factors, the base each branch was trained on, free disk. Everything the stage
produces (model/, report.json, plots/, lora/, complete.json) is written into a scratch folder beside the
stage folder and published by one rename when whole, so a crash or a full disk never leaves a folder that
looks finished, and a re-run starts clean. Each changed tensor is merged in blocks of rows (blocks.py), so
memory holds a few blocks per worker thread whatever the model's size.
Weights are written in `merge.dtype` ("base": each tensor as the base stores it, byte for byte where no
delta touches it); the report measures what that cast rounds away of the merged delta (report.py).
"""

import errno
import json
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, nullcontext
from dataclasses import replace
from pathlib import Path

import torch

from paft_core import files, models, stage
from paft_core.config import PipelineRun
from paft_core.errors import DataError, OutputError
from paft_core.merge_config import PLACEMENT
from paft_core.merging import blocks, checkpoint, deltas, kernels, methods, on_device
from paft_core.merging.card import copy_side_files, record_dtype, write_card
from paft_core.merging.lora_export import Exporter
from paft_core.merging.methods import Recipe
from paft_core.merging.report import Collector
from paft_core.ops import tracking_helper

FLOATING = ("F64", "F32", "F16", "BF16")  # what merge.dtype casts; FP8 and integer tensors keep their bytes
OUTPUT_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
LOST_WARNING = 0.01  # a delta losing more of its merged L1 mass than this to the cast gets one line
MAX_WORKERS = 4  # tensors merged at once; each holds a few blocks of its base and deltas


def run(spec: PipelineRun, out: Path | None = None, helper: tracking_helper.Helper | None = None) -> Path:
    """Merge the spec's deltas into its base model; return the stage folder (reused when complete).

    The MLflow run is kept by `helper`: the caller's, started earlier still, or one started and stopped here.
    """
    with nullcontext(helper) if helper else tracking_helper.Helper() as helper:
        return _run(spec, out, helper)


def _run(spec: PipelineRun, out: Path | None, helper: tracking_helper.Helper) -> Path:
    threading.Thread(target=_prepare_in_background).start()
    base = models.resolve(spec.model)
    _require_safetensors(base.path)
    reader = checkpoint.Reader(base.path)
    inputs = [_locate(spec, name, base.fingerprint) for name in spec.merge.deltas]
    opened = [deltas.open_delta(path, label, reader) for label, path, _ in inputs]
    _check(opened, reader)
    device = on_device.chosen(spec.merge.device)
    reads = {"model": base.fingerprint, "merge": spec.merge.model_dump(by_alias=True, exclude=PLACEMENT),
             "deltas": {label: fingerprint for label, _, fingerprint in inputs}}
    out = Path(out) if out else stage.default_folder("merge", reads)
    if stage.claim(out, "merge", reads) == "complete":
        print(f"paft: merge already complete in {out}; reusing it", flush=True)
        return out
    scratch = _clear_leftovers(out)  # an interrupted attempt's files must not count against the disk
    _check_disk(out, sum(entry.nbytes for entry in _layout(reader, spec.merge.dtype).values()) * 1.05)
    tags = {"paft.base_model": base.source, "paft.base_fingerprint": base.fingerprint,
            "paft.output": str(out)}
    with helper.stage_run(spec.tracking, "merge", reads, tags) as tracked:
        try:
            scratch.mkdir()
            summary = _merge(spec, base, reader, opened, scratch, reads, tracked.raise_if_failed, device)
            tracked.call("log_merge", str(scratch), summary)
            files.write_json_atomic(scratch / stage.DONE, {"run_id": tracked.run_id, "model": "model",
                                                           **summary})
            _publish(scratch, out)
            stage.release(out)
        except OSError as error:
            if error.errno != errno.ENOSPC:
                raise
            raise OutputError(f"{out}: the disk filled up while the merge wrote its output; nothing was "
                              "published: free space and run the merge again") from None
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    return out


def _merge(spec: PipelineRun, base: models.ResolvedModel, reader: checkpoint.Reader, opened: list,
           folder: Path, reads: dict, tracking_ok: Callable[[], None],
           device: torch.device) -> dict[str, float]:
    """Write model/, report.json, plots/ (and lora/) into `folder`; return the summary figures.

    `tracking_ok` runs after each tensor: a store that could not be opened stops the merge there.
    """
    started = time.perf_counter()
    recipe = Recipe.from_spec(spec.merge)
    collector = Collector([delta.label for delta in opened])
    exporter = (Exporter(spec.merge.lora_rank, deltas.conv1d_weights(reader)) if spec.merge.lora_rank
                else None)
    layout = _layout(reader, spec.merge.dtype)
    dtypes = _dtype_names(layout, layout)
    model = folder / "model"
    model.mkdir()
    copy_side_files(base.path, model)
    record_dtype(model, spec.merge.dtype)
    _write_weights(model, reader, layout, opened, recipe, collector, exporter, tracking_ok, device)
    write_card(model, base, reads, collector.summary(), dtypes)
    report = {**collector.to_dict(), "dtype": dtypes}
    files.write_json_atomic(folder / "report.json", report)
    from paft_core.merging import plots  # imported by then, in the background

    plots.write_all(report, folder / "plots")
    summary = {**collector.summary(), "seconds": time.perf_counter() - started,
               "modules": float(len(collector.modules))}
    if exporter:
        exporter.write(folder / "lora", str(base.path))
        summary["lora_relative_error"] = exporter.relative_error()
    _warn_if_rounded_away(summary, collector.labels, _dtype_names(layout, collector.modules))
    return summary


def _write_weights(folder: Path, reader: checkpoint.Reader, layout: dict[str, checkpoint.Entry],
                   opened: list, recipe: Recipe, collector: Collector, exporter: Exporter | None,
                   tracking_ok: Callable[[], None], device: torch.device) -> None:
    """Merge every changed tensor in blocks, copy or cast the rest, straight to their place in the shards.

    Tensors are merged by worker threads, each on one torch thread (on 2 cores, 1.7× faster than one
    tensor at a time on two); their figures are recorded in checkpoint order, so sums are reproducible.
    """
    changes = [set(delta.targets()) for delta in opened]
    labels = tuple(delta.label for delta in opened)
    layers = methods.count_layers(reader.names())
    writer = checkpoint.Writer(folder, layout)

    def work(name: str) -> tuple | None:
        dtype = checkpoint.SAFETENSORS_DTYPES[layout[name].dtype]
        if not any(name in changed for changed in changes):
            if layout[name] is reader.entries[name]:
                writer.copy(name, reader.entries[name])  # byte for byte, never loaded
            else:
                blocks.cast(reader, name, dtype, writer)
            return None
        chosen = tuple(delta if name in changed else None
                       for delta, changed in zip(opened, changes, strict=True))
        module = blocks.Module(name, reader, dtype, chosen, labels, layers)
        keep = bool(exporter) and exporter.covers(name, torch.empty(layout[name].shape, device="meta"))
        measured, merged = (blocks.run(module, recipe, writer, keep=keep) if device.type == "cpu" else
                            on_device.run(module, recipe, writer, device, keep=keep))
        return measured, exporter.factor(name, merged) if keep else None

    workers = min(MAX_WORKERS, os.cpu_count() or 1)
    with _torch_threads(1 if workers > 1 else torch.get_num_threads()), ThreadPoolExecutor(workers) as pool:
        try:
            _record_in_order([(name, pool.submit(work, name)) for name in reader.names()], collector,
                             exporter, tracking_ok)
        except BaseException:
            pool.shutdown(cancel_futures=True)  # a failed tensor stops the merge, not only its own work
            raise
        finally:
            writer.close()


def _prepare_in_background() -> None:
    """While the inputs are checked: load the kernels' machine code, import the plots' matplotlib."""
    try:
        kernels.warm_up()
        import paft_core.merging.plots  # noqa: F401
    except Exception:  # noqa: BLE001 - the merge calls the same code and reports what fails there
        return


def _record_in_order(futures: list, collector: Collector, exporter: Exporter | None,
                     tracking_ok: Callable[[], None]) -> None:
    """Each merged tensor's figures (and LoRA factors) as it finishes, in checkpoint order."""
    for name, future in futures:
        result = future.result()
        if result is not None:
            collector.record(name, result[0])
            if result[1]:
                exporter.record(result[1])
        tracking_ok()


def _require_safetensors(folder: Path) -> None:
    """The merge streams safetensors only: say so for a base with only pickle weights (allow_pickle)."""
    if folder.is_dir() and not any(folder.glob("*.safetensors")):
        raise DataError(f"model.source: {folder} has only pickle weights; `paft merge` reads safetensors "
                        "only (model.allow_pickle lets training and eval load them): convert the base first")


def _clear_leftovers(out: Path) -> Path:
    """Remove what an interrupted merge left (scratch folder, an older layout's parts); return the scratch."""
    scratch = out.parent / f".{out.name}.tmp"
    shutil.rmtree(scratch, ignore_errors=True)
    for leftover in (path for path in out.iterdir() if path.name != stage.OWNER):
        if leftover.is_dir():
            shutil.rmtree(leftover)
        else:
            leftover.unlink()
    return scratch


def _publish(scratch: Path, out: Path) -> None:
    """Replace the claimed stage folder by the finished scratch folder in one rename."""
    shutil.copy2(out / stage.OWNER, scratch / stage.OWNER)
    (out / stage.OWNER).unlink()  # the folder is now empty: rename(2) replaces an empty folder atomically
    os.rename(scratch, out)


@contextmanager
def _torch_threads(count: int):
    """Run torch ops on `count` intra-op threads, then restore the previous setting."""
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _locate(spec: PipelineRun, name: str, base_fingerprint: str) -> tuple[str, Path, str]:
    """A delta named in the spec: a finished branch of this run, or a folder; (label, path, fingerprint)."""
    if name in stage.BRANCHES:
        folder = stage.default_folder(name, stage.branch_reads(spec, name))
        if not (folder / stage.DONE).is_file():
            raise DataError(f"merge.deltas: branch '{name}' has no finished adapter (expected in {folder}); "
                            f"run `paft train {name} CONFIG` first")
        path, label = folder / "adapter", name
    else:
        path = Path(name).expanduser()
        if not path.is_dir():
            raise DataError(f"merge.deltas: {name} is not a branch ({', '.join(stage.BRANCHES)}) or a folder")
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
    found = {str(checkpoint.SAFETENSORS_DTYPES[layout[name].dtype]).removeprefix("torch.") for name in names
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
