"""The matching engine agrees with the reference semantics (``evaluate``): on the real samples,
on random queries and papers, and through the QueryIndex's bookkeeping."""

from __future__ import annotations

import datetime
from collections.abc import Hashable, Sequence

import pytest
from hypothesis import HealthCheck, Phase, assume, example, find, given, settings
from hypothesis import strategies as st

from conftest import SAMPLES
from digestbot.core.dumps import parse_dump
from digestbot.core.batch import Batch, to_bits
from digestbot.core.matcher import QueryIndex, anchors, vocabulary
from digestbot.core.query import QueryError, _parse, parse_query
from digestbot.core.query_tree import And, Node, Not, Or, Phrase, Prefix, Run, Term
from digestbot.core.reference import Document, evaluate

Paper = tuple[str, str]


def engine(queries: dict[Hashable, str], papers: Sequence[Paper]) -> set[tuple[Hashable, int]]:
    """Every (owner, position) the engine reports, each at most once."""
    index = QueryIndex()
    for owner, query in queries.items():
        index.add(owner, parse_query(query))
    found = list(index.match(Batch(papers, index.vocabulary)))
    assert len(found) == len(set(found)), "a match was reported twice"
    return set(found)


def reference(queries: dict[Hashable, str], papers: Sequence[Paper]) -> set[tuple[Hashable, int]]:
    docs = [Document.of(title, abstract) for title, abstract in papers]
    return {
        (owner, position)
        for owner, query in queries.items()
        for position, doc in enumerate(docs)
        if evaluate(parse_query(query), doc)
    }


# ---- (a) the five real samples ------------------------------------------------------------------------

SAMPLE_QUERIES = [
    "transformer",
    "Transformers",
    "diffusion transformer",
    "diffusion AND transformer",
    '"diffusion transformer"',
    '"diffusion models"',
    "diffusion OR flow",
    "diffusion -survey",
    "diffusion NOT survey",
    "NOT survey transformer",
    "quantiz*",
    "(image OR video) generat* -diffusion",
    "title:diffusion",
    'abstract:"time series"',
    "title:(video OR audio) generation",
    '(llm OR "language model") (pruning OR quantiz*) -survey',
    "autoregressive",
    "auto-regressive",
    "auto regressive",
    '"autoregressive model"',
    '"auto regressive models"',
    "non-autoregressive",
    "time series",
    "time-series",
    "timeseries",
    "pretrained",
    "pre-trained",
    "pre trained",
    "finetuning",
    "fine tuning",
    "gpt",
    "GPT-4",
    "title:gpt*",
    "generative -generation",
    "generation -generative",
    "self-attention",
    "selfattention",
    "state-of-the-art",
    "transformer-based",
    "title:transformer-based",
    "abstract:token* -title:token*",
    '"vision transformers" OR vit',
    "title:survey OR review",
    "in-context learning",
    "large language model",
    "multi modal",
    "3d",
    "δ",
]


@pytest.fixture(scope="module")
def samples() -> list[Paper]:
    papers = []
    for path in sorted(SAMPLES.iterdir()):
        dump = parse_dump(path.read_bytes(), reference=datetime.date(2026, 11, 22))
        papers += [(entry.title, entry.abstract) for entry in dump.entries]
    assert len(papers) == 427
    return papers


@pytest.fixture(scope="module")
def sample_docs(samples: list[Paper]) -> list[Document]:
    return [Document.of(title, abstract) for title, abstract in samples]


@pytest.fixture(scope="module")
def sample_engine(samples: list[Paper]) -> dict[int, set[int]]:
    """All the sample queries in one index, one batch of all 427 papers."""
    index = QueryIndex()
    for owner, query in enumerate(SAMPLE_QUERIES):
        index.add(owner, parse_query(query))
    # transformer == Transformers, diffusion -survey == diffusion NOT survey,
    # and diffusion AND transformer == diffusion transformer
    assert index.distinct_queries == len(SAMPLE_QUERIES) - 3
    found: dict[int, set[int]] = {owner: set() for owner in range(len(SAMPLE_QUERIES))}
    for owner, position in index.match(Batch(samples, index.vocabulary)):
        found[owner].add(position)
    return found


@pytest.mark.parametrize("owner", range(len(SAMPLE_QUERIES)), ids=SAMPLE_QUERIES)
def test_engine_agrees_with_reference_on_samples(owner: int, sample_docs, sample_engine) -> None:
    node = parse_query(SAMPLE_QUERIES[owner])
    expected = {position for position, doc in enumerate(sample_docs) if evaluate(node, doc)}
    assert 0 < len(expected) < len(sample_docs), "the query should tell papers apart"
    assert sample_engine[owner] == expected


@pytest.mark.parametrize("query", ["quantiz*", '"autoregressive model"', "timeseries", "title:gpt*"])
def test_a_query_alone_agrees_with_reference_on_samples(query: str, samples, sample_docs) -> None:
    node = parse_query(query)
    index = QueryIndex()
    index.add("only", node)
    found = {position for _, position in index.match(Batch(samples, index.vocabulary))}
    assert found == {position for position, doc in enumerate(sample_docs) if evaluate(node, doc)}
    assert found


def test_spellings_agree_on_samples(sample_engine) -> None:
    by_query = {query: sample_engine[owner] for owner, query in enumerate(SAMPLE_QUERIES)}
    assert by_query["transformer"] == by_query["Transformers"]
    assert by_query["autoregressive"] == by_query["auto-regressive"] == by_query["auto regressive"]
    assert by_query['"autoregressive model"'] == by_query['"auto regressive models"']
    assert by_query["time-series"] == by_query["timeseries"] <= by_query["time series"]
    assert by_query["diffusion -survey"] == by_query["diffusion NOT survey"]
    assert by_query["diffusion AND transformer"] == by_query["diffusion transformer"]
    assert by_query['"diffusion transformer"'] < by_query["diffusion transformer"]
    assert by_query["title:transformer-based"] < by_query["transformer-based"]


# ---- (b) random queries and papers --------------------------------------------------------------------

WORDS = [
    "diffusion", "Diffusions", "flow",
    "transformer", "Transformers", "transformer-based",
    "time", "series", "timeseries", "time-series", "Time-Series",
    "auto", "regressive", "autoregressive", "auto-regressive", "non-auto-regressive",
    "pre", "trained", "pretrained", "pre-trained",
    "model", "models", "study", "studies",
    "Schrödinger", "schrodinger", "naïve", "naive",
    "generative", "generation", "GPT-4", "gpt", "4",
    "survey", "self-attention-based", "self", "attention",
    # adjacent pairs whose joined form is a word too, so pair joins are common
    "time series", "auto regressive", "pre trained", "self attention",
]
PREFIXES = ["di", "diff", "tim", "time", "ser", "au", "auto", "reg", "pre", "mod", "model", "stud",
            "studi", "schr", "gen", "genera", "gp", "tra", "transformerb", "sel", "nai", "sur"]
# prefixes of joined forms ("timeseries", "autoregressive", ...) longer than their first part:
# where a prefix and a pair join of two written words can be confused
JOIN_PREFIXES = ["times", "timeser", "autor", "pret", "selfa", "selfatt"]


def _styled(word: str, style: int) -> str:
    return (word, word.upper(), word.title())[style]


word = st.builds(_styled, st.sampled_from(WORDS), st.sampled_from([0, 0, 0, 1, 2]))
text = st.lists(word, max_size=8).map(" ".join)
paper = st.tuples(st.lists(word, max_size=5).map(" ".join), text)

phrase = st.lists(word, min_size=1, max_size=3).map(lambda ws: '"' + " ".join(ws) + '"')
prefix = st.one_of(st.sampled_from(PREFIXES), st.sampled_from(JOIN_PREFIXES)).map(lambda p: p + "*")
field = st.sampled_from(["", "", "", "title:", "abstract:"])
leaf = st.builds(lambda f, term: f + term, field, st.one_of(word, word, phrase, prefix))


def _extend(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    pair = st.tuples(inner, inner)
    return st.one_of(
        pair.map(lambda ab: f"{ab[0]} {ab[1]}"),
        pair.map(lambda ab: f"{ab[0]} {ab[1]}"),
        pair.map(lambda ab: f"{ab[0]} AND {ab[1]}"),
        pair.map(lambda ab: f"{ab[0]} OR {ab[1]}"),
        pair.map(lambda ab: f"{ab[0]} -{ab[1]}"),
        pair.map(lambda ab: f"{ab[0]} NOT {ab[1]}"),
        inner.map(lambda a: f"({a})"),
        st.tuples(st.sampled_from(["title:", "abstract:", "-"]), inner).map(lambda fa: f"{fa[0]}({fa[1]})"),
    )


query = st.recursive(leaf, _extend, max_leaves=6)


def _parsed(queries: list[str]) -> list[Node]:
    nodes = []
    for q in queries:
        try:
            nodes.append(parse_query(q))
        except QueryError:
            pass
    return nodes


# No "explain" phase: it re-runs a failing example many times and only adds comments.
@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink],
)
@given(queries=st.lists(query, min_size=1, max_size=4), papers=st.lists(paper, min_size=1, max_size=8))
# found by this test: a prefix matched a pair join ("time series") through another paper's word
@example(queries=["timeser*", "timeseries"], papers=[("", "timeseries"), ("", "time series")])
def test_engine_agrees_with_reference_on_random_queries(queries: list[str], papers: list[Paper]) -> None:
    nodes = _parsed(queries)
    assume(nodes)
    index = QueryIndex()
    for owner, node in enumerate(nodes):
        index.add(owner, node)
    index.add("twin", nodes[0])  # the same query for a second owner: stored once, reported for both
    assert index.distinct_queries == len(set(nodes))
    assert len(index) == len(nodes) + 1

    docs = [Document.of(title, abstract) for title, abstract in papers]
    expected = {(owner, p) for owner, node in enumerate(nodes) for p, doc in enumerate(docs) if evaluate(node, doc)}
    expected |= {("twin", p) for owner, p in expected if owner == 0}

    found = list(index.match(Batch(papers, index.vocabulary)))
    assert len(found) == len(set(found))
    assert set(found) == expected


@settings(max_examples=200, deadline=None)
@given(q=query, p=paper)
def test_a_batch_of_one_paper_agrees_with_reference(q: str, p: Paper) -> None:
    nodes = _parsed([q])
    assume(nodes)
    assert bool(Batch([p], vocabulary(nodes[0])).bits(nodes[0])) == evaluate(nodes[0], Document.of(*p))


@settings(max_examples=200, deadline=None)
@given(q=query, p=paper)
def test_every_match_contains_an_anchor(q: str, p: Paper) -> None:
    nodes = _parsed([q])
    assume(nodes)
    found = anchors(nodes[0])
    assert found
    doc = Document.of(*p)
    if evaluate(nodes[0], doc):
        terms = doc.title.terms | doc.abstract.terms
        words = doc.title.words | doc.abstract.words
        assert any(
            value in terms if kind == "term" else any(w.startswith(value) for w in words)
            for kind, value in found
        )


def _contains(node: Node, kind: type, field: str | None = None) -> bool:
    if isinstance(node, kind) and (field is None or getattr(node, "field", None) == field):
        return True
    children = getattr(node, "children", ()) or ((node.child,) if isinstance(node, Not) else ())
    return any(_contains(child, kind, field) for child in children)


@pytest.mark.parametrize(
    "kind, field",
    [(Or, None), (And, None), (Not, None), (Run, None), (Phrase, "title"), (Prefix, "abstract"), (Term, "title")],
)
def test_query_generator_reaches_every_construct(kind: type, field: str | None) -> None:
    """Guard for the property tests above: the generated strings parse into every kind of node."""

    def wanted(q: str) -> bool:
        nodes = _parsed([q])
        return bool(nodes) and _contains(nodes[0], kind, field)

    # generation only: the first example found is enough, shrinking it would only cost time
    found = find(query, wanted, settings=settings(max_examples=2000, database=None, phases=[Phase.generate]))
    assert wanted(found)


# ---- the prefix / pair-join case the property test finds ---------------------------------------------

def test_prefix_does_not_match_a_pair_join_of_another_paper() -> None:
    papers = [("Time series forecasting", ""), ("Timeseries forecasting", "")]
    queries = {"prefix": "timeser*", "joined": "timeseries"}
    assert reference(queries, papers) == {("prefix", 1), ("joined", 0), ("joined", 1)}
    assert engine(queries, papers) == reference(queries, papers)


def test_field_prefix_does_not_match_a_pair_join_of_another_paper() -> None:
    papers = [("Time series", "timeseries"), ("Timeseries", "")]
    queries = {"prefix": "title:timeser*", "joined": "timeseries"}
    assert ("prefix", 0) not in reference(queries, papers)
    assert engine(queries, papers) == reference(queries, papers)


# ---- hand-written agreements ----------------------------------------------------------------------------

@pytest.mark.parametrize(
    "q, papers",
    [
        ("timeseries", [("Time series forecasting", ""), ("Time-series", ""), ("Timely series", "")]),
        ('"autoregressive model"', [("Auto regressive models", ""), ("", "auto-regressive model"), ("autoregressive big model", "")]),
        ('"auto regressive model"', [("Autoregressive models", ""), ("Auto-regressive model", ""), ("regressive auto model", "")]),
        ("pre trained", [("Pretrained", ""), ("pre", "trained"), ("Pre-trained", ""), ("trained", "")]),
        ("title:(time series) -abstract:survey", [("Time series", "survey"), ("Timeseries", "review"), ("time", "series")]),
        ("gpt* -gpt", [("GPT-4", ""), ("GPTQ", ""), ("gpt", "")]),
    ],
)
def test_hand_written_batches_agree(q: str, papers: list[Paper]) -> None:
    assert engine({1: q}, papers) == reference({1: q}, papers)
    assert reference({1: q}, papers)


# ---- (c) QueryIndex bookkeeping ---------------------------------------------------------------------------

PAPERS = [
    ("Diffusion transformers for video", "We scale diffusion models."),
    ("A survey of diffusion models", "We survey the field."),
    ("Quantized LLMs", "Post-training quantization of time series models."),
]


def matched(index: QueryIndex, papers: Sequence[Paper] = PAPERS) -> set[tuple[Hashable, int]]:
    return set(index.match(Batch(papers, index.vocabulary)))


def test_add_match_remove() -> None:
    index = QueryIndex()
    index.add("alice", parse_query("diffusion -survey"))
    index.add("bob", parse_query("quantiz*"))
    assert len(index) == 2 and index.distinct_queries == 2
    assert matched(index) == {("alice", 0), ("bob", 2)}
    index.remove("alice")
    assert len(index) == 1 and index.distinct_queries == 1
    assert matched(index) == {("bob", 2)}
    index.remove("bob")
    assert len(index) == 0 and index.distinct_queries == 0
    assert matched(index) == set()
    assert index.vocabulary == set()


def test_remove_unknown_owner_is_a_no_op() -> None:
    index = QueryIndex()
    index.add("alice", parse_query("diffusion"))
    index.remove("nobody")
    index.remove("nobody")
    assert len(index) == 1
    assert matched(index) == {("alice", 0), ("alice", 1)}


def test_replace_an_owners_query() -> None:
    index = QueryIndex()
    index.add("alice", parse_query("diffusion"))
    index.add("alice", parse_query('"time series"'))
    assert len(index) == 1 and index.distinct_queries == 1
    assert matched(index) == {("alice", 2)}
    assert "diffusion" not in index.vocabulary
    index.add("alice", parse_query("time series"))  # same words, now a Run
    assert index.distinct_queries == 1
    assert matched(index) == {("alice", 2)}


def test_identical_queries_are_stored_once_and_reported_for_every_owner() -> None:
    index = QueryIndex()
    index.add("alice", parse_query("Diffusions -survey"))
    index.add("bob", parse_query("diffusion NOT survey"))
    index.add("carol", parse_query("diffusion   -Surveys"))
    assert len(index) == 3
    assert index.distinct_queries == 1
    assert matched(index) == {("alice", 0), ("bob", 0), ("carol", 0)}
    index.remove("bob")
    assert index.distinct_queries == 1
    assert matched(index) == {("alice", 0), ("carol", 0)}
    index.remove("alice")
    index.remove("carol")
    assert index.distinct_queries == 0
    assert matched(index) == set()


def test_replacing_a_shared_query_keeps_it_for_the_other_owner() -> None:
    index = QueryIndex()
    index.add("alice", parse_query("diffusion"))
    index.add("bob", parse_query("diffusion"))
    index.add("alice", parse_query("quantiz*"))
    assert index.distinct_queries == 2
    assert matched(index) == {("bob", 0), ("bob", 1), ("alice", 2)}


def test_vocabulary_holds_the_joins_queries_need_and_drops_them_on_removal() -> None:
    index = QueryIndex()
    index.add("a", parse_query("timeseries"))
    index.add("b", parse_query('"auto regressive" -gpt'))
    assert {"timesery", "autoregressive", "auto", "regressive", "gpt"} <= index.vocabulary
    assert vocabulary(parse_query("time series")) == {"time", "sery", "timesery"}
    index.remove("b")
    assert index.vocabulary == {"timesery"}
    # the join is what lets "time series" (two words) match the joined query
    assert matched(index) == {("a", 2)}


def test_two_queries_sharing_a_vocabulary_term_keep_it_until_both_go() -> None:
    index = QueryIndex()
    index.add("a", parse_query("timeseries"))
    index.add("b", parse_query("timeseries forecasting"))
    index.remove("a")
    assert "timesery" in index.vocabulary
    assert matched(index, [("Time series forecasting", "")]) == {("b", 0)}


def test_a_query_is_a_candidate_only_when_its_anchor_appears() -> None:
    index = QueryIndex()
    index.add("p", parse_query('"diffusion transformer"'))
    assert anchors(parse_query('"diffusion transformer"')) == {
        ("term", "transformer"),
        ("term", "diffusiontransformer"),
    }
    without = Batch([("Diffusion models", "Score-based diffusion.")], index.vocabulary)
    assert index.candidates(without) == set()
    assert list(index.match(without)) == []
    with_anchor = Batch([("Transformers", "")], index.vocabulary)
    assert len(index.candidates(with_anchor)) == 1
    assert list(index.match(with_anchor)) == []  # a candidate, but the phrase is not there
    joined = Batch([("Diffusion-Transformer", "")], index.vocabulary)
    assert len(index.candidates(joined)) == 1
    assert list(index.match(joined)) == [("p", 0)]


def test_an_exclusion_is_never_an_anchor() -> None:
    node = parse_query("diffusion -survey")
    assert anchors(node) == {("term", "diffusion")}
    index = QueryIndex()
    index.add("x", node)
    assert index.candidates(Batch([("A survey", "")], index.vocabulary)) == set()
    assert anchors(Not(Term("survey"))) is None


def test_prefix_anchor() -> None:
    index = QueryIndex()
    index.add("q", parse_query("title:quantiz*"))
    assert anchors(parse_query("title:quantiz*")) == {("prefix", "quantiz")}
    assert index.candidates(Batch([("Quantum computing", "")], index.vocabulary)) == set()
    assert len(index.candidates(Batch([("", "Quantized weights")], index.vocabulary))) == 1
    assert matched(index, [("", "Quantized weights"), ("Quantizing LLMs", "")]) == {("q", 1)}


def test_or_anchors_on_every_side_and_and_on_one() -> None:
    assert anchors(parse_query("diffusion OR flow*")) == {("term", "diffusion"), ("prefix", "flow")}
    chosen = anchors(parse_query("diffusion (flow OR matching) -survey"))
    assert chosen == {("term", "diffusion")}  # one alternative beats two


def test_an_index_refuses_a_query_with_nothing_positive() -> None:
    index = QueryIndex()
    index.add("ok", parse_query("diffusion"))
    with pytest.raises(ValueError):
        index.add("bad", Not(Term("survey")))
    assert len(index) == 1 and index.distinct_queries == 1
    assert matched(index) == {("ok", 0), ("ok", 1)}


def test_empty_batch_matches_nothing() -> None:
    index = QueryIndex()
    index.add("a", parse_query("diffusion"))
    assert matched(index, []) == set()


def test_batch_bits_and_positions() -> None:
    batch = Batch(PAPERS, vocabulary(parse_query("timeseries")))
    assert batch.size == 3 and batch.all == 0b111
    assert batch.bits(parse_query("diffusion")) == 0b011
    assert batch.bits(parse_query("diffusion -survey")) == 0b001
    assert batch.bits(parse_query("timeseries")) == 0b100
    assert Batch.positions(0b1010_0000_0001) == [0, 9, 11]
    assert Batch.positions(0) == []



@given(size=st.integers(1, 300), data=st.data())
def test_to_bits_sets_the_positions_given_few_or_many(size: int, data) -> None:
    positions = data.draw(st.lists(st.integers(0, size - 1), max_size=2 * size))  # repeats too
    bits = to_bits(positions, size)
    assert bits == sum(1 << p for p in set(positions))
    assert Batch.positions(bits) == sorted(set(positions))


def test_batch_matches_are_stored_once_per_query_and_counted_per_subscriber() -> None:
    import json

    from digestbot.services.matching import NewPaper, SubscriptionMatcher

    start = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
    later = start + datetime.timedelta(hours=1)
    matcher = SubscriptionMatcher()
    # diffusion's subscribers take papers from different times, transformer's from the same;
    # Diffusion is another query text with the same matches
    for subscription_id, query, since in [(1, "diffusion", start), (2, "diffusion", later), (3, "transformer", start),
                                          (4, "transformer", start), (5, "survey", start), (6, "Diffusion", start)]:
        matcher._add(subscription_id, query, since)
    papers = [NewPaper(10, "Diffusion", "", start), NewPaper(11, "Diffusion transformers", "", later),
              NewPaper(12, "A transformer", "", later)]
    found = matcher.match(papers)
    documents = list(found.documents(1))  # one query each
    assert sorted((json.dumps(json.loads(document)), pairs) for document, pairs in documents) == [
        ('{"Diffusion": [10, 11]}', 2), ('{"diffusion": [10, 11]}', 2), ('{"transformer": [11, 12]}', 2)]
    # diffusion: 10 and 11 for subscription 1, 11 for 2; transformer: 11 and 12 for both 3 and 4;
    # Diffusion: 10 and 11 for 6
    assert found.subscription_matches == 3 + 4 + 2

# ---- the parser's fast path for plain queries ---------------------------------------------------------

def _parse_outcome(parse, query: str):
    """What a parser makes of ``query``: the tree, or the error's message."""
    try:
        return parse(query)
    except QueryError as exc:
        return str(exc)


plain_word = st.sampled_from(["diffusion", "Models", "GPT4", "3d", "a", "OR", "AND", "NOT", "title", "x" * 7, "Ab"])
plain_query = st.one_of(
    st.lists(plain_word, min_size=1, max_size=60).map(" ".join),  # past MAX_TERMS too
    st.lists(plain_word, min_size=2, max_size=4).map(" OR ".join),
    st.lists(plain_word, min_size=2, max_size=4).map("-".join),
    st.lists(plain_word, min_size=1, max_size=3).map(lambda words: '"' + " ".join(words) + '"'),
    st.tuples(plain_word, st.sampled_from(["*", "**", "-", " -", ":"])).map("".join),
    st.lists(plain_word, min_size=1, max_size=4).map(" AND ".join),
    # exclusions: words, then -word or NOT word (or near misses)
    st.tuples(st.lists(plain_word, min_size=0, max_size=3).map(" ".join),
              st.sampled_from([" -", " NOT ", " - ", "-", " NOT  ", "  -"]), plain_word).map("".join),
    # a word or a quoted phrase in a field (or near misses)
    st.tuples(st.sampled_from(["title:", "abstract:", "Title:", "title: ", "title:-", "body:"]),
              st.one_of(plain_word, st.lists(plain_word, min_size=0, max_size=3).map(lambda w: '"' + " ".join(w) + '"'))
              ).map("".join),
    st.text(alphabet='ab O R"*-: ', max_size=12),  # near misses of the shapes
    st.text(alphabet="ab ANDOTRtile:-\"", max_size=16),
)


@settings(max_examples=500, deadline=None)
@given(q=plain_query)
@example(q="a OR b c")
@example(q="a OR AND")
@example(q="x*")
@example(q="a AND AND b")
@example(q="a b NOT c")
@example(q='title:"a b"')
@example(q="title:OR")
def test_plain_queries_parse_as_the_parser_parses_them(q: str) -> None:
    assert _parse_outcome(parse_query, q) == _parse_outcome(_parse, q)
