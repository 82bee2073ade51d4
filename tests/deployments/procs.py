"""What processes are alive, read from /proc: a server's children, the members of a session."""

from pathlib import Path


def children(pid: int) -> list[int]:
    """PIDs of the live children of `pid`."""
    return [int(stat.parent.name) for stat in Path("/proc").glob("[0-9]*/stat") if _field(stat, 1) == pid]


def session_members(*sessions: int) -> list[str]:
    """Command lines of the live (not zombie) processes in the given sessions."""
    return [command(int(stat.parent.name)) for stat in Path("/proc").glob("[0-9]*/stat")
            if _field(stat, 3) in sessions and _state(stat) != "Z"]


def command(pid: int) -> str:
    """The command line of `pid` ('' when it is gone)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _fields(stat: Path) -> list[str]:
    try:
        return stat.read_text().rsplit(")", 1)[1].split()  # state, ppid, pgrp, session, ...
    except OSError:
        return []


def _field(stat: Path, index: int) -> int | None:
    fields = _fields(stat)
    return int(fields[index]) if fields else None


def _state(stat: Path) -> str:
    return (_fields(stat) or ["?"])[0]
