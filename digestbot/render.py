"""Render digests from the Jinja2 templates in templates/: email (HTML + text) and Slack Block Kit.

Everything that comes from a dump is data. HTML templates autoescape; the Slack environment
escapes ``&``, ``<`` and ``>`` in every expression, so ``<!channel>`` in a title is shown, never
obeyed. Templates are files of ours; titles are only ever values inside them, never templates.
"""

from __future__ import annotations

import json
import re
from html import escape
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import css_inline
from jinja2 import Environment, FileSystemLoader, StrictUndefined

from digestbot.core.digest import LIKE_REASON, Digest, DigestPaper, author_names, cut, shortened
from digestbot.resources import resource_dir

SLACK_MAX_BLOCKS = 50
SLACK_MAX_SECTION = 3000
SLACK_MAX_HEADER = 150
# Slack refuses messages whose blocks add up to much more than ~13k characters
# (msg_blocks_too_long, undocumented): stay well below.
SLACK_MESSAGE_BUDGET = 11_000

CADENCE_PHRASES = {"instant": "alert", "daily": "daily digest", "weekly": "weekly digest"}

# A paper that alone would not fit in an email is shown with its texts cut to this length.
SHORTENED_PAPER = 200
_HOSTNAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*")


@dataclass(frozen=True, slots=True)
class Links:
    manage: str
    unsubscribe: str  # every subscription of this digest: the List-Unsubscribe target
    per_subscription: dict[int, str]
    see_all: str
    # paper id → (more like this, less like this) links (issue 13); Slack shows buttons for these papers.
    feedback: dict[int, tuple[str, str]] = field(default_factory=dict)
    # paper id → (up token, down token): the values of the Slack buttons.
    buttons: dict[int, tuple[str, str]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Sender:
    email: str
    name: str
    postal_address: str = ""


def slack_escape(value: Any) -> str:
    """Slack mrkdwn escaping: only these three characters have control meaning."""
    if value is None:
        return ""
    return str(value).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def meta_line(paper: DigestPaper) -> str:
    parts = []
    if names := author_names(paper.authors, paper.authors_count):  # the first three by name, else the count
        parts.append(names)
    if paper.published is not None:
        parts.append(f"{paper.published:%b} {paper.published.day}, {paper.published.year}")
    if paper.upvotes is not None:
        parts.append(f"▲ {paper.upvotes}")
    return " · ".join(parts)


def marked(segments, marker: str) -> str:
    """Segments as one string, matched words wrapped in ``marker`` (``*`` is bold in Slack)."""
    return "".join(f"{marker}{piece}{marker}" if hit else piece for piece, hit in segments)


def sentence(text: str) -> str:
    """``text`` with a capital first letter and a full stop, the rest as written (unlike
    Jinja's ``capitalize``, which lowercases "OR" and the user's own input)."""
    text = str(text)
    text = text[:1].upper() + text[1:]
    return text if text.endswith((".", "!", "?")) else text + "."


def mail_domain(address: str) -> str:
    """The domain of the sender's address in ASCII (IDNA), for Message-ID and List-Id, which
    are written raw; "localhost" when it is not a plain host name."""
    domain = address.rpartition("@")[2]
    try:
        domain = domain.encode("idna").decode("ascii")
    except UnicodeError:
        return "localhost"
    return domain if _HOSTNAME.fullmatch(domain) else "localhost"


def list_id(sender: Sender) -> str:
    """The RFC 2919 List-Id of every digest of this sender, for mail filters."""
    return f"digestbot <digests.{mail_domain(sender.email)}>"


def _quoted(value: str) -> str:
    if value.startswith(LIKE_REASON) and value.endswith("\u201d"):  # 'like “Title”' (issue 13)
        return value
    return f"\u201c{value}\u201d"


def _environment(loader: FileSystemLoader, *, trim: bool = True, **options: Any) -> Environment:
    env = Environment(loader=loader, undefined=StrictUndefined, trim_blocks=trim, lstrip_blocks=trim, **options)
    env.filters["quoted"] = _quoted
    env.filters["sentence"] = sentence
    env.globals["meta_line"] = meta_line
    env.globals["marked"] = marked
    return env


class Renderer:
    """Turns a Digest into channel payloads (see digestbot.channels.base for their shapes)."""

    def __init__(self, templates: Path | None = None) -> None:
        loader = FileSystemLoader(templates or resource_dir("templates"))
        self._html = _environment(loader, autoescape=True)
        self._text = _environment(loader, autoescape=False)
        # Slack text is whitespace-sensitive: its templates place every newline themselves.
        self._slack = _environment(loader, trim=False, autoescape=False, finalize=slack_escape)
        self._inliner = css_inline.CSSInliner(keep_style_tags=True, load_remote_stylesheets=False)

    def _context(self, digest: Digest, links: Links, sender: Sender | None = None,
                 compact: bool = False) -> dict[str, Any]:
        return {"digest": digest, "links": links, "cadence_phrase": CADENCE_PHRASES[digest.cadence],
                "postal_address": sender.postal_address if sender else "", "compact": compact}

    def email(self, digest: Digest, links: Links, sender: Sender, *, key: str, message_id: str,
              max_bytes: int) -> dict[str, Any]:
        """The email payload; its HTML and text together are at most ``max_bytes`` (UTF-8).

        A digest that would be larger loses papers from its end (the rest count in "N more",
        linked to the digest's page); a first paper that alone is too large is shown cut, or
        not at all; and when even the footer is too large (hundreds of long subscriptions),
        it names their number instead of each one.
        """
        html, text = self._fit(digest, links, sender, max_bytes)
        return {
            "key": key, "message_id": message_id, "to": digest.recipient, "from_email": sender.email,
            "from_name": sender.name, "subject": digest.subject, "text": text, "html": html,
            "headers": {
                "List-Unsubscribe": f"<{links.unsubscribe}>",
                "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
                "List-Id": list_id(sender),
            },
        }

    def _bodies(self, digest: Digest, links: Links, sender: Sender, compact: bool = False) -> tuple[str, str]:
        context = self._context(digest, links, sender, compact)
        html = self._inliner.inline(self._html.get_template("email/digest.html.j2").render(context))
        text = self._text.get_template("email/digest.txt.j2").render(context).strip() + "\n"
        return html, text

    def _fit(self, digest: Digest, links: Links, sender: Sender, max_bytes: int) -> tuple[str, str]:
        """The digest's HTML and text within ``max_bytes``: rendered once when they fit (nearly
        always), else the most papers that fit are found by bisection (a handful of renders)."""
        bodies = self._bodies(digest, links, sender)
        if _bytes(bodies) <= max_bytes:
            return bodies
        papers = digest.papers
        bare = self._bodies(digest.showing(()), links, sender)
        compact = _bytes(bare) > max_bytes
        if compact:
            bare = self._bodies(digest.showing(()), links, sender, compact=True)
        # The largest count of papers that fits: none is taken to fit, all is known not to
        # (unless the footer changed).
        fitting, low, high = bare, 0, len(papers) if compact else len(papers) - 1
        while low < high:
            middle = (low + high + 1) // 2
            candidate = self._bodies(digest.showing(papers[:middle]), links, sender, compact)
            if _bytes(candidate) <= max_bytes:
                low, fitting = middle, candidate
            else:
                high = middle - 1
        if low == 0 and papers:
            first = self._bodies(digest.showing((shortened(papers[0], SHORTENED_PAPER),)), links, sender, compact)
            if _bytes(first) <= max_bytes:
                return first
        return fitting

    def notice(self, name: str, context: dict[str, Any], sender: Sender, *, to: str, subject: str, key: str,
               message_id: str) -> dict[str, Any]:
        """A transactional email from templates/email/<name>.html.j2 and .txt.j2 (a confirmation
        link, a manage link): sent because the recipient asked, so no list headers."""
        context = context | {"subject": subject, "postal_address": sender.postal_address}
        html = self._inliner.inline(self._html.get_template(f"email/{name}.html.j2").render(context))
        text = self._text.get_template(f"email/{name}.txt.j2").render(context).strip() + "\n"
        return {"key": key, "message_id": message_id, "to": to, "from_email": sender.email,
                "from_name": sender.name, "subject": subject, "text": text, "html": html, "headers": {}}

    def page(self, name: str, **context: Any) -> str:
        """A web page from templates/web/ (autoescaped HTML)."""
        return self._html.get_template(f"web/{name}").render(context)

    def slack(self, digest: Digest, links: Links, *, channel: str, key: str) -> list[dict[str, Any]]:
        """One or more messages: at most 50 blocks and a safe size each, papers never split."""
        context = self._context(digest, links)
        render = lambda name, **extra: self._slack.get_template(name).render(context | extra).strip()  # noqa: E731
        header = render("slack/header.txt.j2")
        first_blocks: list[dict] = [{"type": "header", "text": {"type": "plain_text", "text": cut(header, SLACK_MAX_HEADER), "emoji": False}}]
        paper_groups = [
            [
                {"type": "section", "text": {"type": "mrkdwn", "text": cut(render("slack/paper.mrkdwn.j2", paper=p), SLACK_MAX_SECTION)}},
                {"type": "context", "elements": [{"type": "mrkdwn", "text": cut(render("slack/matched.mrkdwn.j2", paper=p), SLACK_MAX_SECTION)}]},
                *vote_buttons(p.id, links),
            ]
            for p in digest.papers
        ]
        if digest.more:
            paper_groups.append([{"type": "section", "text": {"type": "mrkdwn", "text": render("slack/more.mrkdwn.j2")}}])

        messages: list[tuple[list[dict], list[DigestPaper]]] = [(first_blocks, [])]
        for index, group in enumerate(paper_groups):
            blocks, papers = messages[-1]
            if len(blocks) + len(group) > SLACK_MAX_BLOCKS or _size(blocks + group) > SLACK_MESSAGE_BUDGET:
                part = len(messages) + 1
                blocks, papers = [{"type": "context", "elements": [{"type": "plain_text", "text": f"{cut(header, 100)} (part {part})", "emoji": False}]}], []
                messages.append((blocks, papers))
            blocks.extend(group)
            if index < len(digest.papers):
                papers.append(digest.papers[index])

        payloads = []
        for number, (blocks, papers) in enumerate(messages, start=1):
            fallback = render("slack/fallback.txt.j2", papers=papers)
            payloads.append({
                "key": f"{key}-{number}", "channel": channel, "text": cut(fallback, 3000), "blocks": blocks,
                "unfurl_links": False, "unfurl_media": False,
            })
        return payloads


def admin_alert_payload(target, subject: str, body: str, sender: Sender, *, key: str) -> dict[str, Any]:
    """A plain operational alert: no template needed, every value escaped."""
    if target.kind == "email":
        html = f"<!DOCTYPE html><html><body><p>{escape(body)}</p></body></html>"
        return {"key": key, "message_id": f"<{key}@{mail_domain(sender.email)}>", "to": target.target,
                "from_email": sender.email, "from_name": sender.name, "subject": subject, "text": body + "\n", "html": html, "headers": {}}
    text = f"*{slack_escape(subject)}*\n{slack_escape(body)}"
    return {"key": key, "channel": target.target, "text": cut(text, 3000),
            "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": cut(text, SLACK_MAX_SECTION)}}],
            "unfurl_links": False, "unfurl_media": False}


def vote_buttons(paper_id: int, links: Links) -> list[dict]:
    """The "More like this" / "Less like this" buttons of a paper in Slack (issue 13): each value a
    signed vote token, checked by /slack/interactions."""
    tokens = links.buttons.get(paper_id)
    if tokens is None:
        return []
    return [{"type": "actions", "block_id": f"vote-{paper_id}", "elements": [
        {"type": "button", "action_id": "vote_up", "text": {"type": "plain_text", "text": "More like this"},
         "value": tokens[0]},
        {"type": "button", "action_id": "vote_down", "text": {"type": "plain_text", "text": "Less like this"},
         "value": tokens[1]},
    ]}]


def _size(blocks: list[dict]) -> int:
    return len(json.dumps(blocks, ensure_ascii=False))


def _bytes(bodies: tuple[str, str]) -> int:
    return sum(len(body.encode("utf-8")) for body in bodies)
