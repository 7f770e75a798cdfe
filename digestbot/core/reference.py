"""The plain meaning of a query, which the engine is tested to agree with.

``evaluate`` takes one query and one paper and says whether the paper matches: simple, slow
and obviously right. digestbot.core.matcher evaluates many queries against many papers at once;
the tests and the matching benchmark hold it equal to ``evaluate``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from digestbot.core.query_tree import And, Everything, FieldName, Node, Not, Or, Phrase, Prefix, Run, Term
from digestbot.core.text import Field, analyze, join_key, phrase_in, stem


@dataclass(slots=True)
class Document:
    """A paper's fields, analysed for matching."""

    title: Field
    abstract: Field
    author: Field = field(default_factory=lambda: analyze(""))  # the names, one text (batch.names_text)

    @classmethod
    def of(cls, title: str, abstract: str, authors: str = "") -> Document:
        return cls(analyze(title), analyze(abstract), analyze(authors))

    def fields(self, name: FieldName) -> tuple[Field, ...]:
        if name == "title":
            return (self.title,)
        if name == "abstract":
            return (self.abstract,)
        if name == "author":
            return (self.author,)
        return (self.title, self.abstract)


def run_holds(raw: tuple[str, ...], has) -> bool:
    """All words of a Run present, any two neighbours possibly as one joined word.

    ``has(term)`` says whether a stemmed term is present. A left-to-right dynamic programme that
    keeps two answers: ``current``, whether the words up to the i-th are covered, and ``before``,
    whether those up to the one before are (so that the last two may be covered as one join).
    """
    before, current = True, has(stem(raw[0]))
    for i in range(1, len(raw)):
        before, current = current, (current and has(stem(raw[i]))) or (before and has(join_key(raw[i - 1], raw[i])))
    return current


def evaluate(node: Node, doc: Document) -> bool:
    """The plain meaning of a query for one paper: simple, slow and obviously right."""
    if isinstance(node, Term):
        return any(node.key in f.terms for f in doc.fields(node.field))
    if isinstance(node, Prefix):
        return any(w.startswith(node.prefix) for f in doc.fields(node.field) for w in f.words)
    if isinstance(node, Phrase):
        return any(phrase_in(node.raw, f) for f in doc.fields(node.field))
    if isinstance(node, Run):
        fields = doc.fields(node.field)
        return run_holds(node.raw, lambda t: any(t in f.terms for f in fields))
    if isinstance(node, And):
        return all(evaluate(child, doc) for child in node.children)
    if isinstance(node, Or):
        return any(evaluate(child, doc) for child in node.children)
    if isinstance(node, Not):
        return not evaluate(node.child, doc)
    if isinstance(node, Everything):
        return True
    raise TypeError(f"not a query node: {node!r}")
