"""How papers are recognised across dumps: the title key and the abstract fingerprint."""

from __future__ import annotations

from datetime import date

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import SAMPLES
from digestbot.core.dumps import parse_dump
from digestbot.core.identity import abstract_fingerprint, title_key

IA_RED_PLAIN = "IA-RED^2: Interpretability-Aware Redundancy Reduction for Vision Transformers"
IA_RED_LATEX = "IA-RED$^2$: Interpretability-Aware Redundancy Reduction for Vision Transformers"


def _sample_entries():
    return [e for p in sorted(SAMPLES.iterdir()) for e in parse_dump(p.read_bytes(), date(2025, 12, 31)).entries]


def test_ia_red_titles_from_the_samples_share_a_key():
    titles = {e.title for e in _sample_entries() if e.title.startswith("IA-RED")}
    assert titles == {IA_RED_PLAIN, IA_RED_LATEX}
    assert title_key(IA_RED_PLAIN) == title_key(IA_RED_LATEX)
    assert title_key(IA_RED_PLAIN) == "ia red 2 interpretability aware redundancy reduction for vision transformers"


@pytest.mark.parametrize("variant", [
    "attention is all you need",
    "ATTENTION IS ALL YOU NEED",
    "Attention  is\tall you\nneed",
    "  Attention Is All You Need  ",
    "Attention Is All You Need.",
    "Attention -- Is All You Need!",
    "Attention_Is_All_You_Need",
])
def test_recased_and_respaced_titles_share_a_key(variant):
    assert title_key(variant) == title_key("Attention Is All You Need") == "attention is all you need"


def test_nfkc_full_width_letters():
    assert title_key("ＩＡ－ＲＥＤ＾２： Ｖｉｓｉｏｎ") == title_key("IA-RED^2: Vision")


def test_nfkc_ligatures():
    assert title_key("Eﬃcient ﬁne-tuning") == title_key("Efficient fine-tuning") == "efficient fine tuning"


def test_casefold_not_just_lower():
    assert title_key("Straße der Modelle") == title_key("STRASSE DER MODELLE")


@pytest.mark.parametrize(("a", "b"), [
    ("Vision Transformers", "Vision Transformer"),
    ("IA-RED^2: Interpretability", "IA-RED^3: Interpretability"),
    ("GPT-4 Technical Report", "GPT-4o Technical Report"),
    ("Attention Is All You Need", "Attention Is Not All You Need"),
    ("naïve Bayes", "naive Bayes"),
])
def test_different_titles_differ(a, b):
    assert title_key(a) != title_key(b)


def test_punctuation_only_title_keys_as_itself():
    assert title_key("?!") == "?!"
    assert title_key("...") != title_key("?!")


def test_sample_titles_with_distinct_keys_are_almost_all_distinct():
    entries = _sample_entries()
    keys = {title_key(e.title) for e in entries}
    titles = {e.title for e in entries}
    # Only the IA-RED^2 / IA-RED$^2$ pair collapses among the distinct sample titles.
    assert len(titles) - len(keys) == 1


def test_fingerprint_ignores_case_and_whitespace():
    base = abstract_fingerprint("We propose a new model. It works well.")
    assert abstract_fingerprint("we PROPOSE a new model. it works well.") == base
    assert abstract_fingerprint("  We propose\na   new\tmodel.  It works well.\n") == base
    assert len(base) == 32 and int(base, 16) >= 0


@pytest.mark.parametrize("other", [
    "We propose a new model. It works badly.",
    "We propose a model. It works well.",
    "We propose a new model. It works well. Code is available.",
    "We propose anew model. It works well.",
])
def test_fingerprint_sees_words(other):
    assert abstract_fingerprint(other) != abstract_fingerprint("We propose a new model. It works well.")


def test_sample_abstracts_fingerprints():
    entries = _sample_entries()
    by_fp: dict[str, set[str]] = {}
    for e in entries:
        by_fp.setdefault(abstract_fingerprint(e.abstract), set()).add(e.abstract)
    # A fingerprint never stands for two different abstracts (they differ by more than case/space).
    assert all(len(v) == 1 for v in by_fp.values())
    ia_red = {abstract_fingerprint(e.abstract) for e in entries if e.title.startswith("IA-RED")}
    assert len(ia_red) == 1


@given(st.text(max_size=200))
@settings(max_examples=150, deadline=None)
def test_title_key_is_stable(title):
    key = title_key(title)
    assert title_key(key) == key or not key.strip()  # a key keys as itself
    assert "  " not in key.strip()


_ascii_title = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=80)


@given(_ascii_title)
@settings(max_examples=150, deadline=None)
def test_title_key_ascii_case_and_punctuation(title):
    assert title_key(title.upper()) == title_key(title.lower())
    if any(c.isalnum() for c in title):  # punctuation-only titles key as themselves
        assert title_key("\t" + title.replace(" ", " - ") + " ?") == title_key(title)


@given(_ascii_title)
@settings(max_examples=150, deadline=None)
def test_title_key_same_for_ascii_and_non_ascii_titles(title):
    """An ASCII title keys as it would with a non-ASCII word after it, minus that word."""
    key = title_key(title)
    if not any(c.isalnum() for c in title):
        return  # punctuation-only titles key as themselves
    assert title_key(title + " \u00fcber") == key + " \u00fcber"


@given(st.text(max_size=300))
@settings(max_examples=150, deadline=None)
def test_fingerprint_equals_that_of_the_collapsed_text(abstract):
    assert abstract_fingerprint(abstract) == abstract_fingerprint(" ".join(abstract.split()))
    assert abstract_fingerprint(abstract) == abstract_fingerprint(" ".join(abstract.casefold().split()))


@given(st.lists(st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.,", min_size=1,
                        max_size=8), min_size=1, max_size=20),
       st.lists(st.sampled_from([" ", "  ", "\t", "\n", "\r\n", "\u00a0"]), min_size=20, max_size=20))
@settings(max_examples=150, deadline=None)
def test_fingerprint_whitespace_and_case_property(words, spaces):
    plain = " ".join(words)
    messy = "".join(w.swapcase() + s for w, s in zip(words, spaces, strict=False))
    assert abstract_fingerprint(messy) == abstract_fingerprint(plain)
