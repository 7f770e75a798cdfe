"""When is a dump file complete? When it has stopped changing for DIGESTBOT_SETTLE_SECONDS.

A file's modification time alone cannot say so: on a network file system it is set by another
machine's clock, which may run ahead of ours (a file "modified in the future" would then wait
forever) or behind it. So what counts is what digestbot itself observes: a file is settled once
its size and mtime have stayed the same for the settle time, measured from the earlier of its
mtime and when digestbot first saw it as it is now. A file whose mtime is old enough is settled
at first sight, as before; one whose mtime is in the future settles once digestbot has seen it
unchanged for the settle time.
"""

from __future__ import annotations

from datetime import datetime
from typing import NamedTuple


class Look(NamedTuple):
    """A file's size and modification time as digestbot saw them, and when it looked."""

    size: int
    mtime_ns: int
    at: datetime

    def same_file(self, other: Look) -> bool:
        """Whether ``other`` saw the file as this look did (when aside)."""
        return self.size == other.size and self.mtime_ns == other.mtime_ns

    @property
    def mtime(self) -> float:
        return self.mtime_ns / 1e9

    def in_future(self) -> bool:
        """Whether the file's mtime is later than when it was looked at (another clock runs ahead)."""
        return self.mtime > self.at.timestamp()


def settled(first: Look, now: datetime, settle_seconds: float) -> bool:
    """Whether a file seen as ``first`` (its earliest look with the same size and mtime) and still
    the same at ``now`` has stopped changing: ``settle_seconds`` have passed since the earlier of
    its mtime and ``first.at``. With a settle time of 0, always."""
    if settle_seconds <= 0:
        return True
    return min(first.mtime, first.at.timestamp()) + settle_seconds <= now.timestamp()
