"""A stage's output folder: who owns it, whether it is finished, and atomic writes into it.

Layout: `stage.json` (stage, spec, identity, input fingerprints) is written first, trainer checkpoints
go to `checkpoints/`, the product (e.g. `adapter/`) is renamed into place when whole, and
`complete.json` is written last. A folder without `complete.json` is interrupted and can resume.
"""

import fcntl
import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Literal, get_args

from paft_core import paths
from paft_core.errors import OutputError
from paft_core.files import write_json_atomic

State = Literal["new", "interrupted", "complete"]
Branch = Literal["sft", "preference"]  # PAFT's two branches, trained in parallel from one base
BRANCHES: tuple[Branch, ...] = get_args(Branch)
OWNER = "stage.json"
DONE = "complete.json"
_HELD: dict[Path, object] = {}  # stage folder locks this process holds, open until it exits


def identity(stage: str, spec: dict) -> str:
    """SHA-256 of the stage name and the spec fields it reads, in canonical JSON."""
    text = json.dumps({"stage": stage, "spec": spec}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def default_folder(stage: str, spec: dict) -> Path:
    """Where a stage's output lives unless the user names a folder: .paft/stages/<stage>-<identity>."""
    return paths.stages() / f"{stage}-{identity(stage, spec)[:12]}"


# What `l1.target: lora` penalises: SFT folders trained under another objective are not reused.
L1_OBJECTIVE = "lora: |B| + |A - A0|"


def branch_reads(run, branch: str) -> dict:
    """The spec fields a training branch reads: the base model and the branch's own section."""
    section = getattr(run, branch).model_dump()
    # How a branch is spread over processes is no part of what it learns (processes > 1 is: a larger batch);
    # left out at one process, folders trained before these fields existed keep their identity.
    del section["train"]["strategy"]
    if section["train"]["processes"] == 1:
        del section["train"]["processes"]
    reads = {"model": run.model.model_dump(), branch: section}
    if branch == "sft" and run.sft.l1.strength:
        reads["l1_objective"] = L1_OBJECTIVE
    return reads


def claim(out: Path, stage: str, spec: dict) -> State:
    """Take `out` for this stage and spec; refuse a folder that belongs to anything else.

    The folder stays locked to this process until `finish` (or the process's end): a second process
    claiming it waits, then finds it complete (and reuses it) or interrupted (and resumes it), never
    writing it at the same time.
    """
    _lock(out)
    key = identity(stage, spec)
    owner = out / OWNER
    if owner.is_file():
        recorded = json.loads(owner.read_text())
        if recorded.get("identity") != key:
            state = "a finished" if (out / DONE).is_file() else "an interrupted"
            raise OutputError(f"{out} holds {state} {recorded.get('stage')} run of a different spec; "
                              "choose another output folder or remove that one yourself")
        if (out / DONE).is_file():
            release(out)  # nothing left to write: others may read it at once
            return "complete"
        return "interrupted"
    if out.exists() and any(out.iterdir()):
        raise OutputError(f"{out} is not empty and is not a paft stage folder; choose another output folder")
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(owner, {"stage": stage, "identity": key, "spec": spec, "inputs": {}})
    return "new"


def _lock(out: Path) -> None:
    """Hold `.<folder>.lock` beside `out` for the rest of this process; wait while another holds it."""
    path = out.parent / f".{out.name}.lock"
    if path in _HELD:
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    handle = path.open("a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "another process"
        print(f"paft: {out} is being written by pid {holder}; waiting for it to finish", flush=True)
        fcntl.flock(handle, fcntl.LOCK_EX)  # the kernel releases it when that process ends, even on SIGKILL
    handle.seek(0)
    handle.truncate()
    handle.write(str(os.getpid()))
    handle.flush()
    _HELD[path] = handle


def release(out: Path) -> None:
    """Let another process claim `out` (a stage that failed keeps its lock until its process ends)."""
    handle = _HELD.pop(out.parent / f".{out.name}.lock", None)
    if handle is not None:
        handle.close()  # closing the file releases the flock


def check_inputs(out: Path, inputs: dict[str, str]) -> None:
    """Record input fingerprints; refuse to resume on inputs that changed since the folder began."""
    owner = out / OWNER
    recorded = json.loads(owner.read_text())
    for name, value in inputs.items():
        before = recorded["inputs"].get(name)
        if before is not None and before != value:
            raise OutputError(f"{out}: {name} changed since this run began ({before[:12]} → {value[:12]}); "
                              "choose another output folder")
    recorded["inputs"] = {**recorded["inputs"], **inputs}
    write_json_atomic(owner, recorded)


def publish(out: Path, name: str, write) -> Path:
    """Call write(tmp_folder), then rename it to out/name, so a crash never leaves half a product."""
    target, tmp = out / name, out / f".{name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    write(tmp)
    shutil.rmtree(target, ignore_errors=True)  # an earlier attempt's product, never marked complete
    tmp.replace(target)
    return target


def finish(out: Path, result: dict) -> None:
    """Mark the stage complete; from now on the folder is only read (and no longer locked)."""
    write_json_atomic(out / DONE, result)
    release(out)



def recorded(out: Path) -> dict:
    """What a complete stage folder recorded when it finished (its MLflow run id, ...); {} if unfinished."""
    done = out / DONE
    return json.loads(done.read_text()) if done.is_file() else {}
