"""The normaliser: stemming, folding, hyphens and joins, and phrase matching over positions."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from digestbot.core.text import (
    Field,
    analyze,
    fold,
    join_key,
    normalize_word,
    pair_joins_for,
    phrase_in,
    raw_words,
    s_stem,
    stem,
)


def tokens(text: str) -> list[str]:
    return analyze(text).tokens


def phrase(text: str) -> tuple[str, ...]:
    """A phrase as the parser hands it to phrase_in: folded, unstemmed, hyphen parts split."""
    return tuple(part for word in raw_words(text) for part in word.split("-"))


# ---- Lucene's minimal English ("S") stemmer ----------------------------------------------------

@pytest.mark.parametrize(
    "word, expected",
    [
        ("transformers", "transformer"),
        ("models", "model"),
        ("tokens", "token"),
        ("studies", "study"),
        ("queries", "query"),
        ("libraries", "library"),
        ("gas", "ga"),  # three letters are enough for the plain "-s" rule
    ],
)
def test_plural_endings_are_removed(word: str, expected: str) -> None:
    assert s_stem(word) == expected
    assert stem(word) == expected


@pytest.mark.parametrize(
    "word",
    [
        # -us and -ss are not plurals
        "status", "corpus", "consensus", "bus",
        "class", "loss", "process",
        # -aies, -eies: the 'ies' rule does not apply after a or e, and the word stays
        "xaies", "xeies",
        # -aes, -ees, -oes, -ies of three letters stay whole
        "algaes", "trees", "employees", "goes", "heroes", "ies",
        # shorter than three letters
        "as", "is", "us", "4s", "s",
        # not ending in s at all
        "generative", "generation", "attention", "study",
    ],
)
def test_words_that_keep_their_ending(word: str) -> None:
    assert s_stem(word) == word
    assert stem(word) == word


def test_the_stemmer_only_removes_plurals() -> None:
    assert stem("generative") != stem("generation")
    assert stem("generatives") == "generative"
    assert stem("generations") == "generation"
    assert analyze("generative models").tokens == ["generative", "model"]
    assert "generation" not in analyze("generative models").terms
    assert "generative" not in analyze("video generation").terms


def test_stemmer_is_idempotent_on_its_output() -> None:
    for word in ("transformers", "studies", "queries", "models", "status", "trees"):
        assert stem(stem(word)) == stem(word)


# ---- folding: NFKC, case, accents ----------------------------------------------------------------

def test_accents_are_folded() -> None:
    assert fold("Schrödinger") == "schrodinger"
    assert fold("Schro\u0308dinger") == "schrodinger"  # decomposed input, combining diaeresis
    assert fold("naïve café Erdős") == "naive cafe erdos"
    assert tokens("Schrödinger bridges") == tokens("schrodinger bridge") == ["schrodinger", "bridge"]


def test_case_is_folded_including_full_case_folding() -> None:
    assert fold("BERT") == "bert"
    assert fold("Straße") == fold("STRASSE") == "strasse"
    assert tokens("Transformers") == ["transformer"]


def test_nfkc_full_width_letters() -> None:
    assert fold("ＢＥＲＴ") == "bert"
    assert tokens("ＢＥＲＴ Ｍｏｄｅｌｓ") == ["bert", "model"]


def test_nfkc_ligature() -> None:
    assert fold("ﬁne") == "fine"
    field = analyze("ﬁne-tuning")
    assert field.tokens == ["fine", "tuning"]
    assert "finetuning" in field.words
    assert analyze("eﬃcient").tokens == ["efficient"]


@pytest.mark.parametrize("dash", ["\u2010", "\u2011", "\u2013", "\u2014"], ids=["hyphen", "nb-hyphen", "en", "em"])
def test_unicode_dashes_behave_like_hyphen_minus(dash: str) -> None:
    assert raw_words(f"auto{dash}regressive") == ["auto-regressive"]
    assert fold(dash) == "-"
    written = analyze(f"An auto{dash}regressive model")
    plain = analyze("An auto-regressive model")
    assert written == plain
    assert written.spans[1][0] == ("autoregressive", 2)


def test_apostrophes_split_like_hyphens() -> None:
    assert raw_words("model's") == raw_words("model\u2019s") == ["model-s"]


# ---- hyphens: parts at their own positions, and the joined form ---------------------------------

def test_hyphen_parts_and_joined_form() -> None:
    field = analyze("Transformer-based models")
    assert field.tokens == ["transformer", "based", "model"]
    assert ("transformerbased", 2) in field.spans[0]
    assert {"transformer", "based", "transformerbased", "model"} <= field.words


def test_hyphen_joined_form_is_stemmed_as_one_word() -> None:
    field = analyze("pre-trains")
    assert field.tokens == ["pre", "train"]
    assert field.spans[0] == [("pretrain", 2)]
    assert join_key("time", "series") == stem("timeseries") == "timesery"
    assert ("timesery", 2) in analyze("time-series").spans[0]


def test_hyphen_join_of_many_parts() -> None:
    field = analyze("state-of-the-art GPT-4")
    assert field.tokens[:4] == ["state", "of", "the", "art"]
    assert ("stateoftheart", 4) in field.spans[0]
    assert ("gpt4", 2) in field.spans[4]
    assert {"gpt", "4", "gpt4", "stateoftheart"} <= field.words


def test_normalize_word_splits_hyphen_parts() -> None:
    assert normalize_word("Auto-Regressive") == ["auto", "regressive"]
    assert normalize_word("Transformers") == ["transformer"]
    assert normalize_word("GPT-4") == ["gpt", "4"]


# ---- pair joins of adjacent words ----------------------------------------------------------------

def test_adjacent_words_yield_their_pair_join_as_a_term_not_a_word() -> None:
    field = analyze("time series")
    assert field.tokens == ["time", "sery"]
    assert field.spans == {0: [("timesery", 2)]}
    assert "timesery" in field.terms
    assert "timesery" not in field.words  # a prefix never matches a pair join


def test_pair_join_uses_last_and_first_parts_of_hyphenated_neighbours() -> None:
    field = analyze("pre-trained model")
    assert ("pretrained", 2) in field.spans[0]
    assert ("trainedmodel", 2) in field.spans[1]
    assert "trainedmodel" in field.terms


def test_pair_vocabulary_keeps_only_asked_for_joins() -> None:
    assert "timesery" not in analyze("time series", {"unrelated"}).terms
    assert analyze("time series", {"unrelated"}).spans == {}
    kept = analyze("a time series model", {"timesery"})
    assert kept.spans == {1: [("timesery", 2)]}
    assert "timesery" in kept.terms
    # hyphen joins are always kept, whatever the vocabulary
    assert "autoregressive" in analyze("auto-regressive", set()).words


def test_no_pair_join_for_a_single_word() -> None:
    field = analyze("timeseries")
    assert field.tokens == ["timesery"]
    assert field.spans == {}


# ---- phrase_in -----------------------------------------------------------------------------------

DOCS = ["auto-regressive models", "autoregressive model", "auto regressive model"]
PHRASES = ["auto-regressive models", "autoregressive model", "auto regressive model"]


@pytest.mark.parametrize("doc", DOCS)
@pytest.mark.parametrize("query", PHRASES)
def test_phrase_in_meets_hyphen_space_and_joined_spellings_both_ways(query: str, doc: str) -> None:
    assert phrase_in(phrase(query), analyze(f"We train {doc} on text."))


@pytest.mark.parametrize("doc", ["time series", "time-series", "timeseries", "Time-Series"])
@pytest.mark.parametrize("query", ["time series", "time-series", "timeseries"])
def test_phrase_in_time_series_spellings(query: str, doc: str) -> None:
    assert phrase_in(phrase(query + " forecasting"), analyze(f"Long {doc} forecasting with transformers"))


def test_phrase_in_stems_each_word() -> None:
    assert phrase_in(("diffusion", "models"), analyze("A Diffusion Model"))
    assert phrase_in(("diffusion", "model"), analyze("diffusion models"))
    assert phrase_in(("schrodinger", "bridges"), analyze("Schrödinger Bridge"))


def test_phrase_in_needs_order() -> None:
    assert not phrase_in(("autoregressive", "model"), analyze("model autoregressive"))
    assert not phrase_in(("auto", "regressive", "model"), analyze("regressive auto model"))
    assert not phrase_in(("diffusion", "transformer"), analyze("transformer diffusion"))


def test_phrase_in_needs_adjacency() -> None:
    assert not phrase_in(("autoregressive", "model"), analyze("autoregressive language model"))
    assert not phrase_in(("auto", "regressive", "model"), analyze("auto and regressive model"))
    assert not phrase_in(("time", "series"), analyze("time and series"))


def test_phrase_in_needs_every_word() -> None:
    assert not phrase_in(("autoregressive", "model"), analyze("autoregressive"))
    assert not phrase_in(("generative", "model"), analyze("generation model"))
    assert not phrase_in(("a", "b"), analyze(""))


def test_phrase_in_finds_a_hyphen_part_inside_a_longer_word() -> None:
    assert phrase_in(("regressive", "model"), analyze("auto-regressive models"))
    assert phrase_in(("transformer", "based"), analyze("Transformer-based GAN"))
    assert phrase_in(("gpt", "4"), analyze("GPT-4 and others"))
    assert not phrase_in(("gpt", "4"), analyze("GPT-3 and 4 others"))


# ---- analyze against a word-by-word statement of what it makes ----------------------------------

def plain_analysis(text: str, vocabulary: set[str] | None) -> Field:
    """What ``analyze`` makes, written word by word, as the module docstring and ``Field`` say."""
    words = [word.split("-") for word in raw_words(text)]
    starts = [sum(map(len, words[:k])) for k in range(len(words))]

    def wanted(left: str, right: str) -> str | None:
        joined = join_key(left, right)
        return joined if vocabulary is None or joined in vocabulary else None

    field = Field()
    joins = set()
    for start, parts in zip(starts, words):
        field.tokens += [stem(part) for part in parts]
        field.words |= {stem(part) for part in parts} | set(parts)
        if len(parts) > 1:  # a hyphenated word: its hyphen join spans it, inner joins of three parts or more
            field.spans.setdefault(start, []).append((join_key(*parts), len(parts)))
            field.words |= {join_key(*parts), "".join(parts)}
            for j in range(len(parts) - 1) if len(parts) > 2 else ():
                if (inner := wanted(parts[j], parts[j + 1])) is not None:
                    field.spans.setdefault(start + j, []).append((inner, 2))
                    joins.add(inner)
    for k in range(len(words) - 1):  # the pair join of a word's last part and the next word's first
        if (pair := wanted(words[k][-1], words[k + 1][0])) is not None:
            field.spans.setdefault(starts[k] + len(words[k]) - 1, []).append((pair, 2))
            joins.add(pair)
    field.terms = field.words | joins
    return field


written = st.sampled_from(["time", "series", "Time-Series", "auto", "regressive", "non-auto-regressive", "pre",
                           "trained", "pre-trained", "models", "model's", "state-of-the-art", "GPT-4", "studies",
                           "a", "x-y-z", "—", "--", "-lead", "trail-", ",", "(", "naïve", "Straße"])
separator = st.sampled_from([" ", " ", " ", "-", ", ", "\u2013", "'"])


@settings(max_examples=400, deadline=None)
@given(pieces=st.lists(st.tuples(written, separator), max_size=12),
       vocabulary=st.one_of(st.none(), st.sets(st.sampled_from(["timesery", "autoregressive", "pretrained",
                                                                 "trainedmodel", "stateof", "ofthe", "xy", "yz",
                                                                 "seriesauto", "modelsstate"]))))
def test_analyze_agrees_with_a_word_by_word_analysis(pieces, vocabulary) -> None:
    text = "".join(word + sep for word, sep in pieces)
    expected = plain_analysis(text, vocabulary)
    assert analyze(text, vocabulary) == expected
    if vocabulary is not None:
        assert analyze(text, pair_joins_for(vocabulary)) == expected  # the batch's way of giving it


def phrase_at_reference(words: list[str], pairs: list[str], doc: Field, p: int, i: int = 0) -> bool:
    """``phrase_starts_at`` as a plain recursion: each step takes a phrase word (or two, joined)
    as a token or as a joined form spanning tokens."""
    if i == len(words):
        return True
    if p >= len(doc.tokens):
        return False
    steps = [(doc.tokens[p], 1), *doc.spans.get(p, ())]
    return any((term == words[i] and phrase_at_reference(words, pairs, doc, p + length, i + 1))
               or (i + 1 < len(words) and term == pairs[i]
                   and phrase_at_reference(words, pairs, doc, p + length, i + 2))
               for term, length in steps)


@settings(max_examples=400, deadline=None)
@given(doc=st.lists(written, max_size=10).map(" ".join), query=st.lists(written, min_size=1, max_size=4).map(" ".join))
def test_phrase_in_agrees_with_a_plain_recursion(doc: str, query: str) -> None:
    raw = phrase(query)
    if not raw:
        return
    field = analyze(doc)
    words = [stem(w) for w in raw]
    pairs = [join_key(raw[i], raw[i + 1]) for i in range(len(raw) - 1)]
    assert phrase_in(raw, field) == any(phrase_at_reference(words, pairs, field, p) for p in range(len(field.tokens)))
