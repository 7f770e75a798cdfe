"""Leadership by lease row: portable across SQLite and PostgreSQL, and self-healing.

The holder renews its lease well before it expires; if it dies, the lease runs out and a
standby takes over. Acquiring is one conditional UPDATE (or the first INSERT), so two
processes can never both believe they hold it (see ``Jobs.take_lease``).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from digestbot.store import Store


def acquire(store: Store, name: str, holder: str, now: datetime, ttl: timedelta) -> bool:
    """Take or renew the lease ``name`` for ``holder``; True if it is ours until now + ttl."""
    with store.transaction() as tx:
        return tx.jobs.take_lease(name, holder, now, ttl)


def release(store: Store, name: str, holder: str) -> None:
    """Give the lease up at once (a clean shutdown), so a standby need not wait for expiry."""
    with store.transaction() as tx:
        tx.jobs.release_lease(name, holder)


def holder_of(store: Store, name: str, now: datetime) -> str | None:
    with store.reading() as tx:
        return tx.jobs.lease_holder(name, now)
