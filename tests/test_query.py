"""The query language: the parser on every construct, every refusal with its column, and the
reference semantics (``evaluate``) on small hand-written papers for each promise of the README."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from digestbot.core.query import MAX_LENGTH, MAX_TERMS, QueryError, parse_query
from digestbot.core.query_tree import And, Everything, Not, Or, Phrase, Prefix, Run, Term, leaves
from digestbot.core.reference import Document, evaluate
from digestbot.errors import UsageError


def finds(query: str, title: str, abstract: str = "") -> bool:
    return evaluate(parse_query(query), Document.of(title, abstract))


def refusal(query: str) -> QueryError:
    with pytest.raises(QueryError) as caught:
        parse_query(query)
    return caught.value


# ---- the tree ------------------------------------------------------------------------------------

def test_implicit_and_makes_a_run_of_adjacent_words() -> None:
    assert parse_query("diffusion transformer") == Run(("diffusion", "transformer"))


def test_a_single_word_is_a_stemmed_term() -> None:
    assert parse_query("Transformers") == Term("transformer")
    assert parse_query("Schrödinger") == Term("schrodinger")


def test_and_written_means_what_juxtaposition_means() -> None:
    assert parse_query("diffusion AND transformer") == parse_query("diffusion transformer")
    assert parse_query("a b AND c") == Run(("a", "b", "c"))
    assert parse_query('a AND "b c"') == And((Term("a"), Phrase(("b", "c"))))


def test_or() -> None:
    assert parse_query("diffusion OR flow") == Or((Term("diffusion"), Term("flow")))
    assert parse_query("a OR b OR c") == Or((Term("a"), Term("b"), Term("c")))


def test_or_binds_looser_than_and() -> None:
    assert parse_query("a OR b c") == Or((Term("a"), Run(("b", "c"))))
    assert parse_query("a b OR c") == Or((Run(("a", "b")), Term("c")))


def test_minus_and_not_exclude() -> None:
    expected = And((Term("diffusion"), Not(Term("survey"))))
    assert parse_query("diffusion -survey") == expected
    assert parse_query("diffusion NOT survey") == expected
    assert parse_query("-survey diffusion") == And((Not(Term("survey")), Term("diffusion")))


def test_exclusion_of_a_phrase_and_a_group() -> None:
    assert parse_query('llm -"language model"') == And((Term("llm"), Not(Phrase(("language", "model")))))
    assert parse_query("llm NOT (survey OR review)") == And((Term("llm"), Not(Or((Term("survey"), Term("review"))))))


def test_a_hyphen_inside_a_word_is_not_an_exclusion() -> None:
    assert parse_query("auto-regressive") == Phrase(("auto", "regressive"))
    assert parse_query("GPT-4") == Phrase(("gpt", "4"))
    assert parse_query("x -auto-regressive") == And((Term("x"), Not(Phrase(("auto", "regressive")))))


def test_prefix() -> None:
    assert parse_query("quantiz*") == Prefix("quantiz")
    assert parse_query("Quantiz*") == Prefix("quantiz")
    assert parse_query("llm quantiz*") == And((Term("llm"), Prefix("quantiz")))


def test_phrase() -> None:
    assert parse_query('"diffusion transformers"') == Phrase(("diffusion", "transformers"))
    assert parse_query('"Diffusion"') == Term("diffusion")
    assert parse_query('"auto-regressive model"') == Phrase(("auto", "regressive", "model"))


def test_fields_with_a_word_a_phrase_and_parentheses() -> None:
    assert parse_query("title:diffusion") == Term("diffusion", "title")
    assert parse_query("Title:diffusion") == Term("diffusion", "title")
    assert parse_query('abstract:"time series"') == Phrase(("time", "series"), "abstract")
    assert parse_query("title:(video OR audio) generation") == And(
        (Or((Term("video", "title"), Term("audio", "title"))), Term("generation"))
    )
    assert parse_query("title:(diffusion transformer)") == Run(("diffusion", "transformer"), "title")
    assert parse_query("title:quantiz*") == Prefix("quantiz", "title")
    assert parse_query("title:auto-regressive") == Phrase(("auto", "regressive"), "title")
    assert parse_query("x -title:survey") == And((Term("x"), Not(Term("survey", "title"))))


def test_field_applies_only_to_what_follows_it() -> None:
    assert parse_query("title:diffusion model") == And((Term("diffusion", "title"), Term("model")))


def test_grouping() -> None:
    assert parse_query("(a OR b) c") == And((Or((Term("a"), Term("b"))), Term("c")))
    assert parse_query("a (b OR c)") == And((Term("a"), Or((Term("b"), Term("c")))))
    assert parse_query("((a))") == Term("a")
    node = parse_query('(llm OR "language model") (pruning OR quantiz*) -survey')
    assert node == And(
        (
            Or((Term("llm"), Phrase(("language", "model")))),
            Or((Term("pruning"), Prefix("quantiz"))),
            Not(Term("survey")),
        )
    )
    assert [positive for _, positive in leaves(node)] == [True, True, True, True, False]


@pytest.mark.parametrize("word", ["or", "and", "not", "Or", "And", "Not"])
def test_lower_case_operators_are_plain_words(word: str) -> None:
    node = parse_query(f"diffusion {word} flow")
    assert node == Run(("diffusion", word.lower(), "flow"))
    assert finds(f"diffusion {word} flow", f"Diffusion {word} flow")
    assert not finds(f"diffusion {word} flow", "Diffusion models")
    assert not finds(f"diffusion {word} flow", "Flow matching")


def test_limits_are_inclusive() -> None:
    long_ok = ("diffusion " * 50)[: MAX_LENGTH - 1] + "x"
    assert len(long_ok) == MAX_LENGTH
    parse_query(long_ok)
    parse_query(" ".join(f"w{i}" for i in range(MAX_TERMS)))


# ---- refusals, with their column ------------------------------------------------------------------

def test_query_error_is_a_usage_error_with_a_readable_message() -> None:
    error = refusal('"diffusion transformer')
    assert isinstance(error, UsageError)
    assert str(error) == 'bad query: unclosed quote " at column 1'
    assert error.column == 1


@pytest.mark.parametrize("query", ["", "   ", "\t\n"])
def test_empty_or_blank_query(query: str) -> None:
    error = refusal(query)
    assert "empty" in error.problem
    assert error.column == 1


@pytest.mark.parametrize(
    "query, column",
    [('"diffusion transformer', 1), ('diffusion "transformer', 11), ('"a" "b', 5)],
)
def test_unclosed_quote(query: str, column: int) -> None:
    error = refusal(query)
    assert "unclosed quote" in error.problem
    assert error.column == column


@pytest.mark.parametrize("query, column", [("(a b", 1), ("x (a OR b", 3), ("(a (b)", 1), ("title:(a", 7)])
def test_unclosed_parenthesis(query: str, column: int) -> None:
    error = refusal(query)
    assert "unclosed '('" in error.problem
    assert error.column == column


@pytest.mark.parametrize("query, column", [("a b)", 4), ("(a) b)", 6), ("a )", 3), ("(a))", 4)])
def test_unmatched_closing_parenthesis(query: str, column: int) -> None:
    error = refusal(query)
    assert "unmatched ')'" in error.problem
    assert error.column == column


@pytest.mark.parametrize("query", [") a", ")"])
def test_unmatched_closing_parenthesis_at_the_start(query: str) -> None:
    error = refusal(query)
    assert "unmatched ')'" in error.problem, error.problem
    assert error.column == 1


@pytest.mark.parametrize(
    "query, column",
    [
        ("-survey", 1),
        ("NOT transformer", 1),
        ("-a -b", 1),
        ("NOT a NOT b", 1),
        ("-(a OR b)", 1),
        ('-"time series"', 1),
        ("x OR (-a -b)", 7),
    ],
)
def test_exclusions_only(query: str, column: int) -> None:
    error = refusal(query)
    assert "at least one term that is not excluded" in error.problem
    assert error.column == column


@pytest.mark.parametrize(
    "query, column",
    [("a OR -b", 6), ("-a OR b", 1), ("a OR NOT b", 6), ("x OR -y z OR (-w)", 14)],
)
def test_exclusion_as_a_side_of_or(query: str, column: int) -> None:
    error = refusal(query)
    assert "exclusion cannot be one side of OR" in error.problem
    assert error.column == column


def test_exclusion_inside_one_side_of_or_is_fine() -> None:
    assert parse_query("a OR b -c") == Or((Term("a"), And((Term("b"), Not(Term("c"))))))


@pytest.mark.parametrize("query, column", [("a*", 1), ("x a*", 3), ("* x", 1), ("x title:y*", 9), ("!*", 1)])
def test_prefix_too_short(query: str, column: int) -> None:
    error = refusal(query)
    assert "prefix needs at least 2" in error.problem
    assert error.column == column


@pytest.mark.parametrize("query, column", [("quan*tum*", 1), ("x qu**", 3)])
def test_star_twice(query: str, column: int) -> None:
    error = refusal(query)
    assert "'*' may only end a word" in error.problem
    assert error.column == column


@pytest.mark.parametrize("query, column", [("quan*tum", 1), ("diffusion trans*former", 11)])
def test_star_in_the_middle_of_a_word(query: str, column: int) -> None:
    error = refusal(query)
    assert "'*' may only end a word" in error.problem
    assert error.column == column


def test_longer_than_500_characters() -> None:
    query = "diffusion " * 50 + "x"
    assert len(query) == 501
    error = refusal(query)
    assert "longer than 500 characters" in error.problem
    assert error.column == 501


def test_more_than_50_terms() -> None:
    words = [f"w{i}" for i in range(51)]
    query = " ".join(words)
    error = refusal(query)
    assert "more than 50 terms" in error.problem
    assert error.column == query.index("w50") + 1


def test_terms_are_counted_across_phrases_and_hyphen_parts() -> None:
    query = '"' + " ".join(f"w{i}" for i in range(45)) + '" x-y-z-u-v-w'
    error = refusal(query)
    assert "more than 50 terms" in error.problem
    assert error.column == query.index("x-y") + 1


@pytest.mark.parametrize("query, column", [("!!!", 1), ("diffusion !!!", 11)])
def test_nothing_searchable(query: str, column: int) -> None:
    error = refusal(query)
    assert "nothing searchable in '!!!'" in error.problem
    assert error.column == column


@pytest.mark.parametrize(
    "query, problem, column",
    [
        ('a ""', "the phrase has no words", 3),
        ("OR a", "OR needs a term before it", 1),
        ("a OR", "OR needs a term after it", 3),
        ("a OR OR b", "OR needs a term after it", 3),
        ("a AND", "AND needs a term after it", 3),
        ("a NOT", "NOT needs a term after it", 3),
        ("a -(b", "unclosed '('", 4),
        ("() a", "empty parentheses", 1),
        ("title:", "title: needs a word", 1),
        ("x abstract: OR y", "abstract: needs a word", 3),
        ("-(-a) b", "double exclusion", 1),
    ],
)
def test_other_refusals(query: str, problem: str, column: int) -> None:
    error = refusal(query)
    assert problem in error.problem
    assert error.column == column


# ---- semantics through evaluate --------------------------------------------------------------------

@pytest.mark.parametrize(
    "query, text",
    [
        ("transformer", "Transformers for vision"),
        ("Transformers", "A transformer for vision"),
        ("study", "Two case studies"),
        ("studies", "A user study"),
        ("query", "Answering queries"),
        ('"diffusion models"', "A diffusion model"),
    ],
)
def test_singular_and_plural_are_the_same_word(query: str, text: str) -> None:
    assert finds(query, text)
    assert finds(query, "", text)


AUTOREGRESSIVE = ["autoregressive", "auto-regressive", "auto regressive"]


@pytest.mark.parametrize("doc", AUTOREGRESSIVE)
@pytest.mark.parametrize("query", AUTOREGRESSIVE)
def test_autoregressive_spellings_meet_in_every_direction(query: str, doc: str) -> None:
    assert finds(query, f"Scalable {doc} image generation")
    assert finds(query, "Image generation", f"We propose an {doc.upper()} model.")
    assert not finds(query, "Regressive image generation")


@pytest.mark.parametrize("doc", ["time series", "time-series", "timeseries"])
@pytest.mark.parametrize("query", ["time series", "time-series", "timeseries"])
def test_time_series_spellings_meet(query: str, doc: str) -> None:
    assert finds(query, f"Long {doc} forecasting")
    assert not finds(query, "Long sequence forecasting")


@pytest.mark.parametrize("doc", ["pretrained", "pre-trained", "Pre-Trained", "pre trained"])
@pytest.mark.parametrize("query", ["pretrained", "pre-trained", "pre trained"])
def test_pretrained_spellings_meet(query: str, doc: str) -> None:
    assert finds(query, f"Generative {doc} transformers")
    assert not finds(query, "Generative trained transformers")


@pytest.mark.parametrize("doc", AUTOREGRESSIVE)
@pytest.mark.parametrize("query", AUTOREGRESSIVE)
def test_phrase_spellings_meet_in_every_direction(query: str, doc: str) -> None:
    assert finds(f'"{query} models"', f"On {doc} model scaling")
    assert not finds(f'"{query} models"', f"On {doc} language model scaling")


@pytest.mark.parametrize(
    "joined, hyphenated, title",
    [
        ("autoregressive", "auto-regressive", "Non-auto-regressive decoding"),
        ("selfattention", "self-attention", "Self-attention-based encoders"),
        ("timeseries", "time-series", "Time-series-based anomaly detection"),
    ],
)
def test_joined_spelling_finds_part_of_a_longer_hyphenated_word(joined: str, hyphenated: str, title: str) -> None:
    # README: autoregressive / auto-regressive / auto regressive "find each other in every
    # direction". The hyphenated spelling finds these titles; the joined one must too.
    assert finds(hyphenated, title)
    assert finds(f"{joined[:4]} {joined[4:]}", title)
    assert finds(joined, title)


def test_hyphen_parts_are_words() -> None:
    assert finds("transformer", "A Transformer-based detector")
    assert finds("based", "A Transformer-based detector")
    assert finds("gpt", "Evaluating GPT-4 on exams")
    assert finds("4", "Evaluating GPT-4 on exams")
    assert finds("gpt4", "Evaluating GPT-4 on exams")
    assert finds("GPT-4", "Evaluating GPT4 on exams")
    assert not finds("gpt", "Evaluating GPTQ")


def test_phrase_follows_the_per_word_rules() -> None:
    assert finds('"autoregressive model"', "Auto-regressive models are strong")
    assert finds('"auto regressive model"', "Autoregressive models are strong")
    assert finds('"transformer based"', "Transformer-based models")
    assert finds('"Schrödinger bridges"', "", "A schrodinger bridge approach")


def test_phrase_needs_order_and_adjacency_where_the_run_does_not() -> None:
    swapped = "Transformer models for diffusion"
    apart = "Diffusion models with a transformer"
    adjacent = "The diffusion transformer"
    assert finds('"diffusion transformer"', adjacent)
    assert not finds('"diffusion transformer"', swapped)
    assert not finds('"diffusion transformer"', apart)
    assert not finds('"diffusion transformer"', "Diffusion", "transformer")  # not across fields
    assert finds("diffusion transformer", swapped)
    assert finds("diffusion transformer", apart)
    assert finds("diffusion transformer", "Diffusion", "transformer")


def test_and_needs_every_side() -> None:
    assert finds("diffusion AND transformer", "Diffusion", "Transformer")
    assert not finds("diffusion AND transformer", "Diffusion models")
    assert not finds("diffusion transformer", "Diffusion models")


def test_or_needs_either_side() -> None:
    assert finds("diffusion OR flow", "Flow matching")
    assert finds("diffusion OR flow", "Diffusion models")
    assert not finds("diffusion OR flow", "Consistency models")


@pytest.mark.parametrize("query", ["diffusion -survey", "diffusion NOT survey", "-survey diffusion"])
def test_exclusions(query: str) -> None:
    assert finds(query, "Diffusion models")
    assert not finds(query, "Diffusion models: a survey")
    assert not finds(query, "Diffusion models", "We survey the field.")
    assert not finds(query, "Diffusion models", "Three surveys compared.")  # plural excluded too
    assert not finds(query, "Flow matching")


def test_exclusion_of_a_phrase_only_excludes_the_phrase() -> None:
    query = 'transformer -"time series"'
    assert not finds(query, "Transformers for time-series")
    assert finds(query, "Transformers for time and series")


def test_prefix_finds_words_starting_with_it() -> None:
    for word in ("quantization", "quantized", "quantizing", "Quantizer", "quantizations"):
        assert finds("quantiz*", f"Post-training {word} of LLMs")
    assert not finds("quantiz*", "Quantum computing")
    assert not finds("quantiz*", "Dequantization")  # a prefix, not a substring
    assert finds("quantiz*", "Low-bit weight-quantization")  # a hyphen part is a word


def test_prefix_finds_the_written_word_not_just_its_stem() -> None:
    # README: `quantiz*` finds papers "with a word starting with quantiz". The word "studies"
    # starts with "studi"; "series" starts with "series".
    assert finds("studi*", "Three case studies")
    assert finds("series*", "Time series forecasting")
    assert finds("transformers*", "Vision transformers")


@pytest.mark.parametrize(
    "query, title, abstract, expected",
    [
        ("title:diffusion", "Diffusion models", "", True),
        ("title:diffusion", "Generative models", "We use diffusion.", False),
        ("abstract:diffusion", "Diffusion models", "Generative models.", False),
        ("abstract:diffusion", "Models", "Diffusion models.", True),
        ('abstract:"time series"', "", "Long time series forecasting", True),
        ('abstract:"time series"', "Time series forecasting", "Long sequences", False),
        ('title:"time series"', "Timeseries forecasting", "", True),
        ("title:(video OR audio) generation", "Audio synthesis", "Conditional generation", True),
        ("title:(video OR audio) generation", "Speech synthesis", "Video generation", False),
        ("title:(video OR audio) generation", "Video models", "Classification", False),
        ("title:(diffusion transformer)", "Diffusion transformer", "", True),
        ("title:(diffusion transformer)", "Diffusion", "A transformer", False),
        ("title:quantiz*", "Quantized LLMs", "", True),
        ("title:quantiz*", "LLMs", "Quantized weights", False),
        ("x -title:survey", "X", "A survey", True),
        ("x -title:survey", "X: a survey", "", False),
        ("title:timeseries", "Time series", "", True),
        ("title:timeseries", "Time", "series", False),
    ],
)
def test_field_restriction(query: str, title: str, abstract: str, expected: bool) -> None:
    assert finds(query, title, abstract) is expected


def test_grouping_semantics() -> None:
    query = '(llm OR "language model") (pruning OR quantiz*) -survey'
    assert finds(query, "Pruning large language models")
    assert finds(query, "LLM quantization")
    assert not finds(query, "LLM quantization: a survey")
    assert not finds(query, "Language understanding of pruning models")
    assert not finds(query, "Quantized CNNs")


@pytest.mark.parametrize(
    "query, text",
    [
        ("schrodinger", "Schrödinger bridges"),
        ("Schrödinger", "SCHRODINGER BRIDGES"),
        ("bert", "BERT pretraining"),
        ("BERT", "bert pretraining"),
        ("naïve", "A naive baseline"),
        ('"NAIVE BAYES"', "naïve Bayes"),
        ("ＢＥＲＴ", "BERT"),
        ("ﬁne-tuning", "Fine-tuning"),
        ("auto\u2013regressive", "autoregressive"),
    ],
)
def test_case_accents_and_compatibility_forms_never_matter(query: str, text: str) -> None:
    assert finds(query, text)


def test_generative_does_not_find_generation() -> None:
    assert not finds("generative", "Video generation")
    assert not finds("generation", "Generative models")
    assert finds("generative", "Generative models")
    assert finds("generat*", "Video generation") and finds("generat*", "Generative models")


def test_evaluate_refuses_what_is_not_a_node() -> None:
    with pytest.raises(TypeError):
        evaluate("diffusion", Document.of("diffusion", ""))  # type: ignore[arg-type]


# ---- robustness --------------------------------------------------------------------------------------

QUERY_ALPHABET = st.sampled_from(list('ab -*"():ORANDNOTtitle:abstract:é–ﬁ!\t') + ["OR", "AND", "NOT", "title:", "author:", "x-y"])


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=40), st.lists(QUERY_ALPHABET, max_size=25).map("".join)))
def test_any_text_parses_or_is_refused_with_a_column_inside_the_query(query: str) -> None:
    try:
        node = parse_query(query)
    except QueryError as error:
        assert error.problem and str(error).startswith("bad query: ")
        assert error.column is None or 1 <= error.column <= len(query) + 1
    else:
        assert node == Everything() or any(positive for _, positive in leaves(node))  # "*" alone: every paper
        evaluate(node, Document.of(query, query, query))  # whatever parses can be evaluated


# ---- every paper (*) and author names (author:) -------------------------------------------------

def test_star_alone_matches_every_paper() -> None:
    from digestbot.core.query_tree import Everything

    assert parse_query("*") == parse_query("  * ") == Everything()
    assert finds("*", "anything", "at all") and finds("*", "", "")
    with pytest.raises(QueryError, match="prefix needs"):
        parse_query("-*")  # not alone: a prefix too short, as before


@pytest.mark.parametrize("query, title, abstract, authors, found", [
    ("author:hinton", "Deep nets", "We train.", "Geoffrey Hinton ; Yann LeCun", True),
    ("author:HINTON", "Deep nets", "We train.", "Geoffrey Hinton", True),
    ('author:"zoe angstrom"', "T", "A", "Zoë Ångström ; Ravi Patel", True),  # accent-blind
    ('author:"angstrom zoe"', "T", "A", "Zoë Ångström", False),
    ("author:hinton", "Hinton's method", "Hinton said.", "Ann Lee", False),  # only names
    ("hinton", "T", "A", "Geoffrey Hinton", False),  # a bare word never looks at names
    ("author:hint*", "T", "A", "Geoffrey Hinton", True),
    ("diffusion author:patel", "Diffusion for speech", "A", "Ravi Patel", True),
    ("diffusion -author:patel", "Diffusion for speech", "A", "Ravi Patel", False),
    ("author:(lee OR patel)", "T", "A", "Ravi Patel", True),
])
def test_author_field(query: str, title: str, abstract: str, authors: str, found: bool) -> None:
    from digestbot.core.batch import Batch
    from digestbot.core.matcher import QueryIndex

    node = parse_query(query)
    assert evaluate(node, Document.of(title, abstract, authors)) is found
    index = QueryIndex()
    index.add("q", node)
    assert (list(index.match(Batch([(title, abstract, authors)], index.vocabulary))) == [("q", 0)]) is found
