"""Safetensors checkpoints read and written in blocks of rows, so memory holds a block, not a model.

Reading copies one tensor's bytes, or a block of its rows, from its offset straight into a new tensor
(one `preadv`, no memory map: a mapped shard keeps every page it touched resident, and parsing its header
per tensor costs more than the read). Writing lays out each shard's header from the shapes and dtypes
known up front, reserves the shard's space, then writes each tensor, or a block of its rows, at its own
offset (the format is a length, a JSON header and the raw bytes:
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
SAFETENSORS_DTYPES = {  # a safetensors header's dtype code → the torch dtype it stores
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
    "U16": torch.uint16, "U32": torch.uint32, "U64": torch.uint64, "BOOL": torch.bool,
    "F8_E4M3": torch.float8_e4m3fn, "F8_E5M2": torch.float8_e5m2}
CODES = {dtype: code for code, dtype in SAFETENSORS_DTYPES.items()}
CHUNK = 1 << 30  # bytes per read or write call: some systems refuse larger ones
HEADER_LIMIT = 100 << 20  # safetensors caps its JSON header at 100 MB; a larger length is a damaged file


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
        return SAFETENSORS_DTYPES[self.dtype].itemsize * _numel(self.shape)

    @property
    def rows(self) -> int:
        """Length of the first dimension (1 for a scalar): what a block of rows counts in."""
        return self.shape[0] if self.shape else 1


class Reader:
    """The tensors of a safetensors file or sharded checkpoint folder, by name, loaded on demand."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.entries = {name: entry for file in _files(self.path) for name, entry in _header(file).items()}

    def names(self) -> list[str]:
        """Tensor names in file order, as the checkpoint stores them."""
        return list(self.entries)

    def get(self, name: str, rows: tuple[int, int] | None = None) -> torch.Tensor:
        """Load one tensor, or its rows [start, stop), leaving nothing of its file open or mapped."""
        entry = self.entries[name]
        start, stop = rows or (0, entry.rows)
        tensor = torch.empty((stop - start, *entry.shape[1:]) if rows else entry.shape,
                             dtype=SAFETENSORS_DTYPES[entry.dtype])
        buffer = memoryview(tensor.reshape(-1).view(torch.uint8).numpy())
        offset = entry.start + start * _row_bytes(entry)
        descriptor = os.open(entry.file, os.O_RDONLY)
        try:
            done = 0
            while done < len(buffer):
                read = os.preadv(descriptor, [buffer[done:done + CHUNK]], offset + done)
                if read == 0:
                    raise DataError(f"{entry.file}: ends inside tensor {name}; the file is truncated")
                done += read
        finally:
            os.close(descriptor)
        return tensor

    def nbytes(self) -> int:
        """Total size of the tensors' data."""
        return sum(entry.nbytes for entry in self.entries.values())


class Writer:
    """A checkpoint whose shards are laid out and reserved up front; tensors go to their own offsets.

    Every shard's space is allocated before the first tensor (a full disk fails there, not halfway), and
    tensors, or blocks of their rows, are written at their offsets: in any order, from any thread.
    """

    def __init__(self, folder: Path, layout: dict[str, Entry], shard_bytes: int = 5 << 30):
        self.layout, self.places, self.descriptors = layout, {}, []
        shards = _plan_shards(layout, shard_bytes)
        self.shards = [_shard_name(index, len(shards)) for index in range(len(shards))]
        for shard_name, members in zip(self.shards, shards, strict=True):
            header = _encode_header({name: layout[name] for name in members})
            descriptor = os.open(folder / shard_name, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
            self.descriptors.append(descriptor)
            os.posix_fallocate(descriptor, 0, len(header) + sum(layout[name].nbytes for name in members))
            _write_at(descriptor, memoryview(header), 0)
            offset = len(header)
            for name in members:
                self.places[name] = (descriptor, offset)
                offset += layout[name].nbytes
        if len(shards) > 1:
            weight_map = {name: shard for shard, members in zip(self.shards, shards, strict=True)
                          for name in members}
            index = {"metadata": {"total_size": sum(entry.nbytes for entry in layout.values())},
                     "weight_map": weight_map}
            (folder / INDEX).write_text(json.dumps(index, indent=2))

    def write(self, name: str, tensor: torch.Tensor, first_row: int = 0) -> None:
        """Write a whole tensor, or a block of its rows starting at `first_row`, where the header put it."""
        descriptor, offset = self.places[name]
        entry = self.layout[name]
        if first_row == 0 and tuple(tensor.shape) == entry.shape:
            _write_tensor(descriptor, name, name, entry, tensor, offset)
            return
        if (tuple(tensor.shape[1:]) != entry.shape[1:] or first_row + len(tensor) > entry.rows
                or CODES[tensor.dtype] != entry.dtype):
            raise ValueError(f"rows {first_row}… {tuple(tensor.shape)} {tensor.dtype} of tensor {name} do "
                             f"not fit the header's {entry.shape} {entry.dtype}")
        _write_at(descriptor, _bytes(tensor), offset + first_row * _row_bytes(entry))

    def copy(self, name: str, source: Entry) -> None:
        """Copy a tensor's bytes from another checkpoint's file, in the kernel: never loaded here."""
        entry = self.layout[name]
        if (source.dtype, source.shape) != (entry.dtype, entry.shape):
            raise ValueError(f"tensor {name} {source.shape} {source.dtype} does not match the header's "
                             f"{name} {entry.shape} {entry.dtype}")
        descriptor, offset = self.places[name]
        origin = os.open(source.file, os.O_RDONLY)
        try:
            done = 0
            while done < source.nbytes:
                copied = os.copy_file_range(origin, descriptor, min(source.nbytes - done, CHUNK),
                                            source.start + done, offset + done)
                if copied == 0:
                    raise DataError(f"{source.file}: ends inside tensor {name}; the file is truncated")
                done += copied
        finally:
            os.close(origin)

    def close(self) -> None:
        """Close the shards' files."""
        while self.descriptors:
            os.close(self.descriptors.pop())


def write(folder: Path, layout: dict[str, Entry], tensors: Iterator[tuple[str, torch.Tensor | Entry]],
          shard_bytes: int = 5 << 30, on_tensor: Callable[[str], None] | None = None) -> list[str]:
    """Write named tensors, in layout order, into HF-style shards of at most `shard_bytes`.

    A value that is an Entry of another checkpoint is copied byte for byte, never loaded.
    """
    writer = Writer(folder, layout, shard_bytes)
    try:
        for expected in layout:
            name, value = next(tensors)
            if name != expected:
                raise ValueError(f"tensor {name} arrived where the header expects {expected}")
            writer.copy(name, value) if isinstance(value, Entry) else writer.write(name, value)
            if on_tensor:
                on_tensor(name)
    finally:
        writer.close()
    return writer.shards


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
    try:
        with file.open("rb") as handle:
            (length,) = struct.unpack("<Q", handle.read(8))
            header = json.loads(handle.read(min(length, HEADER_LIMIT)))
    except (struct.error, ValueError):  # too short, or a header that is not JSON
        raise DataError(f"{file}: not a safetensors file (its header does not parse)") from None
    header.pop("__metadata__", None)
    data = 8 + length
    entries = {}
    for name, meta in header.items():
        if meta["dtype"] not in SAFETENSORS_DTYPES:
            raise DataError(f"{file}: tensor {name} has dtype {meta['dtype']}; "
                            f"readable dtypes: {', '.join(SAFETENSORS_DTYPES)}")
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


def _write_tensor(descriptor: int, name: str, expected: str, entry: Entry, tensor: torch.Tensor,
                  offset: int) -> None:
    """Write one whole tensor at its offset after checking it is the one the header promised."""
    if name != expected or tuple(tensor.shape) != entry.shape or CODES[tensor.dtype] != entry.dtype:
        raise ValueError(f"tensor {name} {tuple(tensor.shape)} {tensor.dtype} does not match the header's "
                         f"{expected} {entry.shape} {entry.dtype}")
    _write_at(descriptor, _bytes(tensor), offset)


def _bytes(tensor: torch.Tensor) -> memoryview:
    """A tensor's bytes as a flat buffer (no copy of a contiguous CPU tensor)."""
    return memoryview(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy())


def _write_at(descriptor: int, data: memoryview, offset: int) -> None:
    """All of `data` at `offset` (one call may write less than asked)."""
    done = 0
    while done < len(data):
        done += os.pwrite(descriptor, data[done:done + CHUNK], offset + done)


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


def _row_bytes(entry: Entry) -> int:
    """Bytes of one row (a scalar is one row of one element)."""
    return entry.nbytes // entry.rows if entry.rows else 0


def _numel(shape: tuple[int, ...]) -> int:
    count = 1
    for size in shape:
        count *= size
    return count
