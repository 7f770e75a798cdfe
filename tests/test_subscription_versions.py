"""Change tracking that cannot be forgotten (issue 11), on SQLite and PostgreSQL.

One live ``SubscriptionMatcher`` sees every change made to subscriptions, whichever service
made it; a write that would move no version is refused; a database recreated at the same URL
is noticed. What the matcher holds is compared with the subscriptions as stored, read directly.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select, text, update
from sqlalchemy.orm import Session

from digestbot.core.schedule import parse_schedule
from digestbot.services.feedback import apply_sendgrid_events
from digestbot.services.matching import SubscriptionMatcher
from digestbot.services.subscriptions import (
    confirm, delete, edit, import_subscriptions, set_active, set_paused, subscribe, unsubscribe, unsubscribe_owned,
    unsubscribe_recipient,
)
from digestbot.store import Counter, Recipient, Store, Subscription, migrate
from digestbot.store.subscriptions import UnversionedChange

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
LATER = NOW + timedelta(hours=1)


def stored_active(engine: Engine) -> dict[int, str]:
    """Active subscription id → query, read from the table."""
    with Session(engine) as session:
        rows = session.execute(select(Subscription.id, Subscription.query).where(Subscription.active.is_(True)))
        return dict(rows.all())


def counter(engine: Engine) -> int:
    with Session(engine) as session:
        return session.scalar(select(Counter.value).where(Counter.name == "subscriptions")) or 0


def synced(store: Store, matcher: SubscriptionMatcher) -> int:
    """One sync, as an ingest makes it (in a transaction of its own); how many changes it applied."""
    with store.transaction() as tx:
        return matcher.sync(tx)


@dataclass
class World:
    """Subscriptions of every state, and the recipients' ids the self-service functions take."""

    store: Store
    engine: Engine
    ids: dict[str, int]  # name → subscription id
    owner: dict[str, int]  # name → recipient id


@pytest.fixture
def world(engine: Engine) -> World:
    store = Store(engine)
    ids, owner = {}, {}
    for name, recipient, query, pending in [
        ("alice1", "alice@example.org", "diffusion", False),
        ("alice2", "alice@example.org", "transformer", False),
        ("bob", "bob@example.org", "robot*", False),
        ("carol", "carol@example.org", "gaussian splatting", True),  # waits for her click
        ("dave", "dave@example.org", "video generation", False),
    ]:
        sub, _ = subscribe(store, recipient, query, schedule=parse_schedule(), pending=pending, now=NOW)
        ids[name], owner[name] = sub.id, sub.recipient_id
    set_active(store, ids["dave"], False, NOW)  # paused from the command line
    return World(store, engine, ids, owner)


def _import(w: World) -> None:
    report = import_subscriptions(w.store, "recipient,query\nerin@example.org,llm\nalice@example.org,mamba\n", LATER)
    assert report.imported == 2


def _sendgrid(kind: str) -> Callable[[World], None]:
    def act(w: World) -> None:
        event = {"event": kind, "email": "bob@example.org", "sg_event_id": f"{kind}-1", "reason": "550 unknown"}
        report = apply_sendgrid_events(w.store, [event], LATER)
        assert report.as_json()["suspended" if kind == "bounce" else "unsubscribed"] == ["bob@example.org"]
    return act


SCHEDULE = parse_schedule("weekly", "07:00", "fri", "Europe/Paris")

# name → (the mutation, through a public service; what the active set becomes: added, removed by name)
MUTATIONS: dict[str, tuple[Callable[[World], object], dict[str, str], set[str]]] = {
    "create": (lambda w: subscribe(w.store, "erin@example.org", "llm", schedule=SCHEDULE, now=LATER),
               {"erin": "llm"}, set()),
    "create pending": (lambda w: subscribe(w.store, "erin@example.org", "llm", schedule=SCHEDULE, pending=True,
                                           now=LATER), {}, set()),
    "edit the query": (lambda w: edit(w.store, w.owner["alice1"], w.ids["alice1"], query="diffusion model",
                                      schedule=SCHEDULE, now=LATER), {"alice1": "diffusion model"}, {"alice1"}),
    "edit the schedule": (lambda w: edit(w.store, w.owner["alice1"], w.ids["alice1"], query="diffusion",
                                         schedule=SCHEDULE, now=LATER), {}, set()),
    "pause": (lambda w: set_paused(w.store, w.owner["alice1"], w.ids["alice1"], True, LATER), {}, {"alice1"}),
    "resume": (lambda w: set_paused(w.store, w.owner["dave"], w.ids["dave"], False, LATER),
               {"dave": "video generation"}, set()),
    "confirm": (lambda w: confirm(w.store, w.owner["carol"], [w.ids["carol"]], LATER),
                {"carol": "gaussian splatting"}, set()),
    "delete": (lambda w: delete(w.store, w.owner["alice2"], w.ids["alice2"], LATER), {}, {"alice2"}),
    "unsubscribe": (lambda w: unsubscribe(w.store, w.ids["bob"], LATER), {}, {"bob"}),
    "unsubscribe link": (lambda w: unsubscribe_owned(w.store, w.owner["alice1"], [w.ids["alice1"]], LATER),
                         {}, {"alice1"}),
    "unsubscribe a recipient": (lambda w: unsubscribe_recipient(w.store, "alice@example.org", LATER),
                                {}, {"alice1", "alice2"}),
    "pause from the command line": (lambda w: set_active(w.store, w.ids["bob"], False, LATER), {}, {"bob"}),
    "sendgrid unsubscribe": (_sendgrid("unsubscribe"), {}, {"bob"}),
    # A suspension (a bounce) stops mail, not matching: digests skip the recipient, its
    # subscriptions stay active and keep matching (a confirmation click lifts it).
    "sendgrid bounce suspends": (_sendgrid("bounce"), {}, set()),
    "import": (_import, {"erin": "llm", "alice3": "mamba"}, set()),
}
UNCHANGED = {"edit the schedule", "create pending", "sendgrid bounce suspends"}  # the active set stays as it was


@pytest.mark.parametrize("name", list(MUTATIONS))
def test_a_live_matcher_sees_every_change_of_subscriptions(world: World, name: str) -> None:
    matcher = SubscriptionMatcher()
    synced(world.store, matcher)
    before = matcher.active()
    assert before == stored_active(world.engine)
    assert set(before.values()) == {"diffusion", "transformer", "robot*"}

    act, added, removed = MUTATIONS[name]
    act(world)
    applied = synced(world.store, matcher)

    truth = stored_active(world.engine)
    assert matcher.active() == truth
    by_query = {query: sid for sid, query in truth.items()}
    want = {sid: q for sid, q in before.items() if sid not in {world.ids.get(n) for n in removed}}
    want |= {world.ids[n] if n in world.ids else by_query[q]: q for n, q in added.items()}
    assert truth == want
    assert (truth == before) == (name in UNCHANGED)
    assert matcher.version == counter(world.engine)  # seen up to the latest change
    if name == "sendgrid bounce suspends":
        assert applied == 0  # no subscription changed: nothing for a matcher to see
        with Session(world.engine) as session:
            assert session.scalar(select(Recipient.suspended_at).where(Recipient.address == "bob@example.org"))
    else:
        assert applied >= 1
    # A matcher made now agrees with the live one.
    fresh = SubscriptionMatcher()
    synced(world.store, fresh)
    assert fresh.active() == matcher.active() and fresh.version == matcher.version


def test_a_change_made_without_any_service_moves_the_version(world: World) -> None:
    """The version moves when the session flushes, whoever changed the row."""
    matcher = SubscriptionMatcher()
    synced(world.store, matcher)
    with Session(world.engine) as session, session.begin():
        session.get(Subscription, world.ids["bob"]).query = "robot* -survey"
    assert synced(world.store, matcher) == 1
    assert matcher.active()[world.ids["bob"]] == "robot* -survey"

    # Setting the value a column already has changes nothing, and moves nothing.
    with Session(world.engine) as session, session.begin():
        session.get(Subscription, world.ids["bob"]).active = True
    assert synced(world.store, matcher) == 0


def test_a_bulk_write_that_moves_no_version_is_refused(world: World) -> None:
    before = counter(world.engine)
    refused = [
        lambda s: s.execute(update(Subscription).values(active=False)),
        lambda s: s.execute(update(Subscription).where(Subscription.id == world.ids["bob"]).values(query="x")),
        lambda s: s.execute(update(Subscription), [{"id": world.ids["bob"], "active": False}]),
        lambda s: s.connection().exec_driver_sql("UPDATE subscriptions SET active = false"),
        lambda s: s.execute(text("update subscriptions set query = 'x'")),
        lambda s: s.execute(text("DELETE FROM subscriptions")),
    ]
    for write in refused:
        with pytest.raises(UnversionedChange), Session(world.engine) as session, session.begin():
            write(session)
    assert counter(world.engine) == before
    assert stored_active(world.engine) == {world.ids[n]: q for n, q in
                                           [("alice1", "diffusion"), ("alice2", "transformer"), ("bob", "robot*")]}

    # Bookkeeping the matchers never read (digests' progress) needs no version; a write that sets one passes.
    matcher = SubscriptionMatcher()
    synced(world.store, matcher)
    with Session(world.engine) as session, session.begin():
        session.get(Subscription, world.ids["bob"]).digested_until = LATER
        session.execute(update(Subscription).where(Subscription.id == world.ids["alice1"])
                        .values(digested_until=LATER))
    assert synced(world.store, matcher) == 0 and counter(world.engine) == before
    with Session(world.engine) as session, session.begin():
        session.execute(update(Subscription).where(Subscription.id == world.ids["bob"])
                        .values(active=False, version=before + 1))
    assert synced(world.store, matcher) == 1 and world.ids["bob"] not in matcher.active()


def test_versions_come_from_the_counter_only(world: World) -> None:
    """One counter stamps every change: each change a new version, the import's rows one between them."""
    _import(world)
    unsubscribe(world.store, world.ids["bob"], LATER)
    with Session(world.engine) as session:
        versions = dict(session.execute(select(Subscription.id, Subscription.version)).all())
        latest = session.scalar(select(func.max(Subscription.version)))
        imported = session.scalars(select(Subscription.version).where(Subscription.created_at == LATER)).all()
    assert latest == counter(world.engine) == versions[world.ids["bob"]]
    assert len(imported) == 2 and len(set(imported)) == 1 and imported[0] < latest
    assert len(set(versions.values())) == len(versions) - 1  # only the two imported rows share one


def recreate(engine: Engine) -> None:
    """Drop the database and make it again at the same URL, as `digestbot init` on an empty one."""
    if engine.dialect.name == "postgresql":
        with engine.begin() as connection:
            schema = connection.scalar(text("select current_schema()"))
            connection.execute(text(f'drop schema "{schema}" cascade'))
            connection.execute(text(f'create schema "{schema}"'))
    else:
        engine.dispose()  # no connection keeps the old file open
        path = Path(engine.url.database)
        for gone in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
            gone.unlink(missing_ok=True)
    migrate(engine)


def test_a_live_matcher_notices_a_database_recreated_at_the_same_url(engine: Engine) -> None:
    store = Store(engine)
    for query in ("diffusion", "transformer"):
        subscribe(store, "alice@example.org", query, schedule=parse_schedule(), now=NOW)
    matcher = SubscriptionMatcher()
    synced(store, matcher)
    assert set(matcher.active().values()) == {"diffusion", "transformer"}
    old_version = matcher.version

    recreate(engine)
    assert stored_active(engine) == {}
    # More changes than the old database had, so that versions pass the matcher's: without the
    # database's id it would read only the newest and keep the old queries under ids 1 and 2.
    for query in ("llm", "robot*", "mamba", "video"):
        subscribe(store, "bob@example.org", query, schedule=parse_schedule(), now=LATER)
    assert counter(engine) > old_version

    synced(store, matcher)
    assert matcher.active() == stored_active(engine) == {1: "llm", 2: "robot*", 3: "mamba", 4: "video"}
    assert matcher.version == counter(engine)
