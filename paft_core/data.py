"""Load SFT and preference datasets, check every row's schema first, and fingerprint them.

SFT rows: `messages` (a conversation with an assistant turn) or `prompt` + `completion`.
Preference rows: `prompt` + `chosen` + `rejected`, each plain text or a list of chat messages; or
`chosen` + `rejected` conversations that both start with the prompt (TRL's implicit prompt, as in
UltraFeedback, whose extra text `prompt` column is then dropped).
Errors name the file, the row (1-based, the line number for .jsonl) and the field.
"""

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from paft_core import files, paths
from paft_core.config import DataSpec
from paft_core.errors import DataError
from paft_core.stage import Branch

LOCAL_SUFFIXES = (".jsonl", ".json", ".parquet")
ROLES = ("system", "user", "assistant", "tool")


@dataclass(frozen=True)
class LoadedData:
    """A validated dataset (a `datasets.Dataset`), where it came from, and a content fingerprint."""

    dataset: object
    origin: str
    fingerprint: str


def load(spec: DataSpec, kind: Branch) -> LoadedData:
    """Load and validate the dataset `spec` names, for the SFT or the preference branch."""
    from datasets import Dataset

    origin, rows = _read(spec, kind)
    if spec.limit is not None:
        rows = rows[: spec.limit]
    validate(rows, kind, origin)
    if kind == "preference":
        rows = [_implicit_prompt(row) for row in rows]
    digest = hashlib.sha256(json.dumps(rows, sort_keys=True, default=str).encode()).hexdigest()
    return LoadedData(Dataset.from_list(rows), origin, digest)


def validate(rows: list[dict], kind: Branch, origin: str) -> None:
    """Raise DataError on the first row whose fields do not fit `kind`'s schema."""
    if not rows:
        raise DataError(f"{origin}: dataset is empty; {kind} training needs at least one row")
    check = _check_sft_row if kind == "sft" else _check_preference_row
    for number, row in enumerate(rows, start=1):
        if not isinstance(row, dict):
            raise DataError(f"{origin}: row {number}: expected an object of fields, got {type(row).__name__}")
        problem = check(row)
        if problem:
            raise DataError(f"{origin}: row {number}: {problem}")
    if kind == "preference" and all(row["chosen"] == row["rejected"] for row in rows):
        raise DataError(f"{origin}: chosen equals rejected in every row; nothing to prefer")


def _read(spec: DataSpec, kind: Branch) -> tuple[str, list[dict]]:
    source = spec.source
    if source == "demo":
        path = paths.DEMO_DATA / f"{kind}.jsonl"
        return _relative(path), _read_file(path)
    path = Path(source).expanduser()
    if path.suffix in LOCAL_SUFFIXES:
        if not path.is_file():
            raise DataError(f"{source}: data file not found")
        return source, _read_file(path)
    if path.exists():
        raise DataError(f"{source}: unsupported data file; use .jsonl, .json or .parquet")
    return source, _read_hub(source, spec.split)


def _read_file(path: Path) -> list[dict]:
    if path.suffix == ".jsonl":
        rows = []
        for number, line in enumerate(_text(path).splitlines(), start=1):
            if line.strip():
                rows.append(_parse_json(line, f"{_relative(path)}: line {number}"))
        return rows
    if path.suffix == ".json":
        rows = _parse_json(_text(path), _relative(path))
        if not isinstance(rows, list):
            raise DataError(f"{_relative(path)}: expected a JSON list of rows")
        return rows
    import pyarrow.parquet as pq

    try:
        return pq.read_table(path).to_pylist()
    except Exception as err:  # pyarrow raises several types for corrupt files
        raise DataError(f"{_relative(path)}: not a readable parquet file ({err})") from None


def _text(path: Path) -> str:
    """A JSON or JSON Lines file's text, or one line naming the byte that is not UTF-8."""
    return files.utf8_text(path, _relative(path), DataError)


def _parse_json(text: str, where: str) -> object:
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise DataError(f"{where}: malformed JSON ({err.msg} at column {err.colno})") from None


def _read_hub(repo_id: str, split: str) -> list[dict]:
    from datasets import load_dataset

    try:
        return load_dataset(repo_id, split=split).to_list()
    except Exception as err:  # datasets raises many types; the first line says what went wrong
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise DataError(f"{repo_id}: cannot load split '{split}' from the hub or cache ({first}); "
                        "give a local .jsonl/.json/.parquet file to work offline") from None


def _relative(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _check_sft_row(row: dict) -> str | None:
    if "messages" in row:
        return _check_messages(row["messages"], "messages", need_assistant=True)
    for field in ("prompt", "completion"):
        if field not in row:
            return f"field '{field}' is missing; SFT rows need 'messages' or 'prompt' and 'completion'"
    return _check_text_pair(row, ("prompt", "completion"))


def _check_preference_row(row: dict) -> str | None:
    for field in ("chosen", "rejected"):
        if field not in row:
            return f"field '{field}' is missing; preference rows need prompt, chosen, rejected"
    if _is_implicit(row):
        return _check_text_pair(row, ("chosen", "rejected"))
    if "prompt" not in row:
        return "field 'prompt' is missing; preference rows need prompt, chosen, rejected"
    return _check_text_pair(row, ("prompt", "chosen", "rejected"))


def _is_implicit(row: dict) -> bool:
    """chosen and rejected are conversations that carry the prompt turns themselves."""
    chosen = row.get("chosen")
    return (isinstance(chosen, list) and isinstance(row.get("rejected"), list) and bool(chosen)
            and isinstance(chosen[0], dict) and chosen[0].get("role") in ("system", "user")
            and not isinstance(row.get("prompt"), list))


def _implicit_prompt(row: dict) -> dict:
    return {k: v for k, v in row.items() if k != "prompt"} if _is_implicit(row) else row


def _check_text_pair(row: dict, fields: tuple[str, ...]) -> str | None:
    """Each field is a non-empty string, or each is a list of chat messages."""
    conversational = isinstance(row[fields[0]], list)
    for field in fields:
        value = row[field]
        if conversational:
            problem = _check_messages(value, field, need_assistant=field != "prompt")
            if problem:
                return problem
        elif not isinstance(value, str) or not value.strip():
            return f"field '{field}' must be non-empty text (or, in every field, a list of messages)"
    return None


def _check_messages(messages: object, field: str, need_assistant: bool) -> str | None:
    if not isinstance(messages, list) or not messages:
        return f"field '{field}' must be a non-empty list of {{role, content}} messages"
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in ROLES:
            return f"field '{field}[{index}]' needs a role among {', '.join(ROLES)}"
        if not isinstance(message.get("content"), str):
            return f"field '{field}[{index}].content' must be text"
    if need_assistant and not any(m["role"] == "assistant" for m in messages):
        return f"field '{field}' has no assistant message to learn from"
    return None
