"""Digests: when they are due (latest_slot), what goes in them (compose), and the builder that
queues them into the outbox, on SQLite and PostgreSQL (the ``engine`` fixture).

Every builder test passes explicit, aware UTC ``now`` values and ingests the real samples.
Expected paper sets come from the stored matches, never from the builder under test.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import threading
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Engine, func, insert, select, update
from sqlalchemy.orm import Session

from conftest import SAMPLES
from digestbot.bootstrap import bootstrap
from digestbot.core.digest import PaperRef, SubscriptionRef, compose
from digestbot.core.query import parse_query
from digestbot.core.schedule import Schedule, latest_slot, parse_schedule
from digestbot.services.ingest import ingest_paths
from digestbot.services.matching import SubscriptionMatcher
from digestbot.services.subscriptions import subscribe
from digestbot.settings import Settings
from digestbot.errors import Conflict
from digestbot.store import (
    DigestItem, Match, NewMessage, OutboxMessage, Paper, Recipient, Store, Subscription,
)

NAMES = sorted(p.name for p in SAMPLES.iterdir())
T0 = datetime(2025, 12, 1, 6, 0, tzinfo=UTC)  # a Monday; subscriptions are made at T0
INGEST = T0 + timedelta(minutes=30)  # the samples arrive after the subscriptions
MTIME = (T0 - timedelta(days=30)).timestamp()  # the copies were "saved" a month earlier


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


# =============================================================================== latest_slot


def test_daily_slot_is_the_latest_at_or_before_now() -> None:
    schedule = Schedule("daily", "08:00", "mon", "UTC")
    assert latest_slot(schedule, utc(2025, 12, 1, 7, 59)) == utc(2025, 11, 30, 8, 0)
    assert latest_slot(schedule, utc(2025, 12, 1, 8, 0)) == utc(2025, 12, 1, 8, 0)  # "at or before"
    assert latest_slot(schedule, utc(2025, 12, 1, 23, 59)) == utc(2025, 12, 1, 8, 0)
    assert latest_slot(schedule, utc(2025, 1, 1, 0, 0)) == utc(2024, 12, 31, 8, 0)  # across a year


@pytest.mark.parametrize(("tz", "now", "expected"), [
    # Europe/Berlin springs forward on 2026-03-29 (CET+1 -> CEST+2) and falls back on 2026-10-25.
    ("Europe/Berlin", utc(2026, 3, 28, 7, 0), utc(2026, 3, 28, 7, 0)),  # 08:00 CET
    ("Europe/Berlin", utc(2026, 3, 29, 5, 59), utc(2026, 3, 28, 7, 0)),  # 07:59 CEST: not yet
    ("Europe/Berlin", utc(2026, 3, 29, 6, 0), utc(2026, 3, 29, 6, 0)),  # 08:00 CEST
    ("Europe/Berlin", utc(2026, 3, 29, 6, 30), utc(2026, 3, 29, 6, 0)),  # a fixed +1 offset would say Mar 28
    ("Europe/Berlin", utc(2026, 3, 30, 6, 0), utc(2026, 3, 30, 6, 0)),
    ("Europe/Berlin", utc(2026, 10, 24, 6, 0), utc(2026, 10, 24, 6, 0)),  # 08:00 CEST
    ("Europe/Berlin", utc(2026, 10, 25, 6, 0), utc(2026, 10, 24, 6, 0)),  # 07:00 CET: not yet
    ("Europe/Berlin", utc(2026, 10, 25, 6, 59), utc(2026, 10, 24, 6, 0)),  # 07:59 CET: not yet
    ("Europe/Berlin", utc(2026, 10, 25, 7, 0), utc(2026, 10, 25, 7, 0)),  # 08:00 CET
    # America/New_York springs forward on 2026-03-08 and falls back on 2026-11-01.
    ("America/New_York", utc(2026, 3, 7, 13, 0), utc(2026, 3, 7, 13, 0)),  # 08:00 EST
    ("America/New_York", utc(2026, 3, 8, 11, 59), utc(2026, 3, 7, 13, 0)),  # 07:59 EDT
    ("America/New_York", utc(2026, 3, 8, 12, 0), utc(2026, 3, 8, 12, 0)),  # 08:00 EDT
    ("America/New_York", utc(2026, 10, 31, 12, 0), utc(2026, 10, 31, 12, 0)),  # 08:00 EDT
    ("America/New_York", utc(2026, 11, 1, 12, 30), utc(2026, 10, 31, 12, 0)),  # 07:30 EST: not yet
    ("America/New_York", utc(2026, 11, 1, 13, 0), utc(2026, 11, 1, 13, 0)),  # 08:00 EST
    # Zones without DST, with half-hour offsets, and on the other side of the date line.
    ("Asia/Kolkata", utc(2026, 6, 1, 2, 30), utc(2026, 6, 1, 2, 30)),  # 08:00 IST (+05:30)
    ("Asia/Kolkata", utc(2026, 6, 1, 2, 29), utc(2026, 5, 31, 2, 30)),
    ("Pacific/Auckland", utc(2026, 1, 10, 19, 0), utc(2026, 1, 10, 19, 0)),  # 08:00 NZDT on Jan 11
    ("Pacific/Auckland", utc(2026, 7, 10, 20, 0), utc(2026, 7, 10, 20, 0)),  # 08:00 NZST on Jul 11
    ("Pacific/Kiritimati", utc(2026, 6, 1, 18, 0), utc(2026, 6, 1, 18, 0)),  # 08:00 (+14) on Jun 2
])
def test_daily_0800_local_stays_0800_local_across_zones_and_dst(tz: str, now: datetime, expected: datetime) -> None:
    slot = latest_slot(Schedule("daily", "08:00", "mon", tz), now)
    assert slot == expected
    assert slot.utcoffset() == timedelta(0)  # returned in UTC
    local = slot.astimezone(ZoneInfo(tz))
    assert (local.hour, local.minute) == (8, 0)


@pytest.mark.parametrize("tz", ["Europe/Berlin", "America/New_York", "Australia/Sydney", "UTC"])
def test_daily_slots_over_a_whole_year_are_always_0800_local_and_the_latest(tz: str) -> None:
    schedule = Schedule("daily", "08:00", "mon", tz)
    zone = ZoneInfo(tz)
    now = utc(2026, 1, 1, 0, 17)
    while now < utc(2027, 1, 1):
        slot = latest_slot(schedule, now)
        local = slot.astimezone(zone)
        assert (local.hour, local.minute) == (8, 0), (now, slot)
        assert slot <= now < slot + timedelta(hours=25), (now, slot)
        # No slot in between: the next day's 08:00 local is after now.
        following = datetime.combine(local.date() + timedelta(days=1), local.time(), tzinfo=zone)
        assert following > now, (now, slot)
        now += timedelta(hours=5, minutes=13)


def test_a_time_skipped_by_spring_forward_resolves_an_hour_later_and_fires_once() -> None:
    # 02:30 does not exist in New York on 2026-03-08: zoneinfo takes it as 03:30 EDT (07:30 UTC).
    schedule = Schedule("daily", "02:30", "mon", "America/New_York")
    assert latest_slot(schedule, utc(2026, 3, 8, 7, 29)) == utc(2026, 3, 7, 7, 30)  # 02:30 EST the day before
    assert latest_slot(schedule, utc(2026, 3, 8, 7, 30)) == utc(2026, 3, 8, 7, 30)
    assert latest_slot(schedule, utc(2026, 3, 9, 6, 29)) == utc(2026, 3, 8, 7, 30)
    assert latest_slot(schedule, utc(2026, 3, 9, 6, 30)) == utc(2026, 3, 9, 6, 30)  # 02:30 EDT


def test_a_time_repeated_by_fall_back_is_one_slot_not_two() -> None:
    # 01:30 happens twice in New York on 2026-11-01 (05:30 and 06:30 UTC): one slot, the first.
    schedule = Schedule("daily", "01:30", "mon", "America/New_York")
    assert latest_slot(schedule, utc(2026, 11, 1, 5, 30)) == utc(2026, 11, 1, 5, 30)
    assert latest_slot(schedule, utc(2026, 11, 1, 6, 45)) == utc(2026, 11, 1, 5, 30)
    assert latest_slot(schedule, utc(2026, 11, 2, 6, 29)) == utc(2026, 11, 1, 5, 30)
    assert latest_slot(schedule, utc(2026, 11, 2, 6, 30)) == utc(2026, 11, 2, 6, 30)


@pytest.mark.parametrize("day", ["mon", "tue", "wed", "thu", "fri", "sat", "sun"])
@pytest.mark.parametrize("tz", ["UTC", "Europe/Berlin", "America/New_York", "Asia/Tokyo"])
def test_weekly_slot_is_on_the_right_local_weekday_at_the_local_time(day: str, tz: str) -> None:
    schedule = parse_schedule("weekly", "09:15", day, tz)
    zone = ZoneInfo(tz)
    now = utc(2026, 3, 1, 0, 0)
    while now < utc(2026, 4, 15):  # spans the March DST changes of both hemispheres' zones here
        slot = latest_slot(schedule, now)
        local = slot.astimezone(zone)
        assert local.strftime("%a").lower() == day, (now, slot)
        assert (local.hour, local.minute) == (9, 15)
        assert slot <= now
        following = datetime.combine(local.date() + timedelta(days=7), local.time(), tzinfo=zone)
        assert following > now, (now, slot)  # it is the latest one
        now += timedelta(hours=7, minutes=41)


def test_weekly_slot_across_the_berlin_spring_forward() -> None:
    schedule = parse_schedule("weekly", "09:00", "mon", "Europe/Berlin")
    assert latest_slot(schedule, utc(2026, 3, 25, 12, 0)) == utc(2026, 3, 23, 8, 0)  # Mon 09:00 CET
    assert latest_slot(schedule, utc(2026, 3, 30, 6, 59)) == utc(2026, 3, 23, 8, 0)  # Mon 08:59 CEST
    assert latest_slot(schedule, utc(2026, 3, 30, 7, 0)) == utc(2026, 3, 30, 7, 0)  # Mon 09:00 CEST


# =============================================================================== compose


def paper(pid: int, title: str = "", *, upvotes: int | None = None, published: date | None = None,
          first_seen: datetime = T0, abstract: str = "An abstract about diffusion transformer models.") -> PaperRef:
    return PaperRef(pid, title or f"Paper {pid}", abstract, 3, upvotes, published, first_seen)


def sref(sid: int, label: str) -> SubscriptionRef:
    return SubscriptionRef(sid, label, parse_query(label))


def build(matched: dict, *, cadence: str = "daily", slot_local: datetime | None = None, max_papers: int = 25):
    return compose(
        recipient="ada@example.org", cadence=cadence, matched=matched,
        slot_local=slot_local or datetime(2025, 12, 1, 8, 0, tzinfo=ZoneInfo("Europe/Berlin")),
        max_papers=max_papers, paper_url="https://huggingface.co/papers?q={title}",
    )


def test_compose_orders_by_matched_subscriptions_then_upvotes_then_newest() -> None:
    a, b = sref(1, "diffusion"), sref(2, "transformer")
    matched = {
        10: (paper(10, upvotes=1, published=date(2020, 1, 1)), [a, b]),  # two subscriptions: first
        11: (paper(11, upvotes=50, published=date(2024, 1, 1)), [a]),
        12: (paper(12, upvotes=50, published=date(2025, 1, 1)), [b]),  # same upvotes, newer
        13: (paper(13, upvotes=None, published=date(2025, 11, 1)), [a]),  # no upvotes: counts as 0
        14: (paper(14, upvotes=None, published=None, first_seen=utc(2025, 11, 30)), [a]),  # newest by first seen
        15: (paper(15, upvotes=3, published=date(2019, 1, 1)), [b]),
    }
    digest = build(matched)
    assert [p.id for p in digest.papers] == [10, 12, 11, 15, 14, 13]
    assert digest.papers[0].matched_by == ("diffusion", "transformer")
    assert digest.papers[1].matched_by == ("transformer",)
    assert [s.id for s in digest.subscriptions] == [1, 2]


def test_compose_caps_the_papers_and_counts_the_rest_as_more() -> None:
    s = sref(1, "diffusion")
    matched = {i: (paper(i, upvotes=i), [s]) for i in range(1, 8)}
    digest = build(matched, max_papers=3)
    assert [p.id for p in digest.papers] == [7, 6, 5]  # the most upvoted
    assert (digest.total, digest.more) == (7, 4)
    assert digest.subject.startswith("7 new papers")  # the subject counts all, not the shown
    assert build(matched, max_papers=7).more == 0
    assert build(matched, max_papers=100).more == 0


def test_subject_of_a_weekly_digest() -> None:
    s = sref(3, "diffusion transformer")
    matched = {i: (paper(i), [s]) for i in range(7)}
    monday = datetime(2026, 11, 23, 9, 0, tzinfo=ZoneInfo("Europe/Berlin"))
    digest = build(matched, cadence="weekly", slot_local=monday)
    assert digest.subject == '7 new papers on "diffusion transformer" · week of Nov 16'
    assert digest.period == "week of Nov 16"


def test_subject_singular_daily_and_instant() -> None:
    s = sref(1, "quantiz*")
    one = {5: (paper(5), [s])}
    assert build(one).subject == '1 new paper on "quantiz*" · Dec 1'
    assert build(one, cadence="instant").subject == '1 new paper on "quantiz*"'
    assert build(one, cadence="instant").period == ""
    two = {5: (paper(5), [s]), 6: (paper(6), [s])}
    assert build(two, cadence="instant").subject == '2 new papers on "quantiz*"'


def test_subject_names_the_first_subscription_and_n_more() -> None:
    subs = [sref(4, "video"), sref(2, "diffusion"), sref(9, "3d")]
    matched = {1: (paper(1), [subs[0]]), 2: (paper(2), [subs[1], subs[2]]), 3: (paper(3), [subs[2]])}
    digest = build(matched)
    assert digest.subject == '3 new papers on "diffusion" and 2 more · Dec 1'  # lowest id first
    two = build({1: (paper(1), [subs[0]]), 2: (paper(2), [subs[2]])})
    assert two.subject == '2 new papers on "video" and 1 more · Dec 1'


def test_subject_quotes_a_query_with_quotes_typographically() -> None:
    s = sref(1, '"diffusion transformer" OR dit')
    digest = build({1: (paper(1), [s])})
    assert digest.subject == "1 new paper on \u201c\"diffusion transformer\" OR dit\u201d · Dec 1"


def test_never_an_empty_digest() -> None:
    assert build({}) is None
    assert build({}, cadence="instant") is None


def test_compose_marks_matched_words_and_builds_the_link() -> None:
    s = sref(1, "diffusion")
    digest = build({1: (paper(1, "Diffusion Models & You", abstract="We study diffusion. " + "x " * 400), [s])})
    shown = digest.papers[0]
    assert ("Diffusion", True) in shown.title_segments
    assert "".join(piece for piece, _ in shown.title_segments) == "Diffusion Models & You"
    assert ("diffusion", True) in shown.snippet
    assert len("".join(piece for piece, _ in shown.snippet)) <= 310  # a snippet, not the abstract
    assert shown.url == "https://huggingface.co/papers?q=Diffusion+Models+%26+You"
    assert digest.preheader == "Diffusion Models & You"


# =============================================================================== the builder


@pytest.fixture
def dumps(tmp_path: Path) -> Path:
    folder = tmp_path / "dumps"
    folder.mkdir()
    for name in NAMES:
        target = folder / name
        shutil.copyfile(SAMPLES / name, target)
        os.chmod(target, 0o644)
        os.utime(target, (MTIME, MTIME))
    return folder


def settings(tmp_path: Path, **changes) -> Settings:
    values = dict(outbox_dir=tmp_path / "outbox", secret_key="test-secret", base_url="https://digest.example.com",
                  from_email="digest@example.com")
    return Settings(**(values | changes))


def sub(engine: Engine, recipient: str, query: str, *, cadence: str = "daily", at: str = "08:00", day: str = "mon",
        tz: str = "UTC", name: str | None = None, now: datetime = T0, backfill: int = 0) -> int:
    created, _ = subscribe(Store(engine), recipient, query, schedule=parse_schedule(cadence, at, day, tz), name=name,
                           backfill_days=backfill, now=now)
    return created.id


def ingest(engine: Engine, *paths: Path, now: datetime = INGEST) -> None:
    report = ingest_paths(Store(engine), list(paths), now=now, settle_seconds=0, matcher=SubscriptionMatcher())
    assert report.files and all(f.status == "ingested" for f in report.files), report.as_json()


def matched_ids(engine: Engine, *sub_ids: int) -> set[int]:
    with Session(engine) as session:
        return set(session.scalars(select(Match.paper_id).where(Match.subscription_id.in_(sub_ids))))


def outbox(engine: Engine) -> list[OutboxMessage]:
    with Session(engine) as session:
        return list(session.scalars(select(OutboxMessage).order_by(OutboxMessage.id)))


def items(engine: Engine, digest_key: str | None = None) -> list[tuple[int, str, int]]:
    statement = select(DigestItem.recipient_id, DigestItem.cadence, DigestItem.paper_id)
    if digest_key is not None:
        statement = statement.where(DigestItem.digest_key == digest_key)
    with Session(engine) as session:
        return [tuple(r) for r in session.execute(statement)]


def digested_until(engine: Engine, sub_id: int) -> datetime | None:
    with Session(engine) as session:
        return session.get(Subscription, sub_id).digested_until


def numbered_titles(text: str) -> list[str]:
    return re.findall(r"^\d+\. (.+)$", text, flags=re.MULTILINE)


def test_daily_digest_is_due_only_after_its_local_time_and_built_once_per_window(engine, dumps, tmp_path) -> None:
    # 08:00 in Berlin is 07:00 UTC in December.
    sid = sub(engine, "ada@example.org", "diffusion", tz="Europe/Berlin")
    ingest(engine, dumps / NAMES[0])
    expected = matched_ids(engine, sid)
    assert expected
    builder = bootstrap(settings(tmp_path), engine=engine).digests

    assert builder.build_due(utc(2025, 12, 1, 6, 59)) == []  # 07:59 local
    assert outbox(engine) == []

    [built] = builder.build_due(utc(2025, 12, 1, 7, 0))  # 08:00 local
    assert (built.recipient, built.cadence, built.papers, built.messages) == (
        "ada@example.org", "daily", len(expected), 1)
    assert built.subject == f'{len(expected)} new papers on "diffusion" · Dec 1'
    [row] = outbox(engine)
    assert (row.channel, row.status, row.part, row.digest_key) == ("email", "pending", 1, built.digest_key)
    assert {p for _, _, p in items(engine, built.digest_key)} == expected
    assert digested_until(engine, sid) == utc(2025, 12, 1, 7, 0)

    # Same window: nothing more, at the same time or later that day.
    assert builder.build_due(utc(2025, 12, 1, 7, 0)) == []
    assert builder.build_due(utc(2025, 12, 1, 22, 0)) == []
    assert builder.build_due(utc(2025, 12, 2, 6, 59)) == []
    # Next window: due, but nothing new to say, so no message; the window is still used up.
    assert builder.build_due(utc(2025, 12, 2, 7, 0)) == []
    assert digested_until(engine, sid) == utc(2025, 12, 2, 7, 0)
    assert len(outbox(engine)) == 1


def test_digest_after_a_downtime_is_caught_up_once(engine, dumps, tmp_path) -> None:
    sid = sub(engine, "ada@example.org", "transformer")
    ingest(engine, dumps / NAMES[0])
    builder = bootstrap(settings(tmp_path), engine=engine).digests

    built = builder.build_due(utc(2025, 12, 5, 12, 0))  # four missed 08:00 windows
    assert len(built) == 1
    assert built[0].papers == len(matched_ids(engine, sid))
    assert built[0].subject.endswith("· Dec 5")
    assert len(outbox(engine)) == 1
    assert digested_until(engine, sid) == utc(2025, 12, 5, 8, 0)
    assert builder.build_due(utc(2025, 12, 5, 13, 0)) == []

    before = matched_ids(engine, sid)
    ingest(engine, dumps / NAMES[1], now=utc(2025, 12, 5, 14, 0))
    [second] = builder.build_due(utc(2025, 12, 9, 9, 0))  # again several windows late
    assert second.papers == len(matched_ids(engine, sid) - before) > 0
    assert len(outbox(engine)) == 2


def test_a_paper_matched_by_two_subscriptions_appears_once_with_both_labels(engine, dumps, tmp_path) -> None:
    dit = sub(engine, "ada@example.org", '"diffusion transformer" OR dit', name="DiT")
    diffusion = sub(engine, "ada@example.org", "diffusion")
    ingest(engine, dumps / NAMES[0])
    both = matched_ids(engine, dit) & matched_ids(engine, diffusion)
    union = matched_ids(engine, dit) | matched_ids(engine, diffusion)
    assert both and union - both  # the samples give both kinds

    builder = bootstrap(settings(tmp_path, digest_max_papers=500), engine=engine).digests
    [built] = builder.build_due(utc(2025, 12, 1, 8, 0))
    assert built.papers == len(union)
    assert built.subject == f'{len(union)} new papers on "DiT" and 1 more · Dec 1'
    [row] = outbox(engine)  # one message for the two subscriptions
    payload = json.loads(row.payload)
    titles = numbered_titles(payload["text"])
    assert len(titles) == len(set(titles)) == len(union)  # each paper once
    with Session(engine) as session:
        both_titles = set(session.scalars(select(Paper.title).where(Paper.id.in_(both))))
    assert set(titles[:len(both)]) == both_titles  # matched by more subscriptions: first
    assert payload["text"].count("Matched \u201cDiT\u201d, \u201cdiffusion\u201d") == len(both)
    assert payload["html"].count("Matched \u201cDiT\u201d, \u201cdiffusion\u201d") == len(both)
    stored = items(engine)
    assert len(stored) == len(union) and {p for _, _, p in stored} == union


def modified_dump(original: Path, target: Path) -> tuple[Path, list[str]]:
    """The dump with one abstract changed and two papers appended; returns it and the new titles."""
    text = original.read_text(encoding="utf-8")
    first_abstract = text.split("\n\n")[6]  # after the chrome lines and the first title
    assert len(first_abstract) > 200
    text = text.replace(first_abstract, first_abstract + " We also release diffusion code.", 1)
    added = {
        "Sparse Diffusion Samplers for Tiny Devices": "We propose a diffusion sampler that runs on microcontrollers.",
        "Diffusion Policies Without Rewards": "Robot policies learned by diffusion from demonstrations alone.",
    }
    for title, abstract in added.items():
        text += f"\n\n{title}\n\n{abstract}\n\n  • 3 authors\n·\nNov 20, 2025\n"
    new_titles = list(added)
    target.write_text(text, encoding="utf-8")
    os.utime(target, (MTIME, MTIME))
    return target, new_titles


def test_a_recipient_never_gets_the_same_paper_twice_in_a_cadence(engine, dumps, tmp_path) -> None:
    sub(engine, "ada@example.org", "diffusion")
    ingest(engine, dumps / NAMES[0])
    builder = bootstrap(settings(tmp_path, digest_max_papers=500), engine=engine).digests
    [first] = builder.build_due(utc(2025, 12, 1, 8, 0))
    first_papers = {p for _, _, p in items(engine, first.digest_key)}
    assert first.papers == len(first_papers) > 0

    # A second ingest of a modified dump: one paper updated, two added.
    changed, new_titles = modified_dump(dumps / NAMES[0], tmp_path / "modified.txt")
    report = ingest_paths(Store(engine), [changed], now=utc(2025, 12, 1, 12, 0), settle_seconds=0,
                          matcher=SubscriptionMatcher())
    assert (report.new, report.updated) == (2, 1)
    [second] = builder.build_due(utc(2025, 12, 2, 8, 0))
    assert second.papers == 2
    payload = json.loads(outbox(engine)[-1].payload)
    assert sorted(numbered_titles(payload["text"])) == sorted(new_titles)

    # A new subscription backfilled over the same days matches papers already sent: they stay out.
    backfilled = sub(engine, "ada@example.org", "transformer OR diffusion", now=utc(2025, 12, 2, 9, 0), backfill=3)
    sent = {p for _, _, p in items(engine)}
    again = matched_ids(engine, backfilled) & sent
    assert again  # the backfill did re-match papers already in a digest
    [third] = builder.build_due(utc(2025, 12, 3, 8, 0))
    third_papers = {p for _, _, p in items(engine, third.digest_key)}
    assert third_papers == matched_ids(engine, backfilled) - sent
    assert not third_papers & sent

    rows = items(engine)
    assert len(rows) == len(set(rows))  # no (recipient, cadence, paper) twice
    assert len(outbox(engine)) == 3
    assert builder.build_due(utc(2025, 12, 4, 8, 0)) == []

    # Another cadence of the same recipient is another record: it may carry the same papers.
    instant = sub(engine, "ada@example.org", "diffusion", cadence="instant", now=utc(2025, 12, 4, 9, 0), backfill=5)
    [alert] = builder.build_due(utc(2025, 12, 4, 9, 5), cadence="instant")
    assert alert.papers == len(matched_ids(engine, instant)) > 0


def test_instant_alerts_are_one_message_per_recipient_per_build(engine, dumps, tmp_path) -> None:
    a1 = sub(engine, "ada@example.org", "quantiz*", cadence="instant")
    a2 = sub(engine, "ada@example.org", "video", cadence="instant")
    b1 = sub(engine, "bob@example.org", "3d", cadence="instant")
    sub(engine, "ada@example.org", "transformer")  # daily: not due at 06:45
    ingest(engine, dumps / NAMES[0])
    builder = bootstrap(settings(tmp_path, digest_max_papers=500), engine=engine).digests

    built = builder.build_due(utc(2025, 12, 1, 6, 45))
    assert sorted((b.recipient, b.cadence) for b in built) == [("ada@example.org", "instant"),
                                                                ("bob@example.org", "instant")]
    by_recipient = {b.recipient: b for b in built}
    assert by_recipient["ada@example.org"].papers == len(matched_ids(engine, a1, a2))
    assert by_recipient["bob@example.org"].papers == len(matched_ids(engine, b1))
    assert len(outbox(engine)) == 2
    assert all(r.kind == "instant" and r.channel == "email" for r in outbox(engine))

    assert builder.build_due(utc(2025, 12, 1, 6, 46), cadence="instant") == []  # nothing new
    ingest(engine, dumps / NAMES[1], now=utc(2025, 12, 1, 6, 50))
    new = len(matched_ids(engine, a1, a2)) - by_recipient["ada@example.org"].papers
    later = builder.build_due(utc(2025, 12, 1, 6, 55), cadence="instant")
    assert [b.recipient for b in later if b.recipient == "ada@example.org"] == ["ada@example.org"]
    assert {b.recipient: b.papers for b in later}["ada@example.org"] == new
    assert len(outbox(engine)) == 2 + len(later)


def test_dry_run_queues_nothing(engine, dumps, tmp_path) -> None:
    sid = sub(engine, "ada@example.org", "diffusion")
    ingest(engine, dumps / NAMES[0])
    builder = bootstrap(settings(tmp_path), engine=engine).digests
    [would] = builder.build_due(utc(2025, 12, 1, 8, 0), dry_run=True)
    assert would.papers == len(matched_ids(engine, sid))
    assert outbox(engine) == [] and items(engine) == []
    assert digested_until(engine, sid) is None
    [real] = builder.build_due(utc(2025, 12, 1, 8, 0))  # the dry run used up nothing
    assert (real.subject, real.papers) == (would.subject, would.papers)
    assert len(outbox(engine)) == 1


def test_a_suspended_recipient_gets_nothing(engine, dumps, tmp_path) -> None:
    sub(engine, "ada@example.org", "diffusion")
    sub(engine, "ada@example.org", "video", cadence="instant")
    sub(engine, "bob@example.org", "diffusion")
    ingest(engine, dumps / NAMES[0])
    with Session(engine) as session, session.begin():
        session.execute(update(Recipient).where(Recipient.address == "ada@example.org")
                        .values(suspended_at=utc(2025, 12, 1, 7, 0)))
    builder = bootstrap(settings(tmp_path), engine=engine).digests
    built = builder.build_due(utc(2025, 12, 1, 8, 0))
    assert [b.recipient for b in built] == ["bob@example.org"]
    with Session(engine) as session:
        ada = session.scalar(select(Recipient.id).where(Recipient.address == "ada@example.org"))
        assert session.scalar(select(func.count()).select_from(OutboxMessage)
                              .where(OutboxMessage.recipient_id == ada)) == 0
    assert builder.preview("ada@example.org", utc(2025, 12, 1, 8, 0)) is None


def test_slack_recipients_get_one_outbox_row_per_slack_message(engine, dumps, tmp_path) -> None:
    sid = sub(engine, "slack:#papers", "transformer")
    ingest(engine, dumps / NAMES[0])
    papers = len(matched_ids(engine, sid))
    assert papers > 24  # more than fit in 50 blocks at two blocks a paper
    builder = bootstrap(settings(tmp_path, digest_max_papers=500), engine=engine).digests
    [built] = builder.build_due(utc(2025, 12, 1, 8, 0))
    rows = outbox(engine)
    assert built.messages == len(rows) >= 3
    assert [r.part for r in rows] == list(range(1, len(rows) + 1))
    assert {(r.channel, r.digest_key, r.kind) for r in rows} == {("slack", built.digest_key, "daily")}
    payloads = [json.loads(r.payload) for r in rows]
    assert [p["key"] for p in payloads] == [f"{built.digest_key}-{n}" for n in range(1, len(rows) + 1)]
    assert {p["channel"] for p in payloads} == {"#papers"}
    links = sum(1 for p in payloads for b in p["blocks"] if b["type"] == "section" and "|" in b["text"]["text"])
    assert links == papers  # every paper in exactly one message
    assert all(len(p["blocks"]) <= 50 for p in payloads)


def test_weekly_digest_is_due_on_its_local_weekday(engine, dumps, tmp_path) -> None:
    sid = sub(engine, "ada@example.org", "diffusion", cadence="weekly", at="09:00", day="mon", tz="Europe/Berlin",
              now=utc(2025, 12, 2, 10, 0))
    ingest(engine, dumps / NAMES[0], now=utc(2025, 12, 2, 11, 0))
    builder = bootstrap(settings(tmp_path), engine=engine).digests
    assert builder.build_due(utc(2025, 12, 7, 20, 0)) == []  # Sunday
    assert builder.build_due(utc(2025, 12, 8, 7, 59)) == []  # Monday 08:59 local
    [built] = builder.build_due(utc(2025, 12, 8, 8, 0))  # Monday 09:00 local
    assert built.cadence == "weekly"
    assert built.subject == f'{len(matched_ids(engine, sid))} new papers on "diffusion" · week of Dec 1'
    assert builder.build_due(utc(2025, 12, 14, 12, 0)) == []


def test_preview_returns_payloads_without_writing_rows(engine, dumps, tmp_path) -> None:
    sid = sub(engine, "ada@example.org", "diffusion")
    slack = sub(engine, "slack:#papers", "diffusion")
    ingest(engine, dumps / NAMES[0])
    builder = bootstrap(settings(tmp_path, postal_address="1 Main St, Springfield"), engine=engine).digests

    found = builder.preview("ada@example.org", utc(2025, 12, 1, 7, 0))  # before it is even due
    assert found is not None
    recipient, digest, payloads = found
    assert recipient.address == "ada@example.org"
    assert digest.total == len(matched_ids(engine, sid))
    [email] = payloads
    assert email["subject"] == digest.subject and email["to"] == "ada@example.org"
    assert "1 Main St, Springfield" in email["text"]

    _, slack_digest, slack_payloads = builder.preview("slack:#papers", utc(2025, 12, 1, 7, 0))
    assert slack_payloads and all(p["channel"] == "#papers" for p in slack_payloads)
    assert slack_digest.total == len(matched_ids(engine, slack))

    assert outbox(engine) == [] and items(engine) == []
    assert digested_until(engine, sid) is None and digested_until(engine, slack) is None
    assert builder.preview("nobody@example.org", utc(2025, 12, 1, 7, 0)) is None
    # The real build still has everything to send.
    assert len(builder.build_due(utc(2025, 12, 1, 8, 0))) == 2


def test_a_digest_another_process_is_building_is_not_queued_twice(engine, dumps, tmp_path) -> None:
    sid = sub(engine, "ada@example.org", "diffusion")
    ingest(engine, dumps / NAMES[0])
    papers = matched_ids(engine, sid)
    with Session(engine) as session:
        ada = session.scalar(select(Recipient.id).where(Recipient.address == "ada@example.org"))
    builder = bootstrap(settings(tmp_path), engine=engine).digests
    outcome: dict = {}

    def build() -> None:
        try:
            outcome["built"] = builder.build_due(utc(2025, 12, 1, 8, 0))
        except BaseException as exc:  # noqa: BLE001 - reported below
            outcome["error"] = exc

    # The other process has written its digest's items and not committed yet: on PostgreSQL this
    # build writes the same items, waits, and then meets the other's (a conflict: it queues
    # nothing); on SQLite it waits for the write lock and finds the papers already sent.
    with engine.connect() as other:
        other.begin()
        other.execute(insert(DigestItem), [
            {"recipient_id": ada, "cadence": "daily", "paper_id": p, "digest_key": "d-other", "created_at": INGEST}
            for p in papers])
        thread = threading.Thread(target=build)
        thread.start()
        time.sleep(1.0)
        other.commit()
    thread.join(60)
    assert "error" not in outcome, outcome.get("error")
    assert outcome["built"] == [] and outbox(engine) == []
    assert {p for _, _, p in items(engine)} == papers and {k for k, in _digest_keys(engine)} == {"d-other"}


def test_digest_items_recorded_twice_are_a_conflict_that_undoes_the_transaction(store, engine, dumps) -> None:
    sid = sub(engine, "ada@example.org", "diffusion")
    ingest(engine, dumps / NAMES[0])
    paper = min(matched_ids(engine, sid))
    with store.reading() as tx:
        ada = tx.subscriptions.digest_subscriptions(address="ada@example.org")[0].recipient_id
    with store.transaction() as tx:
        tx.outbox.record_digest(ada, "daily", [paper], "d-first", INGEST)
    with pytest.raises(Conflict), store.transaction() as tx:
        tx.outbox.queue([NewMessage(ada, "email", "daily", "d-second", "s", {"key": "d-second-1"})], now=INGEST)
        tx.outbox.record_digest(ada, "daily", [paper], "d-second", INGEST)
    assert outbox(engine) == [] and [k for k, in _digest_keys(engine)] == ["d-first"]
    with store.transaction() as tx:  # another cadence is another digest
        tx.outbox.record_digest(ada, "weekly", [paper], "d-weekly", INGEST)


def _digest_keys(engine: Engine) -> list[tuple[str]]:
    with Session(engine) as session:
        return [tuple(r) for r in session.execute(select(DigestItem.digest_key).distinct())]
