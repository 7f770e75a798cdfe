"""Subscribe, unsubscribe, list and bulk-import subscriptions.

Each public function is one use case in a transaction of its own, given the ``Store``. The few
that other use cases run inside their own transaction have a twin taking the ``Transaction``,
named with ``_in`` (``subscribe_in``, ``unsubscribe_in``, ``unsubscribe_recipient_in``,
``list_subscriptions_in``). Nothing here moves the subscriptions version: every change does,
by itself (see ``digestbot.store.subscriptions``).
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from digestbot.core.printable import unprintable
from digestbot.core.query import parse_query
from digestbot.core.recipients import Recipient, parse_recipient, shown
from digestbot.core.schedule import Schedule, parse_schedule
from digestbot.errors import DigestbotError, NotFound, UsageError
from digestbot.services import likes
from digestbot.services.likes import add_likes, check_like_options, default_top
from digestbot.services.relevance import resolve_papers
from digestbot.services.matching import papers_matching, papers_since, store_query_matches
from digestbot.store import Store, Subscription, Transaction

MAX_NAME = 200
MAX_BACKFILL_DAYS = 36500  # a century: more than any store holds, and far from datetime's limits
MAX_TOP = 1000  # --top N: more would be all the papers of any window


def check_top(value: int | str | None) -> int | None:
    """A --top N (a number from 1 to MAX_TOP, or None/empty for every paper); UsageError otherwise."""
    if value is None or value == "":
        return None
    try:
        top = int(value)
    except (TypeError, ValueError):
        raise UsageError(f"top must be a number of papers from 1 to {MAX_TOP}, not {value!r}") from None
    if not 1 <= top <= MAX_TOP:
        raise UsageError(f"top must be a number of papers from 1 to {MAX_TOP}, not {top}")
    return top


def subscription_json(sub: Subscription, likes: list[str] | None = None) -> dict:
    """The subscription as `subscriptions --json` prints it (a webhook URL shown, not given away),
    with the titles of its examples if it is a "more like these" subscription."""
    return {
        "id": sub.id, "recipient": shown(sub.recipient.address), "query": sub.query, "name": sub.name,
        "cadence": sub.cadence, "at": sub.send_at, "day": sub.weekday, "tz": sub.timezone,
        "active": sub.active, "pending": sub.pending, "created_at": sub.created_at.isoformat(),
        "match_since": sub.match_since.isoformat(), "top": sub.top,
        "likes": likes or [], "like_top": sub.like_top, "like_threshold": sub.like_threshold,
    }


def schedule_label(sub: Subscription) -> str:
    """"daily at 08:00 (Europe/Paris)", as a subscriber would say it."""
    if sub.cadence == "instant":
        return "as soon as they appear"
    day = f" on {sub.weekday.capitalize()}" if sub.cadence == "weekly" else ""
    return f"{sub.cadence}{day} at {sub.send_at} ({sub.timezone})"


def _check_name(name: str | None) -> str | None:
    """The name as stored: one line of printable text, like a query (it is shown in subjects)."""
    if name is None:
        return None
    if len(name) > MAX_NAME:
        raise UsageError(f"the name is longer than {MAX_NAME} characters")
    kept = name.strip()
    found = unprintable(kept)
    if found is not None:
        index, what = found
        column = len(name) - len(name.lstrip()) + index + 1
        raise UsageError(f"bad name: {what} at column {column}: a name is one line of printable text")
    return kept or None


def subscribe(
    store: Store, recipient: str, query: str, *, schedule: Schedule, name: str | None = None,
    backfill_days: int = 0, pending: bool = False, private_webhooks: bool = False, now: datetime,
    top: int | None = None,
    likes: tuple[str, ...] = (), like_top: int | None = None, like_threshold: float | None = None,
) -> tuple[Subscription, int]:
    """Create a subscription; with ``backfill_days``, match the papers of those last days now.
    ``top``: each digest keeps the subscription's ``top`` most upvoted papers of its window.
    With ``likes`` (stored titles), a "more like these" subscription (see services.likes).

    A ``pending`` subscription (made on the web page) stays inactive until ``confirm``.
    ``private_webhooks`` (DIGESTBOT_ALLOW_PRIVATE_WEBHOOKS) lets a webhook point inside the network.

    Returns the subscription (its recipient loaded) and the number of papers it matched on backfill.
    """
    with store.transaction() as tx:
        return subscribe_in(tx, recipient, query, schedule=schedule, name=name, backfill_days=backfill_days,
                            pending=pending, private_webhooks=private_webhooks, now=now, top=top, likes=likes,
                            like_top=like_top, like_threshold=like_threshold)


def subscribe_in(
    tx: Transaction, recipient: str, query: str, *, schedule: Schedule, name: str | None = None,
    backfill_days: int = 0, pending: bool = False, private_webhooks: bool = False, now: datetime,
    top: int | None = None,
    likes: tuple[str, ...] = (), like_top: int | None = None, like_threshold: float | None = None,
) -> tuple[Subscription, int]:
    """``subscribe``, in the caller's transaction (the web page's subscribe, the Slack command)."""
    target = parse_recipient(recipient, private_webhooks=private_webhooks)
    if not query.strip() and not likes:
        raise UsageError("give a QUERY, or --like examples (stored paper titles), or both")
    node = parse_query(query) if query.strip() else None
    check_like_options(likes, like_top, like_threshold)
    if not 0 <= backfill_days <= MAX_BACKFILL_DAYS:
        raise UsageError(f"--backfill takes a number of days from 0 to {MAX_BACKFILL_DAYS}, not {backfill_days}")
    sub = tx.subscriptions.add(Subscription(
        recipient=tx.subscriptions.recipient_for(target.address, target.kind, now), query=query.strip(),
        name=_check_name(name), cadence=schedule.cadence, send_at=schedule.at, weekday=schedule.day,
        timezone=schedule.tz, active=not pending, pending=pending, created_at=now, updated_at=now,
        match_since=now - timedelta(days=backfill_days), top=check_top(top),
    ))
    if likes:
        add_likes(tx, sub, list(likes), like_top, like_threshold, named=name is not None)
    backfilled = 0
    if backfill_days and node is not None:
        matched = papers_matching(node, papers_since(tx, sub.match_since))
        backfilled = store_query_matches(tx, [(sub.query, matched)])
    return sub, backfilled



def _end(sub: Subscription, now: datetime) -> None:
    sub.active, sub.updated_at = False, now


def unsubscribe(store: Store, subscription_id: int, now: datetime) -> Subscription:
    with store.transaction() as tx:
        return unsubscribe_in(tx, subscription_id, now)


def unsubscribe_in(tx: Transaction, subscription_id: int, now: datetime) -> Subscription:
    """``unsubscribe``, in the caller's transaction (the Slack command)."""
    sub = tx.subscriptions.get(subscription_id)
    if sub is None:
        raise NotFound(f"no subscription with id {subscription_id}", hint="see 'digestbot subscriptions'")
    if sub.active:
        _end(sub, now)
    return sub


def unsubscribe_recipient(store: Store, recipient: str, now: datetime) -> list[Subscription]:
    with store.transaction() as tx:
        return unsubscribe_recipient_in(tx, recipient, now)


def unsubscribe_recipient_in(tx: Transaction, recipient: str, now: datetime) -> list[Subscription]:
    """``unsubscribe_recipient``, in the caller's transaction (SendGrid's unsubscribe events)."""
    address = parse_recipient(recipient, private_webhooks=True).address  # a lookup: any stored address
    subs = tx.subscriptions.listed(address)
    if not subs:
        raise NotFound(f"{address} has no active subscriptions")
    for sub in subs:
        _end(sub, now)
    return subs


def like_titles(store: Store, subs: list[Subscription]) -> dict[int, list[str]]:
    """The titles of the examples of these subscriptions, by subscription id."""
    with store.reading() as tx:
        return likes.like_titles(tx, [s.id for s in subs])


def list_subscriptions(store: Store, recipient: str | None = None, include_inactive: bool = False
                       ) -> list[Subscription]:
    with store.reading() as tx:
        return list_subscriptions_in(tx, recipient, include_inactive)


def list_subscriptions_in(tx: Transaction, recipient: str | None = None, include_inactive: bool = False
                          ) -> list[Subscription]:
    """``list_subscriptions``, in the caller's transaction (the Slack command)."""
    address = None if recipient is None else parse_recipient(recipient, private_webhooks=True).address  # a lookup
    return tx.subscriptions.listed(address, include_inactive)


@dataclass
class ImportReport:
    imported: int = 0
    errors: list[tuple[int, str]] = field(default_factory=list)  # (line number, reason)

    def as_json(self) -> dict:
        return {"imported": self.imported, "failed": len(self.errors),
                "errors": [{"line": line, "error": reason} for line, reason in self.errors]}


REQUIRED_COLUMNS = ("recipient", "query")
OPTIONAL_COLUMNS = ("cadence", "at", "day", "tz", "name", "top", "like")  # like: stored titles, |-separated


def import_subscriptions(store: Store, text: str, now: datetime, *, private_webhooks: bool = False,
                         like_top_per_week: int | None = None, like_threshold: float | None = None) -> ImportReport:
    """Import CSV rows (``recipient,query`` plus optional ``cadence,at,day,tz,name,top,like``).

    Bad rows are reported by line number and skipped; good rows are inserted in bulk.
    ``private_webhooks`` as for ``subscribe``.
    """
    report = ImportReport()
    reader = csv.DictReader(io.StringIO(text.removeprefix("\ufeff")), strict=True)
    header = [h.strip().lower() for h in (reader.fieldnames or [])]
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        raise UsageError(f"the CSV header must name {', '.join(REQUIRED_COLUMNS)}; missing {', '.join(missing)}")
    unknown = [h for h in header if h not in REQUIRED_COLUMNS + OPTIONAL_COLUMNS]
    if unknown:
        raise UsageError(f"unknown CSV column(s): {', '.join(map(_shown, unknown))}")
    twice = sorted({h for h in header if header.count(h) > 1})
    if twice:  # DictReader would keep the last one's value and drop the other without a word
        raise UsageError(f"the CSV header names {', '.join(twice)} more than once")
    reader.fieldnames = header

    recipients: dict[str, Recipient] = {}
    schedules: dict[tuple, Schedule] = {}
    parsed_queries: set[str] = set()
    rows: list[tuple[Recipient, dict, list[str]]] = []
    for line, record in _records(reader, report):
        try:
            if None in record:
                raise UsageError("more fields than the header has")
            raw = {k: (v or "").strip() for k, v in record.items()}
            written = raw["recipient"]
            target = recipients.get(written)
            if target is None:
                target = recipients[written] = parse_recipient(written, private_webhooks=private_webhooks)
            like = [t.strip() for t in raw.get("like", "").split("|") if t.strip()]
            if like:
                with store.reading() as known_papers:
                    resolve_papers(known_papers, like)
            if (raw["query"] or not like) and raw["query"] not in parsed_queries:
                parse_query(raw["query"])
                parsed_queries.add(raw["query"])
            key = (raw.get("cadence") or "daily", raw.get("at") or "08:00", raw.get("day") or "mon",
                   raw.get("tz") or "UTC")
            schedule = schedules.get(key)
            if schedule is None:
                schedule = schedules[key] = parse_schedule(*key)
            rows.append((target, {
                "query": raw["query"], "name": _check_name(raw.get("name") or None),
                "cadence": schedule.cadence, "send_at": schedule.at, "weekday": schedule.day,
                "timezone": schedule.tz, "top": check_top(raw.get("top") or None),
            }, like))
        except DigestbotError as exc:
            report.errors.append((line, exc.message))
    if not rows:
        return report

    addresses = {target.address: target for target, _, _ in rows}
    with store.transaction() as tx:
        subscriptions = tx.subscriptions
        known = subscriptions.recipient_ids(list(addresses))
        fresh = [{"address": a, "kind": t.kind, "created_at": now} for a, t in addresses.items() if a not in known]
        if fresh:
            subscriptions.add_recipients(fresh)
            known = subscriptions.recipient_ids(list(addresses))
        report.imported = subscriptions.add_many([
            {**values, "recipient_id": known[target.address], "active": True, "created_at": now, "updated_at": now,
             "match_since": now}
            for target, values, like in rows if not like
        ])
        for target, values, like in rows:
            if like:  # one by one: the examples refer to the subscription's id
                sub = subscriptions.add(Subscription(**values, recipient_id=known[target.address], active=True,
                                                     created_at=now, updated_at=now, match_since=now))
                top = None if like_top_per_week is None else default_top(sub.cadence, like_top_per_week)
                add_likes(tx, sub, like, top, like_threshold, named=values["name"] is not None)
                report.imported += 1
    return report


def _shown(cell: str) -> str:
    """A header cell in a one-line message: as it is when it is plain, else quoted with escapes."""
    return cell if cell.isprintable() and cell.strip() == cell and cell else repr(cell)


def _records(reader: csv.DictReader, report: ImportReport):
    """(line, record) pairs; malformed CSV (an unclosed quote…) is reported where it starts."""
    while True:
        start = reader.line_num + 1  # a quoted field may span lines: report where the record begins
        try:
            record = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            report.errors.append((start, f"malformed CSV ({exc}); the rest of the file was not read"))
            return
        yield start, record


def set_active(store: Store, subscription_id: int, active: bool, now: datetime) -> Subscription:
    with store.transaction() as tx:
        sub = tx.subscriptions.get(subscription_id)
        if sub is None:
            raise NotFound(f"no subscription with id {subscription_id}")
        sub.active, sub.updated_at = active, now
        return sub


# ---- self-service (the web pages and the Slack command) ----
# Every function here takes the recipient the caller proved it acts for (a signed token, a
# verified Slack request) and touches only that recipient's subscriptions.

def recipient_subscriptions(store: Store, recipient_id: int) -> list[Subscription]:
    """A recipient's subscriptions, deleted ones left out, oldest first."""
    with store.reading() as tx:
        return tx.subscriptions.of_recipient(recipient_id)


def named_subscriptions(store: Store, recipient_id: int, subscription_ids: list[int]) -> list[Subscription]:
    """Those of ``subscription_ids`` (as a link names them) that belong to this recipient and are not deleted."""
    with store.reading() as tx:
        return tx.subscriptions.of_recipient(recipient_id, subscription_ids)


def _owned(tx: Transaction, recipient_id: int, subscription_id: int) -> Subscription:
    sub = tx.subscriptions.get(subscription_id)
    if sub is None or sub.recipient_id != recipient_id or sub.deleted_at is not None:
        raise NotFound(f"no subscription with id {subscription_id}")
    return sub


def owned_subscription(store: Store, recipient_id: int, subscription_id: int) -> Subscription:
    """The subscription, if it belongs to this recipient and is not deleted; else NotFound."""
    with store.reading() as tx:
        return _owned(tx, recipient_id, subscription_id)


def confirm(store: Store, recipient_id: int, subscription_ids: list[int], now: datetime) -> list[Subscription]:
    """Double opt-in: the address's owner clicked the link. Pending subscriptions start now.

    Confirming again is harmless. A click proves the address receives mail, so a suspension
    (after a bounce, say) is lifted.
    """
    with store.transaction() as tx:
        subs = tx.subscriptions.of_recipient(recipient_id, subscription_ids)
        for sub in subs:
            if sub.pending:
                sub.pending, sub.active, sub.match_since, sub.updated_at = False, True, now, now
        recipient = tx.subscriptions.recipient(recipient_id)
        if subs and recipient is not None and recipient.suspended_at is not None:
            recipient.suspended_at = recipient.suspended_reason = None
        return subs


def set_paused(store: Store, recipient_id: int, subscription_id: int, paused: bool, now: datetime) -> Subscription:
    """Pause or resume one of the recipient's subscriptions. A pending one is resumed only by confirming it."""
    with store.transaction() as tx:
        sub = _owned(tx, recipient_id, subscription_id)
        if sub.pending:
            raise UsageError("this subscription is waiting for its confirmation email to be clicked")
        if sub.active == paused:
            sub.active, sub.updated_at = not paused, now
        return sub


def edit(store: Store, recipient_id: int, subscription_id: int, *, query: str, schedule: Schedule, now: datetime
         ) -> Subscription:
    """Change the query and the schedule. A new query matches papers from now on, like a new subscription."""
    parse_query(query)  # refused here, with the column, before anything changes
    query = query.strip()
    with store.transaction() as tx:
        sub = _owned(tx, recipient_id, subscription_id)
        if query != sub.query:
            sub.query, sub.match_since = query, now
        sub.cadence, sub.send_at, sub.weekday, sub.timezone = schedule.cadence, schedule.at, schedule.day, schedule.tz
        sub.updated_at = now
        return sub


def delete(store: Store, recipient_id: int, subscription_id: int, now: datetime) -> Subscription:
    """Gone from every list. The row stays, inactive, so that matchers see the change."""
    with store.transaction() as tx:
        sub = _owned(tx, recipient_id, subscription_id)
        sub.active, sub.pending, sub.deleted_at, sub.updated_at = False, False, now, now
        return sub


def unsubscribe_owned(store: Store, recipient_id: int, subscription_ids: list[int], now: datetime
                      ) -> list[Subscription]:
    """The unsubscribe link: stop these subscriptions of this recipient (others' ids are ignored)."""
    with store.transaction() as tx:
        subs = tx.subscriptions.of_recipient(recipient_id, subscription_ids)
        for sub in subs:
            if sub.active or sub.pending:
                sub.active, sub.pending, sub.updated_at = False, False, now
        return subs


__all__ = [
    "ImportReport", "confirm", "delete", "edit", "import_subscriptions", "list_subscriptions",
    "list_subscriptions_in", "named_subscriptions", "owned_subscription", "recipient_subscriptions", "set_active",
    "set_paused", "subscribe", "subscribe_in", "subscription_json", "unsubscribe", "unsubscribe_in",
    "unsubscribe_owned", "unsubscribe_recipient", "unsubscribe_recipient_in",
]
