"""Rendering digests: escaping of everything that comes from a dump, email structure, Slack
limits and splitting, signed link tokens, and golden files of one fixed digest.

Golden files live in tests/golden/. Set DIGESTBOT_REGENERATE_GOLDEN=1 to rewrite them from the
current templates instead of comparing (then read the diff before keeping it).
"""

from __future__ import annotations

import json
import os
import re
from datetime import UTC, date, datetime
from html.parser import HTMLParser
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from digestbot.core.digest import Digest, PaperRef, SubscriptionRef, compose
from digestbot.core.query import parse_query
from digestbot.core.tokens import BadToken, LinkSigner
from digestbot.render import Links, Renderer, Sender

GOLDEN = Path(__file__).resolve().parent / "golden"
REGENERATE = os.environ.get("DIGESTBOT_REGENERATE_GOLDEN") == "1"
BASE = "https://digest.example.com"
SIGNER = LinkSigner("golden-test-key", BASE)
SENDER = Sender("digest@example.com", "Paper Digest", "Digestbot Ltd, 1 Example Street, 10115 Berlin")
SEEN = datetime(2025, 11, 21, 9, 0, tzinfo=UTC)
EVIL = "<!channel> {{ 7*7 }} <script>alert(1)</script> & @here"
LONG = ("Diffusion models generate images by reversing a noising process. " * 60).strip()


@pytest.fixture(scope="module")
def renderer() -> Renderer:
    return Renderer()


def sref(sid: int, label: str, query: str | None = None) -> SubscriptionRef:
    return SubscriptionRef(sid, label, parse_query(query or label))


def pref(pid: int, title: str, abstract: str, *, upvotes: int | None = None, published: date | None = None,
         authors: int | None = 4) -> PaperRef:
    return PaperRef(pid, title, abstract, authors, upvotes, published, SEEN)


def make_digest(matched: dict, *, cadence: str = "daily", max_papers: int = 25, recipient: str = "ada@example.org",
                slot: datetime = datetime(2025, 11, 24, 8, 0, tzinfo=ZoneInfo("Europe/Berlin"))) -> Digest:
    digest = compose(recipient=recipient, cadence=cadence, matched=matched, slot_local=slot,
                     max_papers=max_papers, paper_url="https://huggingface.co/papers?q={title}")
    assert digest is not None
    return digest


def links_for(digest: Digest, recipient_id: int = 7, key: str = "d7-d-000000000000") -> Links:
    ids = [s.id for s in digest.subscriptions]
    return Links(
        manage=SIGNER.manage_url(recipient_id),
        unsubscribe=SIGNER.unsubscribe_url(recipient_id, ids),
        per_subscription={i: SIGNER.unsubscribe_url(recipient_id, [i]) for i in ids},
        see_all=SIGNER.digest_url(recipient_id, key),
        feedback={p.id: (SIGNER.vote_url(recipient_id, p.id, "up"), SIGNER.vote_url(recipient_id, p.id, "down"))
                  for p in digest.papers},
        buttons={p.id: (SIGNER.vote_token(recipient_id, p.id, "up"), SIGNER.vote_token(recipient_id, p.id, "down"))
                 for p in digest.papers},
    )


def email(renderer: Renderer, digest: Digest, sender: Sender = SENDER, max_bytes: int = 300_000) -> dict:
    return renderer.email(digest, links_for(digest), sender, key="d7-d-000000000000-1",
                          message_id="<d7-d-000000000000-1@example.com>", max_bytes=max_bytes)


def slack(renderer: Renderer, digest: Digest) -> list[dict]:
    return renderer.slack(digest, links_for(digest), channel="#papers", key="d7-d-000000000000")


def slack_texts(messages: list[dict]) -> list[str]:
    """Every piece of text in the messages: fallbacks, headers, sections and context elements."""
    texts = []
    for message in messages:
        texts.append(message["text"])
        for block in message["blocks"]:
            if "text" in block:
                texts.append(block["text"]["text"])
            # Buttons (the feedback actions) carry their label as a plain_text object.
            texts.extend(e["text"] if isinstance(e["text"], str) else e["text"]["text"] for e in block.get("elements", []))
    return texts


class _Elements(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data) -> None:
        self.text.append(data)


def parse_html(html: str) -> _Elements:
    parser = _Elements()
    parser.feed(html)
    return parser


# ====================================================================== escaping


@pytest.fixture(scope="module")
def evil_digest() -> Digest:
    # The hostile label is the first subscription: it lands in the subject, header and fallback too.
    subs = [sref(1, "<!here> <b>bold</b> {{ config }}", "diffusion"), sref(2, "alert")]
    return make_digest({
        1: (pref(1, EVIL, "An alert about diffusion <@U024BE7LH> & <https://evil.example|click> {% raw %}.",
                 upvotes=3), subs),
    })


def test_a_hostile_title_renders_literally_in_html(renderer, evil_digest) -> None:
    payload = email(renderer, evil_digest)
    html = payload["html"]
    assert "<script" not in html.lower()
    assert "&lt;script&gt;" in html
    assert "&lt;!channel&gt;" in html
    assert "{{ 7*7 }}" in html and "49" not in html
    assert "&amp; @here" in html
    assert "&lt;@U024BE7LH&gt;" in html and "<@U" not in html
    assert "&lt;!here&gt; &lt;b&gt;bold&lt;/b&gt; {{ config }}" in html  # a subscription label is data too
    assert "<b>bold" not in html
    assert not any(tag in ("script", "b") for tag, _ in parse_html(html).tags)
    # What a reader sees is the title as written.
    assert EVIL in "".join(parse_html(html).text)
    assert re.search(r"<mark[^>]*>alert</mark>", html)  # highlighting works inside the escaped title


def test_a_hostile_title_renders_literally_in_text(renderer, evil_digest) -> None:
    text = email(renderer, evil_digest)["text"]
    assert EVIL in text  # plain text is not escaped, and not evaluated either
    assert "49" not in text
    assert "{{ config }}" in text


def test_a_hostile_title_cannot_ping_or_link_in_slack(renderer, evil_digest) -> None:
    messages = slack(renderer, evil_digest)
    texts = slack_texts(messages)
    joined = "\n".join(texts)
    assert "&lt;!channel&gt;" in joined
    assert "&lt;!here&gt;" in joined
    for forbidden in ("<!channel>", "<!here>", "<@U", "<!everyone>", "<https://evil", "<script>"):
        assert forbidden not in joined, forbidden
    assert "{{ 7*7 }}" in joined and "49" not in joined
    assert "&amp; @here" in joined
    assert messages[0]["blocks"][0]["text"]["text"].startswith("1 new paper on \"&lt;!here&gt;")
    # The only Slack link syntax left is ours: <https://huggingface.co/...|title> and nothing else.
    for link in re.findall(r"<([^>]*)>", joined):
        assert link.startswith(("https://huggingface.co/papers?q=", BASE)), link
    for message in messages:
        assert message["unfurl_links"] is False and message["unfurl_media"] is False


# ====================================================================== highlighting


@pytest.fixture(scope="module")
def plain_digest() -> Digest:
    subs = [sref(1, "diffusion"), sref(2, "Video", "video")]
    return make_digest({
        1: (pref(1, "Latent Diffusion for Video", "We train a diffusion model on video clips.", upvotes=12,
                 published=date(2025, 11, 20)), subs),
        2: (pref(2, "Sparse Diffusion Transformers", "Diffusion transformers, but sparse.", upvotes=5), subs[:1]),
    })


def test_matched_words_are_highlighted_in_every_format(renderer, plain_digest) -> None:
    payload = email(renderer, plain_digest)
    html = payload["html"]
    assert re.search(r"<mark[^>]*>Diffusion</mark>", html)
    assert re.search(r"<mark[^>]*>Video</mark>", html)
    assert re.search(r"<mark[^>]*>diffusion</mark> model on <mark[^>]*>video</mark>", html)
    assert not re.search(r"<mark[^>]*>(train|model|Sparse)</mark>", html)
    assert "*diffusion* model on *video* clips" in payload["text"]
    joined = "\n".join(slack_texts(slack(renderer, plain_digest)))
    assert "*diffusion* model on *video* clips" in joined
    assert "*Diffusion* transformers, but sparse." in joined


# ====================================================================== email


def test_every_email_has_text_html_and_unsubscribe_headers(renderer, plain_digest) -> None:
    payload = email(renderer, plain_digest)
    assert payload["text"].strip() and payload["html"].strip()
    assert payload["subject"] == plain_digest.subject
    assert (payload["to"], payload["from_email"], payload["from_name"]) == (
        "ada@example.org", "digest@example.com", "Paper Digest")
    unsubscribe = payload["headers"]["List-Unsubscribe"]
    assert re.fullmatch(r"<https://[^<>\s]+>", unsubscribe)
    assert payload["headers"]["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    # The header's link is signed for this recipient and every subscription of the digest.
    token = unsubscribe[1:-1].rsplit("/", 1)[1]
    assert unsubscribe[1:-1] == f"{BASE}/unsubscribe/{token}"
    assert SIGNER.load("unsubscribe", token) == {"r": 7, "s": [1, 2]}


def test_email_shows_unsubscribe_manage_links_and_postal_address(renderer, plain_digest) -> None:
    links = links_for(plain_digest)
    payload = email(renderer, plain_digest)
    anchors = {a.get("href"): None for tag, a in parse_html(payload["html"]).tags if tag == "a"}
    assert links.unsubscribe in anchors and links.manage in anchors
    for per_sub in links.per_subscription.values():  # two subscriptions: each can be left alone
        assert per_sub in anchors
    assert re.search(r'<a href="[^"]+/unsubscribe/[^"]+"[^>]*>Unsubscribe</a>', payload["html"])
    assert re.search(r'<a href="[^"]+/manage/[^"]+"[^>]*>Manage your subscriptions</a>', payload["html"])
    assert f"Unsubscribe: {links.unsubscribe}" in payload["text"]
    assert f"Manage your subscriptions: {links.manage}" in payload["text"]
    assert SENDER.postal_address in payload["html"] and SENDER.postal_address in payload["text"]

    bare = email(renderer, plain_digest, Sender("digest@example.com", "Paper Digest"))
    assert "Example Street" not in bare["html"] and "Example Street" not in bare["text"]
    assert f"Unsubscribe: {links.unsubscribe}" in bare["text"]


def test_email_css_is_inlined_and_has_a_hidden_preheader(renderer, plain_digest) -> None:
    html = email(renderer, plain_digest)["html"]
    tags = parse_html(html).tags
    styled = {tag for tag, attrs in tags if attrs.get("style")}
    assert {"body", "td", "h1", "h2", "p", "a", "mark"} <= styled
    paper_cells = [attrs for tag, attrs in tags if tag == "td" and attrs.get("class") == "paper"]
    assert len(paper_cells) == 2 and all("border-top" in a["style"] for a in paper_cells)
    hidden = [attrs for tag, attrs in tags if tag == "div" and "display:none" in attrs.get("style", "").replace(" ", "")]
    assert len(hidden) == 1
    preheader = re.search(r'<div style="display:\s*none[^"]*">([^<]*)', html)
    assert preheader and preheader.group(1).startswith("Latent Diffusion for Video; Sparse Diffusion Transformers")
    # Hidden before anything visible: it comes before the first table.
    assert html.index(preheader.group(0)) < html.index("<table")


def test_email_more_line_links_to_all_papers(renderer) -> None:
    s = sref(1, "diffusion")
    digest = make_digest({i: (pref(i, f"Diffusion paper {i}", "About diffusion.", upvotes=i), [s])
                          for i in range(1, 6)}, max_papers=2)
    links = links_for(digest)
    payload = email(renderer, digest)
    assert "and 3 more papers" in payload["html"] and links.see_all in payload["html"]
    assert f"...and 3 more papers: {links.see_all}" in payload["text"]
    assert payload["text"].count("Matched ") == 2


# ====================================================================== Slack


def long_digest(count: int = 40, cap: int = 40, abstract: str = LONG) -> Digest:
    s = sref(1, "diffusion")
    return make_digest({
        i: (pref(i, f"Diffusion study number {i}: " + "scaling laws " * 8, f"Paper {i}. " + abstract,
                 upvotes=1000 - i), [s])
        for i in range(1, count + 1)
    }, max_papers=cap)


def paper_numbers(message: dict) -> list[int]:
    numbers = []
    for block in message["blocks"]:
        if block["type"] == "section":
            found = re.search(r"Diffusion\*? study number (\d+):", block["text"]["text"])
            if found:
                numbers.append(int(found.group(1)))
    return numbers


def check_slack_limits(messages: list[dict]) -> None:
    for message in messages:
        assert isinstance(message["text"], str) and message["text"].strip()
        assert message["unfurl_links"] is False
        assert message["channel"] == "#papers"
        assert 1 <= len(message["blocks"]) <= 50
        for block in message["blocks"]:
            if block["type"] == "header":
                assert block["text"]["type"] == "plain_text" and len(block["text"]["text"]) <= 150
            if block["type"] == "section":
                assert len(block["text"]["text"]) <= 3000
            for element in block.get("elements", []):
                assert len(element["text"]) <= 3000


@pytest.mark.parametrize("abstract", [LONG, "Short."], ids=["by-size", "by-blocks"])
def test_a_long_slack_digest_is_split_without_splitting_a_paper(renderer, abstract: str) -> None:
    digest = long_digest(abstract=abstract)
    messages = slack(renderer, digest)
    check_slack_limits(messages)
    assert len(messages) >= 2
    assert [m["key"] for m in messages] == [f"d7-d-000000000000-{n}" for n in range(1, len(messages) + 1)]
    assert messages[0]["blocks"][0]["type"] == "header"
    numbers = [paper_numbers(m) for m in messages]
    assert [n for part in numbers for n in part] == list(range(1, 41))  # all, in order, each once
    for message, part in zip(messages, numbers):
        blocks = message["blocks"]
        sections = [i for i, b in enumerate(blocks) if b["type"] == "section"]
        for i in sections:  # a paper's section is followed by its "Matched" context in the same message
            assert blocks[i + 1]["type"] == "context"
            assert blocks[i + 1]["elements"][0]["text"].startswith("Matched ")
        # Each message's fallback names its own papers.
        assert message["text"].count("• ") == len(part)
        assert len(json.dumps(message["blocks"], ensure_ascii=False)) < 13_000
    for n, message in enumerate(messages[1:], start=2):
        assert f"(part {n})" in message["blocks"][0]["elements"][0]["text"]


def test_slack_more_line_comes_last(renderer) -> None:
    messages = slack(renderer, long_digest(count=45, cap=40))
    check_slack_limits(messages)
    last = messages[-1]["blocks"][-1]
    assert last["type"] == "section" and last["text"]["text"].startswith("…and 5 more papers: <https://")
    assert sum(len(paper_numbers(m)) for m in messages) == 40


def test_slack_cuts_overlong_texts_to_the_limits(renderer) -> None:
    label = "diffusion " + "x" * 300
    s = SubscriptionRef(1, label, parse_query("diffusion"))
    digest = make_digest({1: (pref(1, "Diffusion " + "very long title " * 400, LONG), [s])})
    messages = slack(renderer, digest)
    check_slack_limits(messages)
    header = messages[0]["blocks"][0]["text"]["text"]
    assert len(header) == 150 and header.endswith("…")
    section = messages[0]["blocks"][1]["text"]["text"]
    assert len(section) == 3000 and section.endswith("…")
    context = messages[0]["blocks"][2]["elements"][0]["text"]
    assert context.startswith("Matched ") and "x" * 300 in context


def test_a_short_slack_digest_is_one_message(renderer, plain_digest) -> None:
    messages = slack(renderer, plain_digest)
    check_slack_limits(messages)
    assert len(messages) == 1
    assert messages[0]["blocks"][0]["text"]["text"] == plain_digest.subject
    assert messages[0]["text"].startswith(plain_digest.subject)


# ====================================================================== tokens


def test_link_signer_round_trip_and_urls() -> None:
    signer = LinkSigner("k1", "https://digest.example.com/")
    token = signer.token("manage", {"r": 42})
    assert signer.load("manage", token) == {"r": 42}
    assert signer.manage_url(42).startswith("https://digest.example.com/manage/")
    assert signer.load("manage", signer.manage_url(42).rsplit("/", 1)[1]) == {"r": 42}
    unsubscribe = signer.unsubscribe_url(42, [9, 3])
    assert signer.load("unsubscribe", unsubscribe.rsplit("/", 1)[1]) == {"r": 42, "s": [3, 9]}
    digest = signer.digest_url(42, "d42-w-abc")
    assert signer.load("digest", digest.rsplit("/", 1)[1]) == {"r": 42, "d": "d42-w-abc"}


def test_tampered_forged_and_misused_tokens_are_refused() -> None:
    signer = LinkSigner("k1", BASE)
    token = signer.token("unsubscribe", {"r": 42, "s": [3]})
    payload, signature = token.rsplit(".", 1)
    flipped = signature[:-1] + ("A" if signature[-1] != "A" else "B")
    other_payload = LinkSigner("k1", BASE).token("unsubscribe", {"r": 43, "s": [3]}).rsplit(".", 1)[0]
    for bad in (payload + "." + flipped, other_payload + "." + signature, token[:-3], "", "nonsense"):
        with pytest.raises(BadToken):
            signer.load("unsubscribe", bad)
    with pytest.raises(BadToken):  # another purpose: a manage token is no unsubscribe token
        signer.load("unsubscribe", signer.token("manage", {"r": 42}))
    with pytest.raises(BadToken):
        signer.load("manage", token)
    with pytest.raises(BadToken):  # another key
        LinkSigner("k2", BASE).load("unsubscribe", token)
    with pytest.raises(BadToken):  # signed, but not a dict
        signer.load("manage", signer.token("manage", [42]))  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        LinkSigner("", BASE)


# ====================================================================== golden files


def golden_digest() -> Digest:
    subs = [sref(11, "DiT", '"diffusion transformer" OR dit'), sref(12, "video generation")]
    return make_digest({
        101: (pref(101, "Scalable Diffusion Transformers for Video Generation",
                   "We present a diffusion transformer for video generation that scales to long clips & high "
                   "resolutions, with a new <temporal> attention scheme.",
                   upvotes=120, published=date(2025, 11, 19), authors=6), subs),
        102: (pref(102, "DiT-XL Revisited: Training Recipes",
                   "Training recipes for DiT models: what matters, and what does not.",
                   upvotes=45, published=date(2025, 11, 20), authors=1), subs[:1]),
        103: (pref(103, "Café: Video Generation with Camera Control",
                   "Camera-controlled video generation from a single image.",
                   upvotes=None, published=None, authors=None), subs[1:]),
        104: (pref(104, "Long Video Generation at Scale", "Minute-long video generation.", upvotes=2,
                   published=date(2025, 10, 1)), subs[1:]),
        105: (pref(105, "An Older Video Generation Paper", "Video generation, older.", published=date(2025, 1, 2)),
              subs[1:]),
    }, cadence="weekly", max_papers=4, slot=datetime(2025, 11, 24, 9, 0, tzinfo=ZoneInfo("Europe/Berlin")))


@pytest.fixture(scope="module")
def golden_outputs(renderer) -> dict[str, str]:
    digest = golden_digest()
    payload = email(renderer, digest)
    messages = slack(renderer, digest)
    return {
        "digest.html": payload["html"],
        "digest.txt": payload["text"],
        "digest.slack.json": json.dumps(messages, indent=2, ensure_ascii=False) + "\n",
    }


@pytest.mark.parametrize("name", ["digest.html", "digest.txt", "digest.slack.json"])
def test_golden(golden_outputs, name: str) -> None:
    path = GOLDEN / name
    if REGENERATE:
        GOLDEN.mkdir(exist_ok=True)
        path.write_text(golden_outputs[name], encoding="utf-8")
        assert path.read_text(encoding="utf-8") == golden_outputs[name]
        return
    assert path.is_file(), f"{path} is missing: run with DIGESTBOT_REGENERATE_GOLDEN=1 to create it"
    assert golden_outputs[name] == path.read_text(encoding="utf-8"), (
        f"{name} differs from tests/golden/{name}; if the change is intended, rerun with "
        "DIGESTBOT_REGENERATE_GOLDEN=1 and review the diff")


def test_golden_rendering_is_deterministic(renderer, golden_outputs) -> None:
    digest = golden_digest()
    assert email(renderer, digest)["html"] == golden_outputs["digest.html"]
    assert json.dumps(slack(renderer, digest), indent=2, ensure_ascii=False) + "\n" == golden_outputs["digest.slack.json"]
