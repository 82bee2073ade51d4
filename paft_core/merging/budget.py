"""A byte budget that threads draw on together: what the merge's worker threads may keep in memory at once."""

import threading
from collections.abc import Iterator
from contextlib import contextmanager


class Budget:
    """Bytes held by the threads that were granted a share, all together."""

    def __init__(self) -> None:
        self.lock, self.used = threading.Lock(), 0

    @contextmanager
    def reserve(self, nbytes: int, limit: int) -> Iterator[bool]:
        """Yield whether `nbytes` fit under `limit` beside what the others hold; hold them until the end."""
        with self.lock:
            granted = self.used + nbytes <= limit
            self.used += nbytes if granted else 0
        try:
            yield granted
        finally:
            with self.lock:
                self.used -= nbytes if granted else 0
