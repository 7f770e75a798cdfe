"""The tree a query is parsed into (see digestbot.core.query), and walking it.

Nodes are frozen and hashable: equal queries are equal trees, which is how the matcher shares
one evaluation among the subscribers of one query. What needs only the tree (the matcher, the
reference evaluation, highlighting, digests) imports it from here, not the parser.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal, Union

FieldName = Literal["any", "title", "abstract", "author"]  # "any": title or abstract


@dataclass(frozen=True, slots=True)
class Term:
    key: str  # stemmed word
    field: FieldName = "any"


@dataclass(frozen=True, slots=True)
class Prefix:
    prefix: str  # folded, unstemmed
    field: FieldName = "any"


@dataclass(frozen=True, slots=True)
class Phrase:
    raw: tuple[str, ...]  # folded, unstemmed words (joins are formed from raw words)
    field: FieldName = "any"


@dataclass(frozen=True, slots=True)
class Run:
    """Adjacent bare words: all of them, where any two neighbours may also be written joined
    (``auto regressive`` finds ``autoregressive``)."""

    raw: tuple[str, ...]
    field: FieldName = "any"


@dataclass(frozen=True, slots=True)
class And:
    children: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Or:
    children: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Not:
    child: Node


@dataclass(frozen=True, slots=True)
class Everything:
    """The query ``*`` alone: every paper (with --top, the most upvoted of a window)."""


Node = Union[Term, Prefix, Phrase, Run, And, Or, Not, Everything]
Leaf = Union[Term, Prefix, Phrase, Run]


def leaves(node: Node, positive: bool = True) -> Iterator[tuple[Leaf, bool]]:
    """Every leaf with whether it counts for the query (False under an exclusion)."""
    if isinstance(node, (And, Or)):
        for child in node.children:
            yield from leaves(child, positive)
    elif isinstance(node, Not):
        yield from leaves(node.child, not positive)
    elif isinstance(node, Everything):
        return  # no word of its own
    else:
        yield node, positive
