"""Leadership by lease row: portable across SQLite and PostgreSQL, and self-healing.

The holder renews its lease well before it expires; if it dies, the lease runs out and a
standby takes over. Acquiring is one conditional UPDATE (or the first INSERT), so two
processes can never both believe they hold it.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import Engine, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from digestbot.store.models import Lease


def acquire(engine: Engine, name: str, holder: str, now: datetime, ttl: timedelta) -> bool:
    """Take or renew the lease ``name`` for ``holder``; True if it is ours until now + ttl."""
    with Session(engine) as session, session.begin():
        taken = session.execute(
            update(Lease)
            .where(Lease.name == name, or_(Lease.holder == holder, Lease.expires_at < now))
            .values(holder=holder, expires_at=now + ttl)
        ).rowcount
        if taken:
            return True
        if session.scalar(select(Lease.name).where(Lease.name == name)) is not None:
            return False
    try:
        with Session(engine) as session, session.begin():
            session.add(Lease(name=name, holder=holder, expires_at=now + ttl))
        return True
    except IntegrityError:  # someone else created it first
        return False


def release(engine: Engine, name: str, holder: str) -> None:
    """Give the lease up at once (a clean shutdown), so a standby need not wait for expiry."""
    with Session(engine) as session, session.begin():
        session.execute(
            update(Lease).where(Lease.name == name, Lease.holder == holder)
            .values(expires_at=datetime(1970, 1, 1).astimezone())
        )


def holder_of(engine: Engine, name: str, now: datetime) -> str | None:
    with Session(engine) as session:
        lease = session.get(Lease, name)
        return lease.holder if lease is not None and lease.expires_at >= now else None
