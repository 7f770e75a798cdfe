"""Email headers as programs read them, and a bound on what a digest email may weigh.

Headers: List-Unsubscribe (one-click unsubscribe), List-Unsubscribe-Post, List-Id and
Message-ID must be plain ASCII on the wire, never RFC 2047-encoded. Parsing a message with
``policy.default`` decodes encoded-words and would hide the problem, so these tests read the
raw bytes: of the .eml the file channel writes, of what a real SMTP server (aiosmtpd)
received, and of the JSON the fake SendGrid server was posted.

Size: whatever a dump holds (a 2 MB title, 100 KB abstracts, hundreds of subscriptions), a
digest email stays within DIGESTBOT_MAX_EMAIL_BYTES, and the papers left out are counted in
"N more" with the link to the digest's page.
"""

from __future__ import annotations

import email
import email.policy
import json
import re
from datetime import UTC, date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from conftest import copy_samples
from digestbot.bootstrap import bootstrap
from digestbot.channels import FileChannel, PermanentDeliveryError, SendGridChannel, SmtpChannel, channels_for
from digestbot.channels.mime import build_email
from digestbot.core.digest import SUBJECT_MAX, TITLE_MAX, Digest, PaperRef, SubscriptionRef, compose, cut_segments
from digestbot.core.query import parse_query
from digestbot.core.schedule import parse_schedule
from digestbot.core.tokens import LinkSigner
from digestbot.errors import ConfigError
from digestbot.render import Links, Renderer, Sender, list_id, mail_domain
from digestbot.services.delivery import OutboxSender
from digestbot.services.ingest import ingest_paths
from digestbot.services.matching import SubscriptionMatcher
from digestbot.services.subscriptions import subscribe
from digestbot.settings import Settings
from digestbot.store import OutboxMessage, Store
from fakes import FakeSmtp, fake_sendgrid, fake_smtp  # noqa: F401 - fake_* are pytest fixtures

BUDGET = Settings().max_email_bytes
# A long base URL and many subscriptions: the signed unsubscribe URL is far over 78 characters.
SIGNER = LinkSigner("hardening-test-key", "https://digests.example-university.edu/groups/machine-learning/alerts")
SENDER = Sender("digest@example.com", "Papiers du jour — Zoë", "1 Example Street, Berlin")
SEEN = datetime(2025, 11, 21, 9, 0, tzinfo=UTC)
SLOT = datetime(2025, 11, 24, 8, 0, tzinfo=ZoneInfo("Europe/Berlin"))
PAPER_URL = "https://huggingface.co/papers?q={title}"
T0 = datetime(2025, 12, 1, 6, 0, tzinfo=UTC)
DUE = datetime(2025, 12, 1, 8, 0, tzinfo=UTC)  # after the 08:00 UTC daily slot
MTIME = datetime(2025, 11, 1, tzinfo=UTC).timestamp()


@pytest.fixture(autouse=True)
def no_proxies(monkeypatch: pytest.MonkeyPatch) -> None:
    """The SendGrid library sends through $HTTPS_PROXY: keep every request on 127.0.0.1."""
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="module")
def renderer() -> Renderer:
    return Renderer()


def sub(sid: int, label: str, query: str = "diffusion") -> SubscriptionRef:
    return SubscriptionRef(sid, label, parse_query(query))


def paper(pid: int, title: str, abstract: str = "We study diffusion models.", upvotes: int = 0) -> PaperRef:
    return PaperRef(pid, title, abstract, 3, upvotes, date(2025, 11, 20), SEEN)


def digest_of(matched: dict, max_papers: int = 25) -> Digest:
    digest = compose(recipient="ada@example.org", cadence="daily", matched=matched, slot_local=SLOT,
                     max_papers=max_papers, paper_url=PAPER_URL)
    assert digest is not None
    return digest


def links_for(digest: Digest) -> Links:
    ids = [s.id for s in digest.subscriptions]
    return Links(manage=SIGNER.manage_url(7), unsubscribe=SIGNER.unsubscribe_url(7, ids),
                 per_subscription={i: SIGNER.unsubscribe_url(7, [i]) for i in ids},
                 see_all=SIGNER.digest_url(7, "d7-d-0123456789ab"))


def render(renderer: Renderer, digest: Digest, max_bytes: int = BUDGET, sender: Sender = SENDER) -> dict:
    key = "d7-d-0123456789ab-1"
    return renderer.email(digest, links_for(digest), sender, key=key,
                          message_id=f"<{key}@{mail_domain(sender.email)}>", max_bytes=max_bytes)


def size(payload: dict) -> int:
    return len(payload["html"].encode()) + len(payload["text"].encode())


def shown_ids(payload: dict) -> list[int]:
    """Paper numbers in the text part, in order ("Paper 12 about ..." titles)."""
    return [int(n) for n in re.findall(r"^\d+\. Paper (\d+) ", payload["text"], re.MULTILINE)]


def more_line(count: int) -> str:
    return f"...and {count} more {'paper' if count == 1 else 'papers'}: "


# ====================================================================== raw headers


@pytest.fixture(scope="module")
def digest_payload(renderer) -> dict:
    """A real digest payload: non-ASCII subject and sender name, a 100+ character unsubscribe URL."""
    subs = [sub(i, f"Überdiffusion {i}") for i in range(1, 13)]
    digest = digest_of({1: (paper(1, "Diffusion für alle: ein Überblick ✨"), subs)})
    payload = render(renderer, digest)
    assert len(payload["headers"]["List-Unsubscribe"]) > 100
    return payload


def header_lines(raw: bytes) -> dict[str, str]:
    """The header block as written, each header unfolded by removing only the line breaks."""
    head = raw.replace(b"\r\n", b"\n").split(b"\n\n", 1)[0].decode("ascii")
    headers: dict[str, str] = {}
    for line in head.split("\n"):
        if line[:1] in (" ", "\t"):
            headers[name] += line  # the folding whitespace stays: "\n " becomes " "
        else:
            name, _, value = line.partition(":")
            headers[name] = value.removeprefix(" ")
    return headers


def assert_raw_headers(raw: bytes, payload: dict) -> None:
    assert raw.isascii()
    lines = raw.replace(b"\r\n", b"\n").split(b"\n")
    unsubscribe = payload["headers"]["List-Unsubscribe"]
    # Each list header and the Message-ID on one line of its own, exactly as given.
    assert f"List-Unsubscribe: {unsubscribe}".encode() in lines
    assert b"List-Unsubscribe-Post: List-Unsubscribe=One-Click" in lines
    assert b"List-Id: digestbot <digests.example.com>" in lines
    assert f"Message-ID: {payload['message_id']}".encode() in lines
    headers = header_lines(raw)
    for name in ("List-Unsubscribe", "List-Unsubscribe-Post", "List-Id", "Message-ID"):
        assert "=?" not in headers[name], f"{name} is RFC 2047-encoded: {headers[name]!r}"
    # Non-ASCII text is still encoded where RFC 2047 belongs: the subject and the sender's name.
    assert "=?utf-8?" in headers["Subject"] and "Überdiffusion" not in headers["Subject"]
    assert "=?utf-8?" in headers["From"] and headers["From"].endswith(" <digest@example.com>")
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert parsed["Subject"] == payload["subject"]
    assert parsed["From"].addresses[0].display_name == "Papiers du jour — Zoë"


def test_the_file_channel_writes_list_headers_and_message_id_raw(tmp_path: Path, digest_payload) -> None:
    path = FileChannel(tmp_path, "email").send(digest_payload)
    assert_raw_headers(Path(path).read_bytes(), digest_payload)


def test_smtp_sends_list_headers_and_message_id_raw(fake_smtp: FakeSmtp, digest_payload) -> None:
    SmtpChannel("127.0.0.1", fake_smtp.port, timeout=5).send(digest_payload)
    [delivered] = fake_smtp.delivered
    assert_raw_headers(delivered.content, digest_payload)


def test_sendgrid_gets_the_message_id_and_list_headers(fake_sendgrid, digest_payload) -> None:
    SendGridChannel("SG.test-key", fake_sendgrid.url, 5).send(digest_payload)
    [request] = fake_sendgrid.requests
    headers = request.json["headers"]
    assert headers["Message-ID"] == digest_payload["message_id"] == "<d7-d-0123456789ab-1@example.com>"
    assert headers["List-Unsubscribe"] == digest_payload["headers"]["List-Unsubscribe"]
    assert headers["List-Id"] == "digestbot <digests.example.com>"
    assert b"=?" not in request.body  # the JSON carries the raw values


def email_with(headers: dict[str, str], **changes: str) -> dict:
    return {"key": "k-1", "message_id": "<k-1@example.com>", "to": "ada@example.org",
            "from_email": "digest@example.com", "from_name": "Zoë", "subject": "Ünïcode " * 30,
            "text": "text\n", "html": "<p>html</p>", "headers": headers} | changes


def test_a_200_character_url_stays_whole_and_long_values_fold_at_their_spaces() -> None:
    url = "https://digest.example.com/unsubscribe/" + "x" * 200
    value = f"<mailto:unsubscribe@example.com?subject=unsubscribe>, <{url}>"
    raw = build_email(email_with({"List-Unsubscribe": value})).as_bytes()
    lines = raw.split(b"\n")
    start = lines.index(b"List-Unsubscribe: <mailto:unsubscribe@example.com?subject=unsubscribe>,")
    assert lines[start + 1] == f" <{url}>".encode()  # folded at the space, the URL whole
    assert header_lines(raw)["List-Unsubscribe"] == value
    # The long non-ASCII subject is still encoded and folded as usual.
    subject = [line for line in lines if line.startswith(b"Subject:")][0]
    assert subject.startswith(b"Subject: =?utf-8?") and len(subject) <= 78


def test_a_non_ascii_raw_header_is_a_permanent_error(tmp_path: Path) -> None:
    payload = email_with({"List-Id": "digestbot <digests.bücher.example>"})
    with pytest.raises(PermanentDeliveryError, match="malformed email: header value is not ASCII"):
        FileChannel(tmp_path, "email").send(payload)
    assert not (tmp_path / "email").exists()


def test_list_id_and_message_ids_use_an_ascii_sender_domain(renderer) -> None:
    assert mail_domain("digest@Example.COM") == "Example.COM"
    assert mail_domain("digest@bücher.example") == "xn--bcher-kva.example"
    assert mail_domain("digestbot@localhost") == "localhost"
    assert mail_domain("digest@[192.0.2.1]") == "localhost"
    assert mail_domain("digest@") == "localhost"
    assert list_id(Sender("digest@bücher.example", "x")) == "digestbot <digests.xn--bcher-kva.example>"
    digest = digest_of({1: (paper(1, "Diffusion"), [sub(1, "diffusion")])})
    payload = render(renderer, digest, sender=Sender("digest@bücher.example", "Bücher"))
    assert payload["headers"]["List-Id"] == "digestbot <digests.xn--bcher-kva.example>"
    assert payload["message_id"] == "<d7-d-0123456789ab-1@xn--bcher-kva.example>"
    assert build_email(payload).as_bytes().isascii()


# ====================================================================== size


def test_a_2mb_title_and_100kb_abstracts_stay_under_the_bound(renderer) -> None:
    s = sub(1, "diffusion")
    huge = "Paper 1 diffusion " + "é" * 2_000_000
    matched = {1: (paper(1, huge, upvotes=100), [s])}
    matched |= {i: (paper(i, f"Paper {i} about diffusion", "diffusion " + "x" * 100_000, upvotes=100 - i), [s])
                for i in range(2, 31)}
    digest = digest_of(matched)
    assert len(digest.papers[0].title) == TITLE_MAX and digest.papers[0].title.endswith("…")
    assert len(digest.papers[0].url) < 3_000  # the link searches for the title's start, not 2 MB

    payload = render(renderer, digest)
    assert size(payload) <= BUDGET
    assert shown_ids(payload) == list(range(1, 26))
    assert more_line(5) in payload["text"] and "…and 5 more papers." in payload["html"]
    assert len(build_email(payload).as_bytes()) < 2 * BUDGET


def test_papers_are_dropped_from_the_end_and_counted_in_n_more(renderer) -> None:
    s = sub(1, "diffusion")
    title = "Paper {} about diffusion " + "& long words " * 150  # ingest-legal, ~2000 characters
    digest = digest_of({i: (paper(i, title.format(i), upvotes=1000 - i), [s]) for i in range(1, 121)},
                       max_papers=120)
    assert size(render(renderer, digest, max_bytes=10**9)) > BUDGET  # unbounded, it would not fit

    payload = render(renderer, digest)
    shown = shown_ids(payload)
    assert size(payload) <= BUDGET
    assert 10 < len(shown) < 120 and shown == list(range(1, len(shown) + 1))  # the first ones, in order
    more = 120 - len(shown)
    links = links_for(digest)
    assert f"{more_line(more)}{links.see_all}" in payload["text"]
    assert f"…and {more} more papers." in payload["html"] and f'href="{links.see_all}"' in payload["html"]
    # As many as fit: one paper more would not.
    one_more = digest.showing(digest.papers[: len(shown) + 1])
    assert size(render(renderer, one_more, max_bytes=10**9)) > BUDGET


def test_a_first_paper_too_big_alone_is_cut(renderer) -> None:
    s = sub(1, "diffusion")
    digest = digest_of({1: (paper(1, "Paper 1 diffusion " + "<&> " * 1000, "diffusion " * 5000, upvotes=9), [s]),
                        2: (paper(2, "Paper 2 diffusion"), [s])})
    bare = size(render(renderer, digest.showing(()), max_bytes=10**9))
    assert size(render(renderer, digest.showing(digest.papers[:1]), max_bytes=10**9)) > bare + 6_000
    payload = render(renderer, digest, max_bytes=bare + 6_000)
    assert size(payload) <= bare + 6_000
    assert shown_ids(payload) == [1]
    assert more_line(1) in payload["text"]
    title = re.search(r"^1\. (.*)$", payload["text"], re.MULTILINE).group(1)
    assert len(title) == 200 and title.endswith("…")
    snippet = re.search(r"^   (\*?diffusion.*)$", payload["text"], re.MULTILINE).group(1)
    assert snippet.endswith("…") and len(snippet.replace("*", "")) <= 200

    # With no room for even a cut paper, none is shown: every paper is behind the link.
    payload = render(renderer, digest, max_bytes=bare + 100)
    assert shown_ids(payload) == [] and more_line(2) in payload["text"]
    assert size(payload) <= bare + 100


def test_hundreds_of_subscriptions_give_a_short_footer(renderer) -> None:
    subs = [sub(i, f"{i} " + "diffusion OR " * 37 + "diffusion") for i in range(1, 401)]
    digest = digest_of({i: (paper(i, f"Paper {i} about diffusion", upvotes=1000 - i), [subs[i - 1]])
                        for i in range(1, 401)})
    payload = render(renderer, digest)
    assert size(payload) <= BUDGET
    assert "you subscribed ada@example.org to 400 searches." in payload["text"]
    assert "to\n    400 searches." in payload["html"]
    links = links_for(digest)
    assert links.unsubscribe in payload["html"] and links.per_subscription[1] not in payload["html"]
    assert f"Unsubscribe: {links.unsubscribe}" in payload["text"]
    assert shown_ids(payload) == list(range(1, 26))  # the papers still fit


def test_the_subject_is_capped_and_keeps_its_period() -> None:
    long_label = "diffusion " * 60
    digest = digest_of({1: (paper(1, "Diffusion"), [sub(1, long_label), sub(2, "b")])})
    assert len(digest.subject) == SUBJECT_MAX
    assert digest.subject.startswith('1 new paper on "diffusion diffusion')
    assert digest.subject.endswith('…" and 1 more · Nov 24')
    short = digest_of({1: (paper(1, "Diffusion"), [sub(1, "diffusion")])})
    assert short.subject == '1 new paper on "diffusion" · Nov 24'


def test_slack_messages_of_a_huge_title_stay_within_slack_limits(renderer) -> None:
    s = sub(1, "diffusion")
    digest = digest_of({1: (paper(1, "diffusion " * 200_000, "diffusion " * 50_000), [s])})
    messages = renderer.slack(digest, links_for(digest), channel="#papers", key="d7-d-0123456789ab")
    assert len(messages) == 1
    assert len(json.dumps(messages[0], ensure_ascii=False)) < 13_000
    assert all(len(b["text"]["text"]) <= 3000 for b in messages[0]["blocks"] if b["type"] == "section")


def test_the_bound_is_a_setting() -> None:
    assert BUDGET == 300_000
    assert Settings.load({"DIGESTBOT_MAX_EMAIL_BYTES": "120000"}, dotenv_path=None).max_email_bytes == 120_000
    with pytest.raises(ConfigError, match="DIGESTBOT_MAX_EMAIL_BYTES must be at least 50000"):
        Settings(max_email_bytes=10_000)


def test_a_normal_digest_is_not_touched_by_the_bound(renderer) -> None:
    s = sub(1, "diffusion")
    digest = digest_of({i: (paper(i, f"Paper {i} about diffusion", "diffusion " * 300, upvotes=100 - i), [s])
                        for i in range(1, 31)})
    bounded, unbounded = render(renderer, digest), render(renderer, digest, max_bytes=10**9)
    assert bounded == unbounded and size(bounded) < BUDGET // 3
    assert shown_ids(bounded) == list(range(1, 26)) and more_line(5) in bounded["text"]


def test_showing_fewer_papers_counts_the_rest_in_more() -> None:
    digest = digest_of({i: (paper(i, f"Paper {i} diffusion"), [sub(1, "diffusion")]) for i in range(1, 6)})
    fewer = digest.showing(digest.papers[:2])
    assert (fewer.total, fewer.more, digest.more) == (5, 3, 0)
    assert fewer.papers == digest.papers[:2] and fewer.subject == digest.subject


# ====================================================================== end to end


def test_a_built_digest_is_bounded_by_the_setting_and_written_with_raw_headers(engine, tmp_path: Path) -> None:
    """Subscribe, ingest the samples, build, send with the file backend: the .eml as written."""
    settings = Settings(outbox_dir=tmp_path / "outbox", secret_key="k", base_url="https://digest.example.com",
                        from_email="digest@example.com", email_backend="file", digest_max_papers=500,
                        max_email_bytes=50_000)
    subscribe(Store(engine), "ada@example.org", "model OR models", schedule=parse_schedule("daily"), now=T0)
    report = ingest_paths(Store(engine), [copy_samples(tmp_path / "dumps", MTIME)], now=T0, settle_seconds=0,
                          matcher=SubscriptionMatcher())
    assert report.files
    [built] = bootstrap(settings, engine=engine).digests.build_due(DUE)
    assert built.papers > 40  # far more than 50 KB can show

    with Session(engine) as session:
        [row] = session.scalars(select(OutboxMessage)).all()
    payload = json.loads(row.payload)
    assert size(payload) <= 50_000
    shown = payload["text"].count("\n   Matched ")
    assert 5 < shown < built.papers
    assert f"...and {built.papers - shown} more papers: https://digest.example.com/digests/" in payload["text"]

    assert OutboxSender(Store(engine), channels_for(settings), settings).send_all().sent == 1
    [eml] = (tmp_path / "outbox" / "email").glob("*.eml")
    raw = eml.read_bytes()
    lines = raw.split(b"\n")
    assert f"List-Unsubscribe: {payload['headers']['List-Unsubscribe']}".encode() in lines
    assert f"Message-ID: {payload['message_id']}".encode() in lines
    assert b"List-Id: digestbot <digests.example.com>" in lines


def test_cut_segments_keeps_marks_and_the_limit() -> None:
    segments = (("Fast ", False), ("diffusion", True), (" for all", False))
    assert cut_segments(segments, 100) == segments
    assert cut_segments(segments, 9) == (("Fast ", False), ("dif", True), ("…", False))
    for limit in range(1, 23):
        cut = cut_segments(segments, limit)
        assert sum(len(piece) for piece, _ in cut) <= limit and "".join(p for p, _ in cut).startswith("Fast"[:limit - 1])
