"""What goes into a digest: the papers, in which order, with which snippet. Values in, a Digest out."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from functools import lru_cache
from urllib.parse import quote, quote_plus

from digestbot.core.highlight import Highlighter
from digestbot.core.query_tree import Node

Segments = tuple[tuple[str, bool], ...]  # text pieces, True where a matched word is

# A title is shown up to this many characters (a Slack section's size): the ingest limit keeps
# new titles far shorter, this keeps a huge one stored earlier from flooding every message. Its
# link searches for at most its first LINK_TITLE_MAX characters (real titles are shorter):
# enough to find it, and a URL that servers accept.
TITLE_MAX = 3000
LINK_TITLE_MAX = 300
LIKE_REASON = "like \u201c"  # how a "more like these" reason starts: shown as it is, not quoted again
SUBJECT_MAX = 200  # characters of an email subject (and a Slack header before its own cut)
# Where a paper with an arXiv id links: its Hugging Face page, with arXiv's abstract and PDF beside.
HF_PAPER = "https://huggingface.co/papers/{}"
ARXIV_ABS = "https://arxiv.org/abs/{}"
ARXIV_PDF = "https://arxiv.org/pdf/{}"
DEFAULT_PAPER_URL = "https://huggingface.co/papers?q={title}"  # DIGESTBOT_PAPER_URL's default
AUTHORS_SHOWN = 3  # names in a digest, then "et al."


@dataclass(frozen=True, slots=True)
class SubscriptionRef:
    id: int
    label: str  # its name, or its query
    node: Node
    reason: str | None = None  # why it chose this paper, if not its label: 'like “Title”' (issue 13)


@dataclass(frozen=True, slots=True)
class PaperRef:
    id: int
    title: str
    abstract: str
    authors_count: int | None
    upvotes: int | None
    published: date | None
    first_seen: datetime
    arxiv_id: str | None = None
    authors: tuple[str, ...] | None = None

    @classmethod
    def of_row(cls, row) -> PaperRef:
        """From a store row of these fields in this order (authors as the JSON list it is stored as)."""
        *fields, authors = row
        return cls(*fields, tuple(authors) if authors is not None else None)

@dataclass(frozen=True, slots=True)
class DigestPaper:
    id: int
    title: str
    url: str
    authors_count: int | None
    upvotes: int | None
    published: date | None
    title_segments: Segments
    snippet: Segments
    matched_by: tuple[str, ...]
    arxiv_id: str | None = None
    authors: tuple[str, ...] | None = None

    @property
    def abs_url(self) -> str | None:
        """The arXiv abstract page, for a paper with an id (shown beside its main link)."""
        return ARXIV_ABS.format(self.arxiv_id) if self.arxiv_id else None

    @property
    def pdf_url(self) -> str | None:
        return ARXIV_PDF.format(self.arxiv_id) if self.arxiv_id else None


@dataclass(frozen=True, slots=True)
class Digest:
    recipient: str
    cadence: str  # instant | daily | weekly
    period: str  # "Nov 22", "week of Nov 16", or "" for instant alerts
    subject: str
    preheader: str
    papers: tuple[DigestPaper, ...]  # the shown ones, at most the cap
    total: int
    subscriptions: tuple[SubscriptionRef, ...]

    @property
    def more(self) -> int:
        return self.total - len(self.papers)

    def showing(self, papers: tuple[DigestPaper, ...]) -> Digest:
        """This digest with only ``papers`` shown: the others count in ``more``."""
        return replace(self, papers=papers)


def cut(text: str, limit: int) -> str:
    """``text``, or its first ``limit - 1`` characters and "…"."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def cut_segments(segments: Segments, limit: int) -> Segments:
    """At most ``limit`` characters of these segments, and "…" where they were cut."""
    if sum(len(piece) for piece, _ in segments) <= limit:
        return segments
    kept: list[tuple[str, bool]] = []
    room = limit - 1
    for piece, hit in segments:
        if room <= 0:
            break
        kept.append((piece[:room], hit))
        room -= len(piece)
    return (*kept, ("…", False))


def shortened(paper: DigestPaper, limit: int) -> DigestPaper:
    """``paper`` with its title, snippet and each matching label cut to ``limit`` characters:
    for a paper that alone would not fit in a message."""
    return replace(
        paper, title=cut(paper.title, limit), title_segments=cut_segments(paper.title_segments, limit),
        snippet=cut_segments(paper.snippet, limit), matched_by=tuple(cut(label, limit) for label in paper.matched_by),
    )


@lru_cache(maxsize=16384)  # the same papers go to many readers
def paper_link(template: str, title: str, arxiv_id: str | None = None) -> str:
    """The link of a paper: with an arXiv id, its Hugging Face page (or DIGESTBOT_PAPER_URL if that
    takes an {arxiv_id}); without, DIGESTBOT_PAPER_URL's search by {title} (or the default's)."""
    if arxiv_id:
        if "{arxiv_id}" not in template:
            return HF_PAPER.format(quote(arxiv_id, safe="/"))
        template = template.replace("{arxiv_id}", quote(arxiv_id, safe="/"))
    elif "{title}" not in template:
        template = DEFAULT_PAPER_URL
    if "{title}" not in template:
        return template
    if len(title) > LINK_TITLE_MAX:
        title = title[:LINK_TITLE_MAX].rsplit(" ", 1)[0]
    return template.replace("{title}", quote_plus(title))


def author_names(authors: tuple[str, ...] | None, count: int | None, most: int = AUTHORS_SHOWN) -> str:
    """"Ann Lee, Bo Chen, Cy Dee et al." when the names are known; else "7 authors" (or "")."""
    if authors:
        shown = ", ".join(authors[:most])
        return shown + (" et al." if len(authors) > most or (count or 0) > most else "")
    if count is not None:
        return f"{count} author" + ("" if count == 1 else "s")
    return ""


def _count(n: int) -> str:
    return f"{n} new paper" + ("" if n == 1 else "s")


def quote_label(label: str) -> str:
    """A subscription's name or query in quotes; typographic ones when the query has its own."""
    return f"\u201c{label}\u201d" if '"' in label else f'"{label}"'


def _subject(count: int, subs: list[SubscriptionRef], period: str) -> str:
    """'3 new papers on "label" and 2 more · Nov 22': the label is cut to keep it to SUBJECT_MAX."""
    head = f"{_count(count)} on "
    tail = (f" and {len(subs) - 1} more" if len(subs) > 1 else "") + (f" · {period}" if period else "")
    return one_line(head + quote_label(cut(subs[0].label, SUBJECT_MAX - len(head) - len(tail) - 2)) + tail)


def one_line(text: str) -> str:
    """``text`` with each run of whitespace or invisible characters as one space. Queries and
    names are refused with line breaks now, but older ones may hold some, and a subject is a
    header: a line break there makes every message to the recipient fail."""
    if text.isprintable():
        return text
    return " ".join("".join(c if c.isprintable() else " " for c in text).split())


def period_label(cadence: str, slot_local: datetime) -> str:
    if cadence == "daily":
        return f"{slot_local:%b} {slot_local.day}"
    if cadence == "weekly":
        start = slot_local - timedelta(days=7)
        return f"week of {start:%b} {start.day}"
    return ""


# A digest run shows the same new papers to many readers, and popular queries are shared by
# many of them: one Highlighter per set of queries, and its marks of a paper, serve them all.
# Both are pure functions of their (immutable) arguments; the caches only bound the memory.
@lru_cache(maxsize=4096)
def _highlighter(nodes: tuple[Node, ...]) -> Highlighter:
    return Highlighter.of(list(nodes))


@lru_cache(maxsize=16384)
def _highlighted(highlighter: Highlighter, title: str, abstract: str, width: int) -> tuple[Segments, Segments]:
    """The title's segments and the abstract's snippet."""
    return tuple(highlighter.segments(title)), tuple(highlighter.snippet(abstract, width))


def compose(
    *,
    recipient: str,
    cadence: str,
    matched: dict[int, tuple[PaperRef, list[SubscriptionRef]]],
    slot_local: datetime,
    max_papers: int,
    paper_url: str,
    snippet_width: int = 300,
    scores: dict[int, float] | None = None,
) -> Digest | None:
    """The digest of these matches, or None when there is nothing to say (never an empty digest).

    Order: papers matched by most subscriptions first, then most upvoted, then newest; or, given
    the reader's relevance ``scores`` (issue 13), best score first, the same order among equals.
    """
    if not matched:
        return None
    subs_by_id: dict[int, SubscriptionRef] = {}
    for _, subs in matched.values():
        for sub in subs:
            subs_by_id.setdefault(sub.id, sub)
    subscriptions = sorted(subs_by_id.values(), key=lambda s: s.id)

    def rank(item: tuple[PaperRef, list[SubscriptionRef]]):
        paper, subs = item
        newest = (paper.published or paper.first_seen.date()).toordinal()
        today = (-len(subs), -(paper.upvotes or 0), -newest, -paper.first_seen.timestamp(), paper.id)
        return (-scores.get(paper.id, -1e9), *today) if scores is not None else today

    ordered = sorted(matched.values(), key=rank)
    shown = []
    for paper, subs in ordered[:max_papers]:
        title = cut(paper.title, TITLE_MAX)
        title_segments, snippet = _highlighted(
            _highlighter(tuple(s.node for s in subs)), title, paper.abstract, snippet_width)
        shown.append(DigestPaper(
            id=paper.id, title=title, url=paper_link(paper_url, paper.title[:LINK_TITLE_MAX + 1], paper.arxiv_id),
            authors_count=paper.authors_count, upvotes=paper.upvotes, published=paper.published,
            title_segments=title_segments, snippet=snippet,
            matched_by=tuple(s.reason or s.label for s in sorted(subs, key=lambda s: s.id)),
            arxiv_id=paper.arxiv_id, authors=paper.authors,
        ))
    period = period_label(cadence, slot_local)
    subject = _subject(len(ordered), subscriptions, period)
    preheader = "; ".join(p.title for p in shown[:3])
    return Digest(
        recipient=recipient, cadence=cadence, period=period, subject=subject, preheader=preheader[:140],
        papers=tuple(shown), total=len(ordered), subscriptions=tuple(subscriptions),
    )


def keep_top(matched: dict[int, tuple[PaperRef, list[SubscriptionRef]]], tops: dict[int, int]
             ) -> tuple[dict[int, tuple[PaperRef, list[SubscriptionRef]]], list[int]]:
    """The matches with each subscription of ``tops`` (id → N) keeping only its N most upvoted
    papers (then the newest); and the ids of the papers no subscription keeps, which the digest
    covers without showing: the rest of the window, not sent in a later one."""
    if not tops:
        return matched, []
    keep: dict[int, set[int]] = {}
    for sub_id, top in tops.items():
        theirs = [paper for paper, subs in matched.values() if any(s.id == sub_id for s in subs)]
        theirs.sort(key=lambda p: (-(p.upvotes or 0), -p.first_seen.timestamp(), -p.id))
        keep[sub_id] = {p.id for p in theirs[:top]}
    kept: dict[int, tuple[PaperRef, list[SubscriptionRef]]] = {}
    passed = []
    for paper_id, (paper, subs) in matched.items():
        still = [s for s in subs if s.id not in keep or paper_id in keep[s.id]]
        if still:
            kept[paper_id] = (paper, still)
        else:
            passed.append(paper_id)
    return kept, passed
