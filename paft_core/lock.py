"""One pipeline run per project folder at a time: a second `paft run` is refused, never interleaved."""

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager

from paft_core import paths
from paft_core.errors import PaftError


class RunLocked(PaftError):
    """Another `paft run` holds this project folder's lock."""


@contextmanager
def exclusive(name: str = "run.lock") -> Iterator[None]:
    """Hold `.paft/<name>` for the duration; refuse at once when another process holds it."""
    paths.home().mkdir(parents=True, exist_ok=True)
    path = paths.home() / name
    with path.open("a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise RunLocked(f"another paft run (pid {holder}) is using {paths.home()}; wait for it to end "
                            "or set PAFT_HOME to another folder") from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        try:
            yield
        finally:
            handle.seek(0)
            handle.truncate()  # the lock itself goes with the process, even on SIGKILL
            fcntl.flock(handle, fcntl.LOCK_UN)
