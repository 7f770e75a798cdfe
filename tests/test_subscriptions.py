"""Subscriptions, matching and search as services, on SQLite and PostgreSQL (the ``engine`` fixture).

Every expected match is computed independently: ``digestbot.core.reference.evaluate`` (the plain
reference semantics) over the papers as stored, never by asking the matcher under test.
"""

from __future__ import annotations

import csv
import io
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from conftest import NAMES, copy_samples, write_dated
from digestbot.core.query import parse_query
from digestbot.core.reference import Document, evaluate
from digestbot.core.recipients import parse_recipient, shown
from digestbot.core.schedule import Schedule, parse_schedule
from digestbot.errors import NotFound, UsageError
from digestbot.services.ingest import FileResult, ingest_paths
from digestbot.services.matching import SubscriptionMatcher, papers_since, store_matches
from digestbot.services.search import search
from digestbot.services.subscriptions import (
    import_subscriptions, list_subscriptions, set_active, subscribe, subscribe_in, subscription_json, unsubscribe,
    unsubscribe_recipient,
)
from digestbot.store import Counter, Match, Paper, QueryMatch, Recipient, Store, Subscription, connect, migrate

NOW = datetime(2025, 12, 31, 12, 0, tzinfo=UTC)
MTIME = datetime(2025, 12, 1, 8, 0, tzinfo=UTC).timestamp()  # the copies were "saved" a month before NOW
NEW = [70, 61, 102, 42, 67]  # new papers per sample, ingested in order


# ---- helpers ----------------------------------------------------------------------------------

@pytest.fixture
def dumps(tmp_path: Path) -> Path:
    return copy_samples(tmp_path / "dumps", MTIME)


def ingest(engine: Engine, path: Path, now: datetime, matcher: SubscriptionMatcher | None = None) -> FileResult:
    (result,) = ingest_paths(Store(engine), [path], now=now, settle_seconds=0,
                             matcher=matcher if matcher is not None else SubscriptionMatcher()).files
    assert result.status == "ingested", result.note
    return result


def sub(engine: Engine, recipient: str, query: str, now: datetime, schedule: Schedule = Schedule(),
        **kwargs) -> tuple[int, int]:
    """Subscribe in a transaction of its own; (id, backfilled)."""
    created, backfilled = subscribe(Store(engine), recipient, query, schedule=schedule, now=now, **kwargs)
    return created.id, backfilled


def stored_matches(engine: Engine) -> set[tuple[int, int]]:
    with Session(engine) as session:
        rows = session.execute(select(Match.subscription_id, Match.paper_id)).all()
    pairs = {tuple(r) for r in rows}
    assert len(pairs) == len(rows), "a (subscription, paper) pair is stored more than once"
    return pairs


def papers_first_seen(engine: Engine, at: datetime | None = None, since: datetime | None = None):
    """(id, Document) of the stored papers first seen exactly ``at``, or at or after ``since``."""
    statement = select(Paper.id, Paper.title, Paper.abstract)
    if at is not None:
        statement = statement.where(Paper.first_seen == at)
    if since is not None:
        statement = statement.where(Paper.first_seen >= since)
    with Session(engine) as session:
        return [(row.id, Document.of(row.title, row.abstract)) for row in session.execute(statement)]


def expected(queries: dict[int, str], papers) -> set[tuple[int, int]]:
    """What the reference semantics say: (subscription id, paper id) for every match."""
    nodes = {sid: parse_query(q) for sid, q in queries.items()}
    return {(sid, pid) for sid, node in nodes.items() for pid, doc in papers if evaluate(node, doc)}


def replace_once(text: str, old: str, new: str) -> str:
    assert text.count(old) == 1, old[:60]
    return text.replace(old, new)


# ---- recipients -------------------------------------------------------------------------------

@pytest.mark.parametrize(("written", "kind", "address"), [
    ("alice@example.org", "email", "alice@example.org"),
    ("  alice@EXAMPLE.Org  ", "email", "alice@example.org"),  # domain case and surrounding space normalised
    ("Bob.Smith+papers@Sub.Example.COM", "email", "bob.smith+papers@sub.example.com"),  # one mailbox, any case
    ("slack:#ml-papers", "slack", "slack:#ml-papers"),
    ("slack:#a", "slack", "slack:#a"),
    ("slack:#team_ml.papers-2", "slack", "slack:#team_ml.papers-2"),
    ("slack:C0123ABCD", "slack", "slack:C0123ABCD"),
    ("slack:G0123ABCD9", "slack", "slack:G0123ABCD9"),
    ("slack-webhook:https://hooks.slack.com/services/T000/B000/XXXX",
     "slack-webhook", "slack-webhook:https://hooks.slack.com/services/T000/B000/XXXX"),
])
def test_recipients_accepted(written, kind, address):
    recipient = parse_recipient(written)
    assert (recipient.kind, recipient.address) == (kind, address)


@pytest.mark.parametrize("written", [
    "alice", "alice@", "@example.org", "alice@example", "alice@@example.org", "alice example@example.org",
    "", "   ",
    "slack:", "slack:#", "slack:ml-papers", "slack:#ML-Papers", "slack:#ml papers", "slack:#" + "a" * 81,
    "slack:c0123abcd", "slack:C01", "slack:X0123ABCD",
    "slack-webhook:", "slack-webhook:hooks.slack.com/services/T/B/X", "slack-webhook:ftp://hooks.slack.com/x",
    "slack-webhook:https://", "slack-webhook:javascript:alert(1)",
])
def test_recipients_refused_naming_the_recipient(written):
    """Named as written, or as a webhook is shown (a webhook URL is a credential)."""
    with pytest.raises(UsageError) as caught:
        parse_recipient(written)
    message = str(caught.value)
    assert message.startswith("bad recipient") and repr(shown(written.strip())) in message
    assert "\n" not in message


@pytest.mark.parametrize("written", [
    "slack-webhook:https://hooks.slack.com/services/T000/B000/XX XX",  # a space
    "slack-webhook:https://hooks.slack.com/services/T000/B000/XXXX\nBcc: x@example.org",  # a line break
])
def test_webhook_url_with_whitespace_is_refused(written):
    """A URL cannot contain whitespace; stored as is, it breaks one-line output and delivery."""
    with pytest.raises(UsageError, match="bad recipient"):
        parse_recipient(written)


def test_webhook_url_too_long_for_the_store_is_refused(engine):
    """recipients.address is VARCHAR(512): a longer recipient must be a UsageError, not a database error."""
    url = "https://hooks.slack.com/services/T000/B000/" + "X" * 600
    with pytest.raises(UsageError, match="bad recipient"):
        subscribe(Store(engine), f"slack-webhook:{url}", "diffusion", schedule=Schedule(), now=NOW)
    with Session(engine) as session:
        assert session.scalar(select(func.count()).select_from(Subscription)) == 0


def test_one_recipient_row_per_normalised_address(engine):
    first, _ = sub(engine, "alice@EXAMPLE.org", "diffusion", NOW)
    second, _ = sub(engine, " alice@example.ORG ", "transformer", NOW)
    third, _ = sub(engine, "slack:#ml-papers", "diffusion", NOW)
    with Session(engine) as session:
        rows = session.execute(select(Recipient.address, Recipient.kind).order_by(Recipient.id)).all()
        assert [tuple(r) for r in rows] == [("alice@example.org", "email"), ("slack:#ml-papers", "slack")]
    mine = list_subscriptions(Store(engine), "alice@Example.ORG")
    assert [s.id for s in mine] == [first, second]
    assert [s.id for s in list_subscriptions(Store(engine), "slack:#ml-papers")] == [third]
    with pytest.raises(UsageError, match="bad recipient"):
        list_subscriptions(Store(engine), "slack:#Not-Lowercase")


# ---- schedules --------------------------------------------------------------------------------

def test_schedule_defaults():
    assert parse_schedule() == Schedule("daily", "08:00", "mon", "UTC")


def test_subscription_stores_the_default_schedule(engine):
    sid, backfilled = sub(engine, "alice@example.org", "  diffusion  ", NOW, schedule=parse_schedule())
    assert backfilled == 0
    with Session(engine) as session:
        stored = subscription_json(session.get(Subscription, sid))
    assert {k: stored[k] for k in ("recipient", "query", "cadence", "at", "day", "tz", "active", "name")} == {
        "recipient": "alice@example.org", "query": "diffusion", "cadence": "daily", "at": "08:00", "day": "mon",
        "tz": "UTC", "active": True, "name": None,
    }
    assert stored["created_at"] == stored["match_since"] == NOW.isoformat()


@pytest.mark.parametrize(("given", "checked"), [
    (("instant",), Schedule("instant", "08:00", "mon", "UTC")),
    (("weekly", "9:05", "fri", "Europe/Berlin"), Schedule("weekly", "09:05", "fri", "Europe/Berlin")),
    ((" WEEKLY ", " 23:59 ", "SUN", " America/New_York "), Schedule("weekly", "23:59", "sun", "America/New_York")),
    (("daily", "00:00", "Wednesday", "Asia/Kolkata"), Schedule("daily", "00:00", "wed", "Asia/Kolkata")),
    (("Daily", "07:30", "tue", "UTC"), Schedule("daily", "07:30", "tue", "UTC")),
])
def test_schedules_accepted(given, checked):
    assert parse_schedule(*given) == checked


@pytest.mark.parametrize(("kwargs", "bad"), [
    ({"cadence": "hourly"}, "hourly"),
    ({"cadence": "monthly"}, "monthly"),
    ({"at": "24:00"}, "24:00"),
    ({"at": "08:60"}, "08:60"),
    ({"at": "8"}, "'8'"),
    ({"at": "8am"}, "8am"),
    ({"at": "0800"}, "0800"),
    ({"at": ""}, "''"),
    ({"day": ""}, "''"),
    ({"day": "xyz"}, "xyz"),
    ({"day": "someday"}, "someday"),  # the message must name the day as written
    ({"tz": "Mars/Olympus_Mons"}, "Mars/Olympus_Mons"),
    ({"tz": "Europe"}, "Europe"),
    ({"tz": ""}, "''"),
    ({"tz": "../etc/passwd"}, "../etc/passwd"),
    ({"tz": "GMT+25"}, "GMT+25"),
])
def test_schedules_refused_naming_the_value(kwargs, bad):
    with pytest.raises(UsageError) as caught:
        parse_schedule(**kwargs)
    assert bad in str(caught.value)


@pytest.mark.parametrize("day", ["monkey", "frisbee"])
def test_words_that_merely_start_like_a_weekday_are_refused(day):
    """--day takes mon … sun (or the full name); 'monkey' is not Monday."""
    with pytest.raises(UsageError, match="bad day"):
        parse_schedule("weekly", "08:00", day)


def test_send_time_is_ascii_digits():
    """A time is stored as HH:MM in ASCII digits, or refused (regex \\d also matches other scripts' digits)."""
    try:
        checked = parse_schedule(at="08:3\u0660")  # ARABIC-INDIC DIGIT ZERO
    except UsageError:
        return
    assert checked.at == "08:30"


def test_bad_input_to_subscribe_stores_nothing(engine):
    for recipient, query, backfill in [("nobody", "diffusion", 0), ("alice@example.org", '"diffusion', 0),
                                       ("alice@example.org", "-survey", 0), ("alice@example.org", "x", -1)]:
        with pytest.raises(UsageError):
            subscribe(Store(engine), recipient, query, schedule=Schedule(), backfill_days=backfill, now=NOW)
    with Session(engine) as session:
        assert session.scalar(select(func.count()).select_from(Subscription)) == 0
        assert session.scalar(select(func.count()).select_from(Recipient)) == 0


def test_bad_query_names_the_column(engine):
    with pytest.raises(UsageError) as caught:
        subscribe(Store(engine), "alice@example.org", "diffusion (transformer", schedule=Schedule(), now=NOW)
    assert "bad query" in str(caught.value) and "column 11" in str(caught.value)


# ---- matching on ingest -----------------------------------------------------------------------

QUERIES = [
    ("alice@example.org", "diffusion"),
    ("slack:#ml-papers", "Diffusion"),  # the same query as alice's, written differently
    ("alice@example.org", '"diffusion model"'),
    ("bob@example.org", "quantiz* OR pruning"),
    ("bob@example.org", "title:(video OR audio) generation"),
    ("slack:C0123ABCD", "transformer -survey"),
    ("carol@example.org", "autoregressive"),
    ("carol@example.org", "auto regressive"),
    ("dave@example.org", "time series"),
    ("dave@example.org", 'abstract:"time series"'),
    ("erin@example.org", '(llm OR "language model") (pruning OR quantiz* OR distillation) -survey'),
    ("erin@example.org", "gaussian splatting"),
    ("frank@example.org", "reinforcement learning"),
    ("frank@example.org", "3d NOT diffusion"),
    ("slack-webhook:https://hooks.slack.com/services/T0/B0/X", "pretrained"),
    ("slack-webhook:https://hooks.slack.com/services/T0/B0/X", "gpt"),
    ("grace@example.org", "title:benchmark"),
    ("grace@example.org", "mixture of experts"),
    ("heidi@example.org", "schrodinger zzzyzzx"),  # matches nothing
]


def test_ingest_stores_exactly_the_matches_evaluate_finds(engine, dumps):
    subs = {sub(engine, r, q, NOW - timedelta(hours=1), schedule=parse_schedule("instant"))[0]: q
            for r, q in QUERIES}
    paused = sub(engine, "ivan@example.org", "diffusion", NOW - timedelta(hours=1))[0]
    set_active(Store(engine), paused, False, NOW - timedelta(minutes=30))

    want: set[tuple[int, int]] = set()
    for i, name in enumerate(NAMES):
        at = NOW + timedelta(minutes=i)
        result = ingest(engine, dumps / name, at)
        assert result.new == NEW[i]
        fresh = papers_first_seen(engine, at=at)
        assert sorted(pid for pid, _ in fresh) == sorted(result.new_paper_ids)
        now_expected = expected(subs, fresh)
        assert result.matches == len(now_expected), name
        want |= now_expected
        assert stored_matches(engine) == want, name
        with Session(engine) as session:
            stamps = set(session.scalars(
                select(Match.matched_at).where(Match.paper_id.in_([pid for pid, _ in fresh]))))
        assert stamps <= {at}

    # The same over the whole store (the samples' updates change no outcome); the queries were exercised.
    assert want == expected(subs, papers_first_seen(engine, since=NOW))
    per_query = {q: {p for s, p in want if s == sid} for sid, q in subs.items()}
    assert not any(s == paused for s, _ in stored_matches(engine))
    assert per_query["diffusion"] and per_query["diffusion"] == per_query["Diffusion"]
    assert per_query["autoregressive"] == per_query["auto regressive"] != set()
    assert per_query['"diffusion model"'] < per_query["diffusion"]
    assert per_query['abstract:"time series"'] <= per_query["time series"]
    assert per_query["schrodinger zzzyzzx"] == set()
    assert sum(1 for q, pairs in per_query.items() if pairs) >= len(QUERIES) - 3
    assert len(want) > 300


def test_subscription_created_after_an_ingest_matches_only_later_papers(engine, dumps):
    ingest(engine, dumps / NAMES[0], NOW)
    later_id, backfilled = sub(engine, "alice@example.org", "transformer OR diffusion", NOW + timedelta(hours=1))
    assert backfilled == 0
    assert stored_matches(engine) == set()

    at = NOW + timedelta(hours=2)
    result = ingest(engine, dumps / NAMES[1], at)
    want = expected({later_id: "transformer OR diffusion"}, papers_first_seen(engine, at=at))
    assert want and result.matches == len(want)
    assert stored_matches(engine) == want  # nothing from the first file
    first_file = expected({later_id: "transformer OR diffusion"}, papers_first_seen(engine, at=NOW))
    assert first_file and not (first_file & stored_matches(engine))

    # An ingest that began (took its time) before a subscription was created, and matches after:
    # the subscription does not take those papers, the older one does.
    future_id, _ = sub(engine, "bob@example.org", "transformer OR diffusion", NOW + timedelta(hours=5))
    at = NOW + timedelta(hours=4)
    result = ingest(engine, dumps / NAMES[2], at)
    more = expected({later_id: "transformer OR diffusion"}, papers_first_seen(engine, at=at))
    assert more and result.matches == len(more)
    assert stored_matches(engine) == want | more


def test_backfill_matches_the_recent_papers_at_once(engine, dumps):
    old, recent = NOW - timedelta(days=10), NOW
    ingest(engine, dumps / NAMES[0], old)
    ingest(engine, dumps / NAMES[1], recent)
    query = "transformer OR diffusion"
    created = NOW + timedelta(hours=1)

    with Store(engine).transaction() as tx:
        backfill_sub, backfilled = subscribe_in(tx, "alice@example.org", query, schedule=Schedule(),
                                                backfill_days=2, now=created)
        sid = backfill_sub.id
        # The matches are there at once, in the same transaction.
        in_transaction = {tuple(r) for r in tx.session.execute(
            select(Match.subscription_id, Match.paper_id).where(Match.subscription_id == sid))}
    want = expected({sid: query}, papers_first_seen(engine, since=created - timedelta(days=2)))
    assert want and backfilled == len(want)
    assert in_transaction == want == stored_matches(engine)
    too_old = expected({sid: query}, papers_first_seen(engine, at=old))
    assert too_old and not (too_old & want)

    # A backfill window that reaches back far enough takes the old papers too; a window's edge is inclusive.
    edge_id, edge_count = sub(engine, "bob@example.org", query, old + timedelta(days=11), backfill_days=11)
    edge_want = expected({edge_id: query}, papers_first_seen(engine, since=old))
    assert edge_count == len(edge_want) and edge_want >= {(edge_id, p) for _, p in too_old}
    assert stored_matches(engine) == want | edge_want

    # Later ingests keep matching the backfilled subscriptions.
    at = NOW + timedelta(days=2)
    ingest(engine, dumps / NAMES[2], at)
    fresh = papers_first_seen(engine, at=at)
    assert stored_matches(engine) == want | edge_want | expected({sid: query, edge_id: query}, fresh)


def test_each_match_is_stored_once_even_when_matching_runs_twice(engine, dumps):
    sid, _ = sub(engine, "alice@example.org", "diffusion", NOW - timedelta(minutes=1))
    other, _ = sub(engine, "bob@example.org", "zzzyzzx", NOW - timedelta(minutes=1))
    ingest(engine, dumps / NAMES[0], NOW)
    first = stored_matches(engine)
    assert first and all(s == sid for s, _ in first)
    with Session(engine) as session:
        stamps_before = dict(session.execute(select(Match.paper_id, Match.matched_at)).all())

    pairs = sorted(first)
    with Store(engine).transaction() as tx:
        store_matches(tx, pairs)
        store_matches(tx, pairs + pairs)
        # A matcher run again over the same papers stores nothing new either.
        SubscriptionMatcher().match_and_store(tx, papers_since(tx, NOW))
    assert stored_matches(engine) == first

    # A pair given twice in one call, never stored before, is stored once.
    with Store(engine).transaction() as tx:
        paper_id = tx.session.scalar(select(Paper.id).order_by(Paper.id).limit(1))
        store_matches(tx, [(other, paper_id), (other, paper_id)])
    assert stored_matches(engine) == first | {(other, paper_id)}
    with Session(engine) as session:
        stamps_after = dict(session.execute(
            select(Match.paper_id, Match.matched_at).where(Match.subscription_id == sid)).all())
        assert session.scalar(select(func.count()).select_from(Match)) == len(first) + 1
    assert stamps_after == stamps_before  # the first match's time is kept


def test_updated_and_unchanged_papers_are_not_matched_again(engine, dumps, tmp_path):
    marker_id, _ = sub(engine, "alice@example.org", "zanzibarquux", NOW - timedelta(minutes=1))
    broad_id, _ = sub(engine, "bob@example.org", "model OR benchmark", NOW - timedelta(minutes=1))
    ingest(engine, dumps / NAMES[0], NOW)
    before = stored_matches(engine)
    assert before and not any(s == marker_id for s, _ in before)
    late_id, _ = sub(engine, "carol@example.org", "generation OR benchmark", NOW + timedelta(minutes=10))

    # A modified copy: one abstract changed so that it now contains the marker, one paper added.
    text = (dumps / NAMES[0]).read_text(encoding="utf-8")
    changed_abstract = ("We present Lumina-mGPT, a family of multimodal autoregressive models capable of "
                        "various vision and language tasks")
    text = replace_once(text, changed_abstract, changed_abstract + " (see also zanzibarquux)")
    text = text.rstrip("\n") + ("\n\nZanzibarquux: A Benchmark for Nothing in Particular\n\n"
                                "We study zanzibarquux generation in depth.\n")
    modified = write_dated(tmp_path / "modified.txt", text, MTIME)
    at = NOW + timedelta(hours=1)
    result = ingest(engine, modified, at)
    assert (result.new, result.updated, result.unchanged) == (1, 1, 69)

    fresh = papers_first_seen(engine, at=at)
    assert len(fresh) == 1
    new_id = fresh[0][0]
    queries = {marker_id: "zanzibarquux", broad_id: "model OR benchmark", late_id: "generation OR benchmark"}
    assert expected(queries, fresh) == {(marker_id, new_id), (broad_id, new_id), (late_id, new_id)}
    assert result.matches == 3
    assert stored_matches(engine) == before | {(marker_id, new_id), (broad_id, new_id), (late_id, new_id)}
    # The updated paper now contains the marker word, but it is not new: no match for it.
    with Session(engine) as session:
        updated = session.scalar(select(Paper.id).where(Paper.updated_at == at))
    assert updated is not None and (marker_id, updated) not in stored_matches(engine)


def test_unsubscribe_and_pause_stop_future_matches_with_the_kept_matcher(engine, dumps):
    times = iter(NOW + timedelta(minutes=10 * i) for i in range(100))
    q_alice1, q_alice2, q_bob, q_carol = "diffusion", "transformer", "Diffusion", "generation OR dataset"
    alice1, _ = sub(engine, "alice@example.org", q_alice1, next(times))
    alice2, _ = sub(engine, "alice@example.org", q_alice2, next(times))
    bob, _ = sub(engine, "bob@example.org", q_bob, next(times))  # the same query as alice1
    matcher = SubscriptionMatcher()  # one matcher, kept between ingests (as the watcher keeps its own)
    store = Store(engine)
    active = {alice1: q_alice1, alice2: q_alice2, bob: q_bob}
    want: set[tuple[int, int]] = set()

    def ingest_and_check(index: int) -> None:
        nonlocal want
        at = next(times)
        result = ingest(engine, dumps / NAMES[index], at, matcher)
        got = expected(active, papers_first_seen(engine, at=at))
        assert result.matches == len(got)
        want |= got
        assert stored_matches(engine) == want
        with Session(engine) as session:
            counter = session.scalar(select(Counter.value).where(Counter.name == "subscriptions"))
        assert matcher.version == counter
        assert len(matcher) == len(active)  # active subscriptions (the index holds each query text once)

    def matched_by(sid: int) -> set[int]:
        return {p for s, p in stored_matches(engine) if s == sid}

    ingest_and_check(0)
    assert matched_by(alice1) and matched_by(alice1) == matched_by(bob) and matched_by(alice2)

    # End alice's first subscription by id; the identical query of bob's stays. Add carol between ingests.
    ended = unsubscribe(store, alice1, next(times))
    assert ended.active is False
    carol, _ = sub(engine, "carol@example.org", q_carol, next(times))
    del active[alice1]
    active[carol] = q_carol
    alice1_before = matched_by(alice1)
    ingest_and_check(1)
    assert matched_by(alice1) == alice1_before
    assert matched_by(bob) - alice1_before and matched_by(carol)

    # End all of alice's by recipient (written differently), and pause carol's.
    ended = unsubscribe_recipient(store, "  alice@EXAMPLE.org ", next(times))
    assert [s.id for s in ended] == [alice2]
    set_active(store, carol, False, next(times))
    del active[alice2], active[carol]
    frozen = {sid: matched_by(sid) for sid in (alice1, alice2, carol)}
    ingest_and_check(2)
    assert {sid: matched_by(sid) for sid in frozen} == frozen
    assert [s.id for s in list_subscriptions(store)] == [bob]
    assert [s.id for s in list_subscriptions(store, include_inactive=True)] == [alice1, alice2, bob, carol]
    assert list_subscriptions(store, "alice@example.org") == []

    # Resume carol: she matches again, from the papers ingested after she resumed.
    resumed = set_active(store, carol, True, next(times))
    assert resumed.active is True
    active[carol] = q_carol
    ingest_and_check(3)
    assert matched_by(carol) - frozen[carol]


def query_match_rows(engine: Engine) -> int:
    with Session(engine) as session:
        return session.scalar(select(func.count()).select_from(QueryMatch))


def test_subscriptions_sharing_a_query_share_its_stored_matches(engine, dumps):
    query = "transformer OR diffusion"
    early, _ = sub(engine, "alice@example.org", query, NOW - timedelta(hours=1))
    ingest(engine, dumps / NAMES[0], NOW)
    late, _ = sub(engine, "bob@example.org", query, NOW + timedelta(hours=1))  # after the first ingest
    at = NOW + timedelta(hours=2)
    ingest(engine, dumps / NAMES[1], at)

    first = expected({early: query}, papers_first_seen(engine, at=NOW))
    second = expected({early: query, late: query}, papers_first_seen(engine, at=at))
    assert first and second
    # One row per (query, paper), however many subscribe; each sees only what came after it.
    assert query_match_rows(engine) == len(first) + len(second) // 2
    assert stored_matches(engine) == first | second

    # Pausing one leaves the other's matches alone, and it misses what comes while paused.
    set_active(Store(engine), early, False, NOW + timedelta(hours=3))
    at = NOW + timedelta(hours=4)
    result = ingest(engine, dumps / NAMES[2], at)
    third = expected({late: query}, papers_first_seen(engine, at=at))
    assert third and result.matches == len(third)
    assert stored_matches(engine) == first | second | third

    # Resumed, it takes what comes next, never what came while paused; ended, it keeps its past.
    set_active(Store(engine), early, True, NOW + timedelta(hours=5))
    unsubscribe(Store(engine), late, NOW + timedelta(hours=5))
    at = NOW + timedelta(hours=6)
    ingest(engine, dumps / NAMES[3], at)
    fourth = expected({early: query}, papers_first_seen(engine, at=at))
    assert fourth and stored_matches(engine) == first | second | third | fourth

    # A backfill stores the query's matches once more for nobody else: others' windows stay theirs.
    newcomer, backfilled = sub(engine, "carol@example.org", query, NOW + timedelta(hours=7), backfill_days=1)
    window = expected({newcomer: query}, papers_first_seen(engine, since=NOW + timedelta(hours=7) - timedelta(days=1)))
    assert backfilled == len(window) and stored_matches(engine) == first | second | third | fourth | window


def test_a_subscriptions_matches_are_stamped_when_it_could_first_have_them(engine, dumps):
    ingest(engine, dumps / NAMES[0], NOW - timedelta(days=1))
    sid, backfilled = sub(engine, "alice@example.org", "transformer", NOW, backfill_days=2)
    ingest(engine, dumps / NAMES[1], NOW + timedelta(hours=1))
    with Session(engine) as session:
        stamps = dict(session.execute(select(Match.paper_id, Match.matched_at).where(Match.subscription_id == sid)).all())
        first_seen = dict(session.execute(select(Paper.id, Paper.first_seen).where(Paper.id.in_(stamps))).all())
    assert backfilled and len(stamps) > backfilled
    assert {stamps[p] for p in stamps if first_seen[p] < NOW} == {NOW}  # backfilled when it was created
    assert all(stamps[p] == first_seen[p] for p in stamps if first_seen[p] >= NOW)  # matched by the ingest


def _migrate_to(engine: Engine, revision: str, downgrade: bool = False) -> None:
    """Upgrade (or downgrade) to ``revision``, the way ``digestbot.store.migrate`` upgrades to head."""
    from alembic import command

    from digestbot.store.db import _alembic_config

    cfg = _alembic_config()
    with engine.connect() as connection:
        raw = connection.connection.driver_connection
        if engine.dialect.name == "sqlite":
            raw.execute("PRAGMA foreign_keys=OFF")
        with connection.begin():
            cfg.attributes["connection"] = connection
            (command.downgrade if downgrade else command.upgrade)(cfg, revision)
        if engine.dialect.name == "sqlite":
            raw.execute("PRAGMA foreign_keys=ON")


def test_migration_0008_carries_matches_over_and_back(database_url):
    from sqlalchemy import Integer, column, insert, table

    from digestbot.store.models import UTCDateTime

    engine = connect(database_url)
    _migrate_to(engine, "0007")
    old_matches = table("matches", column("subscription_id", Integer), column("paper_id", Integer),
                        column("matched_at", UTCDateTime))
    created, t1, t2 = NOW - timedelta(days=1), NOW, NOW + timedelta(hours=1)
    with Session(engine) as session, session.begin():
        session.add(Recipient(id=1, address="alice@example.org", kind="email", created_at=created))
        session.flush()
        # Rows as ingests made them: 2 subscribed between the papers, 3 ended after both.
        session.execute(insert(Subscription), [
            {"id": sid, "recipient_id": 1, "query": query, "cadence": "daily", "send_at": "08:00", "weekday": "mon",
             "timezone": "UTC", "active": active, "pending": False, "created_at": since, "updated_at": updated,
             "match_since": since, "version": sid}
            for sid, query, active, since, updated in [
                (1, "diffusion", True, created, created),
                (2, "diffusion", True, t1 + timedelta(minutes=30), t1 + timedelta(minutes=30)),
                (3, "transformer", False, created, t2 + timedelta(minutes=1))]
        ])
        session.execute(insert(Paper), [
            {"id": pid, "title": f"paper {pid}", "title_key": f"paper {pid}", "abstract": "", "abstract_fp": str(pid),
             "first_seen": seen}
            for pid, seen in [(10, t1), (11, t2)]
        ])
        rows = [(1, 10, t1), (1, 11, t2), (2, 11, t2), (3, 10, t1)]
        session.execute(insert(old_matches), [dict(zip(("subscription_id", "paper_id", "matched_at"), r))
                                              for r in rows])

    _migrate_to(engine, "0008")
    with Session(engine) as session:
        assert set(session.execute(select(Match.subscription_id, Match.paper_id, Match.matched_at))) == set(rows)
        assert session.scalar(select(func.count()).select_from(QueryMatch)) == 3  # diffusion × 2, transformer × 1

    _migrate_to(engine, "0007", downgrade=True)
    with Session(engine) as session:
        assert set(session.execute(select(old_matches))) == set(rows)
    engine.dispose()


def test_unsubscribe_errors_and_repeats(engine):
    sid, _ = sub(engine, "alice@example.org", "diffusion", NOW)
    store = Store(engine)
    with pytest.raises(NotFound):
        unsubscribe(store, sid + 1000, NOW)
    with pytest.raises(NotFound):
        unsubscribe_recipient(store, "nobody@example.org", NOW)
    with pytest.raises(NotFound):
        set_active(store, sid + 1000, True, NOW)
    with pytest.raises(UsageError, match="bad recipient"):
        unsubscribe_recipient(store, "not a recipient", NOW)
    unsubscribe(store, sid, NOW)
    assert unsubscribe(store, sid, NOW + timedelta(hours=1)).active is False  # again: still ended, no error
    with pytest.raises(NotFound):
        unsubscribe_recipient(store, "alice@example.org", NOW)  # nothing active any more


# ---- bulk import ------------------------------------------------------------------------------

README_CSV = '''recipient,query,cadence,at,tz
alice@example.org,"""diffusion transformer"" -survey",weekly,09:00,Europe/Berlin
slack:#ml-papers,quantiz* OR pruning,instant,,
'''


def test_import_the_readme_example(engine):
    report = import_subscriptions(Store(engine), README_CSV, NOW)
    assert report.as_json() == {"imported": 2, "failed": 0, "errors": []}
    got = [subscription_json(s) for s in list_subscriptions(Store(engine))]
    assert [(s["recipient"], s["query"], s["cadence"], s["at"], s["day"], s["tz"], s["active"]) for s in got] == [
        ("alice@example.org", '"diffusion transformer" -survey', "weekly", "09:00", "mon", "Europe/Berlin", True),
        ("slack:#ml-papers", "quantiz* OR pruning", "instant", "08:00", "mon", "UTC", True),
    ]
    assert all(s["match_since"] == NOW.isoformat() for s in got)


def test_import_reports_bad_rows_by_line_and_imports_the_good(engine, dumps):
    text = "\n".join([
        "Recipient, Query ,cadence,at,day,tz,name",                                      # 1
        "alice@Example.org,diffusion,weekly,9:30,friday,Europe/Berlin,Diffusion news",   # 2 good
        "not-an-email,diffusion,,,,,",                                                   # 3 bad recipient
        'bob@example.org,"""diffusion transformer",,,,,',                                # 4 bad query
        "bob@example.org,transformer,hourly,,,,",                                        # 5 bad cadence
        "bob@example.org,transformer,daily,08:00,mon,Mars/Olympus_Mons,",                # 6 bad tz
        "bob@example.org,transformer,daily,08:00,mon,UTC,name,extra",                    # 7 extra field
        "",                                                                              # 8 blank: skipped
        "slack:#ml-papers,quantiz* OR pruning OR transformer,instant,,,,",               # 9 good
        'slack:C0123ABCD,"title:(video OR audio generation",daily,,,,',                  # 10 bad query: "("
        "bob@example.org,transformer,daily,25:00,,,",                                    # 11 bad time
        "bob@example.org,-survey,,,,,",                                                  # 12 only an exclusion
        'carol@example.org,"""time series"" forecasting",daily,07:00,,Asia/Tokyo,',      # 13 good
    ]) + "\n"
    report = import_subscriptions(Store(engine), text, NOW)
    data = report.as_json()
    assert (data["imported"], data["failed"]) == (3, 8)
    reasons = {e["line"]: e["error"] for e in data["errors"]}
    assert sorted(reasons) == [3, 4, 5, 6, 7, 10, 11, 12]
    assert "not-an-email" in reasons[3] and "recipient" in reasons[3]
    assert "bad query" in reasons[4] and "column" in reasons[4]
    assert "hourly" in reasons[5]
    assert "Mars/Olympus_Mons" in reasons[6]
    assert "more fields" in reasons[7]
    assert "25:00" in reasons[11]
    assert "bad query" in reasons[12]

    got = {s["recipient"]: s for s in map(subscription_json, list_subscriptions(Store(engine)))}
    assert sorted(got) == ["alice@example.org", "carol@example.org", "slack:#ml-papers"]
    assert {k: got["alice@example.org"][k] for k in ("query", "cadence", "at", "day", "tz", "name")} == {
        "query": "diffusion", "cadence": "weekly", "at": "09:30", "day": "fri", "tz": "Europe/Berlin",
        "name": "Diffusion news"}
    assert got["carol@example.org"]["query"] == '"time series" forecasting'
    assert got["slack:#ml-papers"]["cadence"] == "instant"

    # Imported subscriptions take part in the next ingest's matching.
    at = NOW + timedelta(minutes=5)
    result = ingest(engine, dumps / NAMES[0], at)
    queries = {s["id"]: s["query"] for s in got.values()}
    want = expected(queries, papers_first_seen(engine, at=at))
    assert want and result.matches == len(want) and stored_matches(engine) == want


@pytest.mark.parametrize("text", [
    "",
    "\n",
    "email,query\nalice@example.org,diffusion\n",
    "recipient\nalice@example.org\n",
    "query,cadence\ndiffusion,daily\n",
])
def test_import_refuses_a_header_without_the_required_columns(engine, text):
    with pytest.raises(UsageError, match="recipient"):
        import_subscriptions(Store(engine), text, NOW)
    with Session(engine) as session:
        assert session.scalar(select(func.count()).select_from(Subscription)) == 0


def test_import_refuses_an_unknown_column(engine):
    with pytest.raises(UsageError, match="frequency"):
        import_subscriptions(Store(engine), "recipient,query,frequency\na@example.org,x,daily\n", NOW)


def test_import_with_a_bom_and_crlf(engine):
    text = "\ufeffrecipient,query\r\nalice@example.org,diffusion\r\nbob@example.org,llm\r\n"
    report = import_subscriptions(Store(engine), text, NOW)
    assert report.as_json() == {"imported": 2, "failed": 0, "errors": []}


def test_import_reports_an_unclosed_quote_instead_of_swallowing_rows(engine):
    """An unclosed quote on line 2 must be reported; here it silently eats lines 3-4 into one query."""
    text = ('recipient,query\n'
            'alice@example.org,"diffusion transformer\n'
            'bob@example.org,llm\n'
            'carol@example.org,pruning\n')
    report = import_subscriptions(Store(engine), text, NOW)
    assert report.errors and report.errors[0][0] == 2, report.as_json()
    with Session(engine) as session:
        queries = list(session.scalars(select(Subscription.query)))
    assert not any("\n" in q for q in queries), queries


def test_import_with_an_unclosed_quote_in_a_big_file_is_reported_not_raised(engine):
    """The csv module's own errors (here: field larger than field limit) must become a report or UsageError."""
    text = 'recipient,query\nalice@example.org,"diffusion\n' + "bob@example.org,llm\n" * 10_000
    try:
        report = import_subscriptions(Store(engine), text, NOW)
    except UsageError as exc:
        assert "line 2" in str(exc) or "quote" in str(exc)
    else:
        assert report.errors and report.errors[0][0] == 2


def test_import_of_a_nul_character_is_a_bad_row_not_a_crash(engine):
    """PostgreSQL text cannot hold NUL: such a row must be reported, not abort the whole import."""
    text = "recipient,query,name\nalice@example.org,diffusion\x00,\nbob@example.org,llm,ok\n"
    report = import_subscriptions(Store(engine), text, NOW)
    assert report.imported + len(report.errors) == 2
    with Session(engine) as session:
        assert "llm" in set(session.scalars(select(Subscription.query)))


def test_import_100k_rows_quickly(sqlite_url):
    engine = connect(sqlite_url)
    migrate(engine)
    words = ["diffusion", "transformer", "llm", "pruning OR quantiz*", '"time series"', "title:video",
             "graph neural", "robot* -survey", "(speech OR audio) generation", "gaussian splatting"]
    cadences, zones = ["instant", "daily", "weekly"], ["UTC", "Europe/Berlin", "America/New_York", "Asia/Tokyo"]
    bad_lines = {12_345: "not-an-email", 50_001: "slack:#Bad Channel", 99_999: "bob@"}
    buffer = io.StringIO()
    out = csv.writer(buffer, lineterminator="\n")
    out.writerow(["recipient", "query", "cadence", "at", "day", "tz", "name"])
    for i in range(100_000):
        line = i + 2
        recipient = bad_lines.get(line, f"user{i % 10_000}@example.org")
        query = f"{words[i % 10]} {words[(i // 10) % 10]}" if i % 3 else words[i % 10]
        out.writerow([recipient, query, cadences[i % 3], f"{i % 24:02d}:{(i * 7) % 60:02d}",
                      ["mon", "wed", "fri"][i % 3], zones[i % 4], f"sub {i}" if i % 2 else ""])
    text = buffer.getvalue()

    started, cpu_started = time.perf_counter(), time.process_time()
    report = import_subscriptions(Store(engine), text, NOW)
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    # A sanity bound, not a benchmark. SQLite runs in this process, so its CPU time is the import's whole
    # cost; wall-clock time on a shared, loaded test machine is not a property of digestbot.
    assert cpu < 60, f"100,000 rows took {cpu:.1f} s of CPU ({elapsed:.1f} s wall)"
    assert report.imported == 100_000 - len(bad_lines)
    assert [line for line, _ in report.errors] == sorted(bad_lines)
    with Session(engine) as session:
        assert session.scalar(select(func.count()).select_from(Subscription)) == report.imported
        assert session.scalar(select(func.count()).select_from(Recipient)) == 10_000
        row = session.scalars(select(Subscription).order_by(Subscription.id).offset(5).limit(1)).one()
        assert (row.recipient.address, row.query, row.cadence, row.send_at, row.weekday, row.timezone,
                row.name) == ("user5@example.org", f"{words[5]} {words[0]}", "weekly", "05:35", "fri",
                              "Europe/Berlin", "sub 5")
    engine.dispose()


# ---- search -----------------------------------------------------------------------------------

def _score(word: str, doc: Document) -> int:
    """2 if the word is in the title, plus 1 if it is in the abstract (the scoring Hit documents)."""
    return 2 * evaluate(parse_query(f"title:{word}"), doc) + evaluate(parse_query(f"abstract:{word}"), doc)


@pytest.fixture
def searchable(engine, dumps) -> dict[int, Document]:
    """All five samples ingested; the stored papers analysed for the reference semantics."""
    for i, name in enumerate(NAMES):
        ingest(engine, dumps / name, NOW + timedelta(minutes=i))
    return dict(papers_first_seen(engine, since=NOW))


def test_search_best_first(engine, searchable):
    docs = searchable
    store = Store(engine)
    hits = search(store, parse_query("diffusion"), 1000)
    top = search(store, parse_query("diffusion"), 5)
    assert search(store, parse_query("zzzyzzx"), 10) == []
    assert search(store, parse_query("diffusion -diffusion"), 10) == []
    assert search(store, parse_query("title:zzzyzzx OR abstract:qqqxqqq"), 10) == []
    ids = [h.paper.id for h in hits]
    scores = [h.score for h in hits]
    top_ids = [h.paper.id for h in top]

    want = {pid for pid, doc in docs.items() if evaluate(parse_query("diffusion"), doc)}
    assert len(ids) == len(set(ids)) and set(ids) == want and len(want) > 20
    assert scores == [_score("diffusion", docs[pid]) for pid in ids]
    assert scores == sorted(scores, reverse=True)
    in_title = [evaluate(parse_query("title:diffusion"), docs[pid]) for pid in ids]
    assert any(in_title) and not all(in_title)
    first_abstract_only = in_title.index(False)
    assert all(in_title[:first_abstract_only]) and not any(in_title[first_abstract_only:])
    assert top_ids == ids[:5]


def test_search_ranks_title_hits_of_a_several_word_query_first(engine, searchable):
    """`video generation` is two words: a paper with either word in its title is a title hit and ranks
    above every paper that has the words only in its abstract; each word scores 2 in the title, 1 in
    the abstract."""
    docs = searchable
    query = "video generation"
    hits = [(h.paper.id, h.score) for h in search(Store(engine), parse_query(query), 1000)]
    ids = [pid for pid, _ in hits]
    assert set(ids) == {pid for pid, doc in docs.items() if evaluate(parse_query(query), doc)}
    title_words = [sum(evaluate(parse_query(f"title:{w}"), docs[pid]) for w in query.split()) for pid in ids]
    assert any(title_words) and not all(title_words)
    misranked = [(ids[i], ids[j]) for i in range(len(ids)) for j in range(i + 1, len(ids))
                 if title_words[i] == 0 and title_words[j] > 0]
    assert not misranked, f"abstract-only hit ranked above a title hit: {misranked[:5]}"
    assert [score for _, score in hits] == [sum(_score(w, docs[pid]) for w in query.split()) for pid in ids]
