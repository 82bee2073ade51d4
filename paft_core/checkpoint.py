"""Safetensors checkpoints read and written one tensor at a time, so memory holds one tensor, not a model.

Reading copies one tensor's bytes from its offset straight into a new tensor (one `preadv`, no memory
map: a mapped shard keeps every page it touched resident, and parsing its header per tensor costs more
than the read). Writing lays out each shard's header from the shapes and dtypes known up front, then
streams the tensors' bytes in order (the format is a length, a JSON header and the raw bytes:
https://github.com/huggingface/safetensors#format).
"""

import json
import os
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from paft_core.errors import DataError

INDEX = "model.safetensors.index.json"
SINGLE = "model.safetensors"
DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
          "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
          "U16": torch.uint16, "U32": torch.uint32, "U64": torch.uint64, "BOOL": torch.bool,
          "F8_E4M3": torch.float8_e4m3fn, "F8_E5M2": torch.float8_e5m2}
CODES = {dtype: code for code, dtype in DTYPES.items()}


@dataclass(frozen=True)
class Entry:
    """One tensor of a checkpoint: where it lives, its dtype code and shape."""

    file: Path
    dtype: str
    shape: tuple[int, ...]
    start: int = 0  # byte offset of the data in `file`

    @property
    def nbytes(self) -> int:
        """Size of the tensor's data in bytes."""
        return DTYPES[self.dtype].itemsize * _numel(self.shape)


class Reader:
    """The tensors of a safetensors file or sharded checkpoint folder, by name, loaded on demand."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.entries = {name: entry for file in _files(self.path) for name, entry in _header(file).items()}

    def names(self) -> list[str]:
        """Tensor names in file order, as the checkpoint stores them."""
        return list(self.entries)

    def get(self, name: str) -> torch.Tensor:
        """Load one tensor into memory, leaving nothing of its file open or mapped."""
        entry = self.entries[name]
        tensor = torch.empty(entry.shape, dtype=DTYPES[entry.dtype])
        buffer = memoryview(tensor.reshape(-1).view(torch.uint8).numpy())
        descriptor = os.open(entry.file, os.O_RDONLY)
        try:
            done = 0
            while done < entry.nbytes:  # at most 1 GiB a call: some systems refuse larger reads
                read = os.preadv(descriptor, [buffer[done:done + (1 << 30)]], entry.start + done)
                if read == 0:
                    raise DataError(f"{entry.file}: ends inside tensor {name}; the file is truncated")
                done += read
        finally:
            os.close(descriptor)
        return tensor

    def nbytes(self) -> int:
        """Total size of the tensors' data."""
        return sum(entry.nbytes for entry in self.entries.values())


def _files(path: Path) -> list[Path]:
    """The safetensors files of a checkpoint: a single file, a folder's one file, or its index's shards."""
    if path.is_file():
        return [path]
    if (path / INDEX).is_file():
        shards = json.loads((path / INDEX).read_text())["weight_map"].values()
        return [path / shard for shard in dict.fromkeys(shards)]
    if (path / SINGLE).is_file():
        return [path / SINGLE]
    found = sorted(path.glob("*.safetensors"))
    if not found:
        raise FileNotFoundError(f"{path}: no .safetensors weights")
    return found


def _header(file: Path) -> dict[str, Entry]:
    """Parse a safetensors header without touching the tensor data."""
    with file.open("rb") as handle:
        (length,) = struct.unpack("<Q", handle.read(8))
        header = json.loads(handle.read(length))
    header.pop("__metadata__", None)
    data = 8 + length
    entries = {}
    for name, meta in header.items():
        if meta["dtype"] not in DTYPES:
            raise DataError(f"{file}: tensor {name} has dtype {meta['dtype']}; "
                            f"readable dtypes: {', '.join(DTYPES)}")
        begin, end = meta["data_offsets"]
        entries[name] = Entry(file, meta["dtype"], tuple(meta["shape"]), data + begin)
        if end - begin != entries[name].nbytes:
            raise DataError(f"{file}: tensor {name} holds {end - begin} bytes, but its dtype and shape "
                            f"need {entries[name].nbytes}; the file is corrupt")
    promised = data + max((meta["data_offsets"][1] for meta in header.values()), default=0)
    if file.stat().st_size < promised:
        raise DataError(f"{file}: {file.stat().st_size} bytes, its header promises {promised}; "
                        "the file is truncated (an interrupted copy or download?)")
    return entries


def write(folder: Path, layout: dict[str, Entry], tensors: Iterator[tuple[str, torch.Tensor | Entry]],
          shard_bytes: int = 5 << 30, on_tensor: Callable[[str], None] | None = None) -> list[str]:
    """Stream named tensors into HF-style shards of at most `shard_bytes`; return the shard names.

    A value that is an Entry of another checkpoint is copied byte for byte, in blocks, never loaded whole.
    """
    shards = _plan_shards(layout, shard_bytes)
    names = [_shard_name(index, len(shards)) for index in range(len(shards))]
    weight_map = {}
    for shard_name, members in zip(names, shards, strict=True):
        with (folder / shard_name).open("wb") as handle:
            handle.write(_encode_header({name: layout[name] for name in members}))
            for expected in members:
                name, value = next(tensors)
                if isinstance(value, Entry):
                    _copy_bytes(handle, name, expected, layout[name], value)
                else:
                    _write_tensor(handle, name, expected, layout[name], value)
                weight_map[name] = shard_name
                if on_tensor:
                    on_tensor(name)
    if len(names) > 1:
        total = sum(entry.nbytes for entry in layout.values())
        index = {"metadata": {"total_size": total}, "weight_map": weight_map}
        (folder / INDEX).write_text(json.dumps(index, indent=2))
    return names


def _write_tensor(handle, name: str, expected: str, entry: Entry, tensor: torch.Tensor) -> None:
    """Append one tensor's bytes after checking it is the one the header promised."""
    if name != expected or tuple(tensor.shape) != entry.shape or CODES[tensor.dtype] != entry.dtype:
        raise ValueError(f"tensor {name} {tuple(tensor.shape)} {tensor.dtype} does not match the header's "
                         f"{expected} {entry.shape} {entry.dtype}")
    data = tensor.detach().cpu().contiguous().reshape(-1)
    handle.write(data.view(torch.uint8).numpy())  # the buffer itself: no copy of a large tensor


def _copy_bytes(handle, name: str, expected: str, entry: Entry, source: Entry) -> None:
    """Append a tensor's bytes straight from its source file, 16 MiB at a time."""
    if name != expected or (source.dtype, source.shape) != (entry.dtype, entry.shape):
        raise ValueError(f"tensor {name} {source.shape} {source.dtype} does not match the header's "
                         f"{expected} {entry.shape} {entry.dtype}")
    with source.file.open("rb") as origin:
        origin.seek(source.start)
        left = source.nbytes
        while left:
            block = origin.read(min(left, 16 << 20))
            handle.write(block)
            left -= len(block)


def _plan_shards(layout: dict[str, Entry], shard_bytes: int) -> list[list[str]]:
    """Split the tensors, in order, into shards no larger than `shard_bytes` (one tensor may exceed it)."""
    shards, size = [[]], 0
    for name, entry in layout.items():
        if shards[-1] and size + entry.nbytes > shard_bytes:
            shards.append([])
            size = 0
        shards[-1].append(name)
        size += entry.nbytes
    return shards


def _encode_header(layout: dict[str, Entry]) -> bytes:
    """Length-prefixed JSON header with data offsets, padded to 8 bytes as the format recommends."""
    header, offset = {"__metadata__": {"format": "pt"}}, 0
    for name, entry in layout.items():
        header[name] = {"dtype": entry.dtype, "shape": list(entry.shape),
                        "data_offsets": [offset, offset + entry.nbytes]}
        offset += entry.nbytes
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text


def _shard_name(index: int, count: int) -> str:
    """HF's shard names: model.safetensors, or model-00001-of-00003.safetensors."""
    return SINGLE if count == 1 else f"model-{index + 1:05d}-of-{count:05d}.safetensors"


def _numel(shape: tuple[int, ...]) -> int:
    count = 1
    for size in shape:
        count *= size
    return count
