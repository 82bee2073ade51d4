"""File helpers shared by stages and model caches: content hashes and atomic writes."""

import hashlib
import json
from collections.abc import Callable
from pathlib import Path


def sha256(path: Path) -> str:
    """Hex SHA-256 of a file, read in 8 MiB blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(8 << 20):
            digest.update(block)
    return digest.hexdigest()


def write_json_atomic(path: Path, value: object) -> None:
    """Write JSON to a temp file and rename it, so readers never see half a file."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(value, indent=2, sort_keys=True))
    tmp.replace(path)


def publish_file(path: Path, write: Callable[[str], None]) -> None:
    """Let `write` fill a temp file beside `path`, then rename it: readers never see half a file."""
    tmp = path.with_name(f".{path.name}.tmp")
    write(str(tmp))
    tmp.replace(path)


def sha256_text(text: str) -> str:
    """Hex SHA-256 of a string."""
    return hashlib.sha256(text.encode()).hexdigest()


def utf8_text(path: Path, where: str, error: type[Exception]) -> str:
    """A file's text; bytes that are not UTF-8 raise `error` naming `where`, the line and the byte."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data[:err.start].count(b"\n") + 1
        kind = "a parquet file; name it .parquet" if data.startswith(b"PAR1") else "not UTF-8 text"
        raise error(f"{where}: line {line}: byte 0x{data[err.start]:02x}: the file is {kind}") from None
