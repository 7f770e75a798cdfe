"""The query language: parse a search-engine style query into a tree, and evaluate it simply.

    diffusion transformer          both words (AND is implied; AND may be written)
    "exact phrase"                 the words in order, adjacent
    diffusion OR flow              either
    -survey   NOT survey           without
    quantiz*                       any word starting with quantiz
    title:word  title:"a phrase"  title:(a OR b)   abstract:...   a field
    author:hinton  author:"zoe angstrom"           author names (only through author:)
    (a OR b) c                     parentheses group
    *                              alone: every paper (with --top N, the N most upvoted)

Words are case-insensitive, accent-folded and singular (see digestbot.core.text).
Anything a user types is data: there are no regular expressions, and limits on length and
terms keep every query cheap to evaluate.

What a query means for one paper is ``digestbot.core.reference.evaluate``; digestbot.core.matcher
evaluates many queries against many papers at once and must agree with it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

from digestbot.core.printable import unprintable
from digestbot.core.query_tree import And, Everything, FieldName, Node, Not, Or, Phrase, Prefix, Run, Term
from digestbot.core.text import raw_words, stem
from digestbot.errors import UsageError

MAX_LENGTH = 500
MAX_TERMS = 50
MIN_PREFIX = 2

FIELDS: tuple[str, ...] = ("title", "abstract", "author")


class QueryError(UsageError):
    """A query that cannot be used, with the column (1-based) where it goes wrong."""

    def __init__(self, problem: str, column: int | None = None) -> None:
        where = f" at column {column}" if column is not None else ""
        super().__init__(f"bad query: {problem}{where}")
        self.problem = problem
        self.column = column


# ---- lexing -----------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class _Token:
    kind: str  # WORD PHRASE LPAREN RPAREN OR AND NOT MINUS FIELD END
    text: str
    column: int


_SPECIAL = set('()"')
_MINUSES = "-\u2013\u2014\u2212"


def _lex(query: str) -> Iterator[_Token]:
    i, n = 0, len(query)
    while i < n:
        c = query[i]
        column = i + 1
        if c.isspace():
            i += 1
        elif c == "(":
            yield _Token("LPAREN", c, column)
            i += 1
        elif c == ")":
            yield _Token("RPAREN", c, column)
            i += 1
        elif c == '"':
            end = query.find('"', i + 1)
            if end < 0:
                raise QueryError('unclosed quote "', column)
            yield _Token("PHRASE", query[i + 1:end], column)
            i = end + 1
        elif c in _MINUSES and i + 1 < n and not query[i + 1].isspace():
            # An en or em dash before a word is an exclusion too: editors "correct" - to –.
            yield _Token("MINUS", c, column)
            i += 1
        else:
            j = i
            while j < n and not query[j].isspace() and query[j] not in _SPECIAL:
                if query[j] == ":" and query[i:j].lower() in FIELDS:
                    break
                j += 1
            word = query[i:j]
            if j < n and query[j] == ":" and word.lower() in FIELDS:
                yield _Token("FIELD", word.lower(), column)
                j += 1
            elif word in ("OR", "AND", "NOT"):
                yield _Token(word, word, column)
            else:
                yield _Token("WORD", word, column)
            i = j
    yield _Token("END", "", n + 1)


# ---- parsing ----------------------------------------------------------------------------------

class _Parser:
    def __init__(self, query: str) -> None:
        self.tokens = list(_lex(query))
        self.pos = 0
        self.terms = 0

    def peek(self) -> _Token:
        return self.tokens[self.pos]

    def take(self) -> _Token:
        token = self.tokens[self.pos]
        self.pos += 1
        return token

    def parse(self) -> Node:
        if self.peek().kind == "END":
            raise QueryError("the query is empty")
        node = self.or_expr("any")
        token = self.peek()
        if token.kind == "RPAREN":
            raise QueryError("unmatched ')'", token.column)
        if token.kind != "END":  # pragma: no cover - every other token starts a term
            raise QueryError(f"unexpected {token.text!r}", token.column)
        return node

    def or_expr(self, field: FieldName) -> Node:
        starts = [self.peek()]
        if starts[0].kind == "OR":
            raise QueryError("OR needs a term before it", starts[0].column)
        children = [self.and_expr(field, starts[0])]
        while self.peek().kind == "OR":
            op = self.take()
            if self.peek().kind in ("END", "RPAREN", "OR"):
                raise QueryError("OR needs a term after it", op.column)
            starts.append(self.peek())
            children.append(self.and_expr(field, starts[-1]))
        if len(children) == 1:
            return children[0]
        for child, start in zip(children, starts):
            if isinstance(child, Not):
                raise QueryError("an exclusion cannot be one side of OR: it would match almost everything",
                                 start.column)
        return Or(tuple(children))

    def and_expr(self, field: FieldName, start: _Token) -> Node:
        items: list[Node] = []
        run: list[str] = []  # bare words waiting to become a Term or a Run

        def flush() -> None:
            if len(run) == 1:
                items.append(Term(stem(run[0]), field))
            elif run:
                items.append(Run(tuple(run), field))
            run.clear()

        while True:
            token = self.peek()
            if token.kind in ("END", "RPAREN", "OR"):
                break
            if token.kind == "AND":
                self.take()
                if not items and not run:
                    raise QueryError("AND needs a term before it", token.column)
                if self.peek().kind in ("END", "RPAREN", "OR", "AND"):
                    raise QueryError("AND needs a term after it", token.column)
                continue  # written AND means what juxtaposition means
            if token.kind == "WORD" and "*" not in token.text:
                parts = self.word_parts(token)
                self.take()
                if len(parts) == 1:
                    run.append(parts[0])
                    continue
                flush()
                items.append(Phrase(tuple(parts), field))
                continue
            flush()
            items.append(self.unary(field))
        flush()
        if not items:
            if start.kind == "RPAREN":
                raise QueryError("unmatched ')'", start.column)
            raise QueryError("expected a term", start.column)
        if all(isinstance(item, Not) for item in items):
            if len(items) == 1:
                return items[0]  # the caller (OR, or the top) decides whether a lone exclusion is allowed
            raise QueryError("a query needs at least one term that is not excluded", start.column)
        return items[0] if len(items) == 1 else And(tuple(items))

    def unary(self, field: FieldName) -> Node:
        token = self.take()
        if token.kind in ("MINUS", "NOT"):
            if self.peek().kind in ("END", "RPAREN", "OR", "AND", "MINUS", "NOT"):
                raise QueryError(f"{token.text} needs a term after it", token.column)
            child = self.unary(field)
            if isinstance(child, Not):
                raise QueryError("a double exclusion is confusing: remove both", token.column)
            return Not(child)
        if token.kind == "FIELD":
            inner = self.peek()
            if inner.kind in ("WORD", "PHRASE", "LPAREN"):
                return self.unary(token.text)  # type: ignore[arg-type]
            raise QueryError(f"{token.text}: needs a word, a \"phrase\" or (...) right after it", token.column)
        if token.kind == "LPAREN":
            if self.peek().kind == "RPAREN":
                raise QueryError("empty parentheses", token.column)
            if self.peek().kind == "END":
                raise QueryError("unclosed '('", token.column)
            node = self.or_expr(field)
            if self.take().kind != "RPAREN":
                raise QueryError("unclosed '('", token.column)
            return node
        if token.kind == "PHRASE":
            parts = [part for word in raw_words(token.text) for part in word.split("-")]
            if not parts:
                raise QueryError("the phrase has no words", token.column)
            self.count(token, len(parts))
            return Term(stem(parts[0]), field) if len(parts) == 1 else Phrase(tuple(parts), field)
        if token.kind == "WORD" and "*" in token.text:
            stemless = token.text[:-1]
            if "*" in stemless or not token.text.endswith("*"):
                raise QueryError("'*' may only end a word", token.column)
            parts = raw_words(stemless)
            if len(parts) != 1 or "-" in parts[0] or len(parts[0]) < MIN_PREFIX:
                raise QueryError(
                    f"a prefix needs at least {MIN_PREFIX} letters or digits before '*': {token.text!r}", token.column
                )
            self.count(token, 1)
            return Prefix(parts[0], field)
        if token.kind == "WORD":
            parts = self.word_parts(token)
            return Term(stem(parts[0]), field) if len(parts) == 1 else Phrase(tuple(parts), field)
        if token.kind == "RPAREN":
            raise QueryError("unmatched ')'", token.column)
        raise QueryError(f"{token.text} needs a term on both sides", token.column)

    def word_parts(self, token: _Token) -> list[str]:
        parts = [part for word in raw_words(token.text) for part in word.split("-")]
        if not parts:
            raise QueryError(f"nothing searchable in {token.text!r}", token.column)
        self.count(token, len(parts))
        return parts

    def count(self, token: _Token, n: int) -> None:
        self.terms += n
        if self.terms > MAX_TERMS:
            raise QueryError(f"more than {MAX_TERMS} terms", token.column)


# Most queries have a plain shape, and a matcher parses thousands at a time: for these shapes,
# what the parser makes is made directly. Plain words are ASCII letters and digits, which
# folding only lower-cases; anything else (parentheses, prefixes in a field, accents...) is parsed.
_PLAIN = "[A-Za-z0-9]+"
_PLAIN_SHAPES = [(re.compile(pattern), shape) for pattern, shape in (
    (f"{_PLAIN}(?: +OR +{_PLAIN})+", "alternatives"),  # pruning OR distillation: an Or of Terms
    # diffusion -survey, vision transformer NOT video: an And of a Term or a Run, and a Not
    (f"({_PLAIN}(?: +{_PLAIN})*) +(?:-|NOT +)({_PLAIN})", "exclusion"),
    # vision transformer, vision AND transformer: a Term or a Run (tried after the shapes above,
    # whose operators are words too)
    (f"{_PLAIN}(?: +{_PLAIN})*", "words"),
    (f"{_PLAIN}(?:-{_PLAIN})+", "hyphenated"),  # self-attention: a Phrase
    (f'"({_PLAIN}(?: +{_PLAIN})*)"', "quoted"),  # "language models": a Phrase (a Term if one word)
    ("[A-Za-z0-9]{%d,}[*]" % MIN_PREFIX, "prefix"),  # quantiz*: a Prefix
    (f"(title|abstract):({_PLAIN})", "field word"),  # title:agent: a Term in a field
    (f'(title|abstract):"({_PLAIN}(?: +{_PLAIN})*)"', "field quoted"),  # title:"world model"
)]
_OPERATORS = frozenset(("OR", "AND", "NOT"))


def parse_query(query: str) -> Node:
    """Parse ``query``; raises QueryError saying what is wrong and where.

    A query is one line of printable text: it ends up in email subjects and in log lines,
    where a line break would break the message (see ``unprintable``).
    """
    return (_parse_plain(query) if len(query) <= MAX_LENGTH else None) or _parse(query)


def parse_stored_query(query: str) -> Node:
    """Parse a query read from the store. Queries saved before line breaks and invisible
    characters were refused keep the meaning they had then (the lexer reads a line break
    or a tab as a space) instead of failing every match and digest of their subscriber."""
    return (_parse_plain(query) if len(query) <= MAX_LENGTH else None) or _parse(query, one_line=False)




def _parse_plain(query: str) -> Node | None:
    """What ``_parse`` makes of a query of a plain shape; None for any other query (and for
    plain queries the parser refuses, so that it says why)."""
    match, shape = next(((m, shape) for pattern, shape in _PLAIN_SHAPES if (m := pattern.fullmatch(query))),
                        (None, None))
    if match is None:
        return None
    if shape == "alternatives":
        written = query.split()
        if not _OPERATORS.isdisjoint(written[::2]):  # every other word is OR
            return None
        return _plain_terms(written[::2], lambda words: Or(tuple(Term(stem(word)) for word in words)))
    if shape == "exclusion":
        included, excluded = match[1].split(), match[2]
        if not _OPERATORS.isdisjoint((*included, excluded)):
            return None
        return _plain_terms([*included, excluded],
                            lambda words: And((_term_or_run(words[:-1]), Not(Term(stem(words[-1]))))))
    if shape == "words":
        written = query.split()
        if "OR" in written or "NOT" in written:
            return None
        # A written AND means what juxtaposition means, between two words only.
        ands = [i for i, word in enumerate(written) if word == "AND"]
        if ands and (ands[0] == 0 or ands[-1] == len(written) - 1 or any(b - a == 1 for a, b in zip(ands, ands[1:]))):
            return None
        return _plain_terms([word for word in written if word != "AND"], _term_or_run)
    if shape == "hyphenated":
        return _plain_terms(query.split("-"), _term_or_phrase)
    if shape == "quoted":
        return _plain_terms(match[1].split(), _term_or_phrase)
    if shape == "prefix":
        return Prefix(query[:-1].lower())
    if shape == "field word":
        return None if match[2] in _OPERATORS else Term(stem(match[2].lower()), match[1])  # type: ignore[arg-type]
    return _plain_terms(match[2].split(), lambda words: _term_or_phrase(words, match[1]))  # field quoted


def _plain_terms(written: list[str], make) -> Node | None:
    """``make`` of the lower-cased words, or None past the parser's limit on terms."""
    return None if len(written) > MAX_TERMS else make([word.lower() for word in written])


def _term_or_run(words: list[str]) -> Node:
    return Term(stem(words[0])) if len(words) == 1 else Run(tuple(words))


def _term_or_phrase(words: list[str], field: FieldName = "any") -> Node:
    return Term(stem(words[0]), field) if len(words) == 1 else Phrase(tuple(words), field)


def _parse(query: str, one_line: bool = True) -> Node:
    """The parser itself, for any query."""
    if len(query) > MAX_LENGTH:
        raise QueryError(f"longer than {MAX_LENGTH} characters", MAX_LENGTH + 1)
    if not query.strip():
        raise QueryError("the query is empty", 1)
    if query.strip() == "*":
        return Everything()  # alone: every paper
    if one_line:
        # Surrounding whitespace is stripped before a query is stored: only what is kept counts.
        kept = query.strip()
        found = unprintable(kept)
        if found is not None:
            index, what = found
            raise QueryError(f"{what} is not allowed: a query is one line of printable text",
                             len(query) - len(query.lstrip()) + index + 1)
    node = _Parser(query).parse()
    if isinstance(node, Not):
        column = len(query) - len(query.lstrip()) + 1
        raise QueryError("a query needs at least one term that is not excluded", column)
    return node
