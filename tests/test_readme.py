"""Every example in README.md's "The query language" section is a test.

The table's queries must each have a fitting and a non-fitting paper in EXAMPLES below, so the
README cannot grow an untested example; the bullet list's claims ("`x` finds *y*") are read from
the text and checked as written.
"""

from __future__ import annotations

import re
from collections import defaultdict

import pytest

from conftest import ROOT
from digestbot.core.batch import Batch
from digestbot.core.matcher import QueryIndex
from digestbot.core.query import QueryError, parse_query
from digestbot.core.reference import Document, evaluate

README = (ROOT / "README.md").read_text(encoding="utf-8")


def _section(title: str) -> str:
    start = README.index(f"\n## {title}\n")
    end = README.find("\n## ", start + 1)
    return README[start : end if end >= 0 else len(README)]


SECTION = _section("The query language")


def _table_queries() -> list[str]:
    rows = [line for line in SECTION.splitlines() if line.startswith("|")]
    queries = []
    for row in rows:
        first = row.split(" | ")[0].removeprefix("|").strip()
        if first.startswith("`") and first.endswith("`"):
            queries.append(first[1:-1])
    return queries


def _bullets() -> list[str]:
    bullets: list[str] = []
    current: list[str] | None = None
    for line in SECTION.splitlines():
        if line.startswith("- "):
            current = [line[2:]]
            bullets.append("")
        elif current is not None and line.startswith("  ") and line.strip():
            current.append(line.strip())
        else:
            current = None
            continue
        bullets[-1] = " ".join(current)
    return bullets


TABLE = _table_queries()
BULLETS = _bullets()
BULLET_QUERIES = [q for bullet in BULLETS for q in re.findall(r"`([^`]+)`", bullet)]
CLAIMS = [
    (query, verb == "finds", text)
    for bullet in BULLETS
    for query, verb, text in re.findall(r"`([^`]+)` (finds|does not find) \*([^*]+)\*", bullet)
]
REFUSALS_PARAGRAPH = next(p for p in SECTION.split("\n\n") if p.startswith("A query is refused"))
REFUSED = re.findall(r"`([^`]+)`", REFUSALS_PARAGRAPH)
CONSOLE = re.findall(r"^\$ digestbot search '(.*)'\nerror: (.*)$", SECTION, re.MULTILINE)

# query -> (a fitting paper, a paper that does not fit), each (title, abstract).
# The non-fitting paper is a near miss wherever one exists.
EXAMPLES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "diffusion transformer": (
        ("Scalable Diffusion Models with Transformers", "We replace the U-Net backbone."),
        ("Diffusion Models Beat GANs on Image Synthesis", "We improve the U-Net backbone."),
    ),
    "diffusion AND transformer": (
        ("Diffusion policies for robots", "The denoiser is a transformer."),
        ("Vision Transformers need registers", "Artifacts in attention maps."),
    ),
    '"diffusion transformer"': (
        ("DiT: the Diffusion Transformer", "A latent diffusion model."),
        ("Transformer-based diffusion models", "A transformer for latent diffusion."),
    ),
    "diffusion OR flow": (
        ("Flow Matching for Generative Modeling", "Continuous normalizing flows."),
        ("Consistency Models", "One-step generation."),
    ),
    "diffusion -survey": (
        ("Diffusion Models Beat GANs", "Better sample quality."),
        ("Diffusion Models: A Comprehensive Survey", "We review methods."),
    ),
    "diffusion NOT survey": (
        ("Diffusion Models Beat GANs", "Better sample quality."),
        ("Diffusion models in vision", "We survey the field."),
    ),
    "quantiz*": (
        ("GPTQ: Accurate Post-Training Quantization", "Weights are quantized to 4 bits."),
        ("Quantum-inspired transformers", "Quantum circuits as attention."),
    ),
    "title:diffusion": (
        ("Latent Diffusion Models", "High-resolution image synthesis."),
        ("High-resolution image synthesis", "With latent diffusion models."),
    ),
    'abstract:"time series"': (
        ("Informer", "Long sequence time-series forecasting."),
        ("Time series forecasting with transformers", "Long sequences, time and again."),
    ),
    "title:(video OR audio) generation": (
        ("AudioLM: a language modeling approach to audio", "Conditional generation of speech."),
        ("Image synthesis with transformers", "Video generation is future work."),
    ),
    # (title, abstract, author names): author: looks at the names only.
    "author:hinton": (
        ("Deep nets", "We train them.", "Geoffrey Hinton ; Yann LeCun"),
        ("Hinton's distillation, revisited", "Following Hinton.", "Ann Lee"),
    ),
    'author:"zoe angstrom"': (
        ("A title", "An abstract.", "Zoë Ångström ; Ravi Patel"),
        ("Zoe and the angstrom", "Zoe measures an angstrom.", "Zoe Smith ; Lars Angstrom"),
    ),
    "diffusion -author:hinton": (
        ("Diffusion models", "Hinton's idea, revisited.", "Ann Lee"),
        ("Diffusion models", "Denoising.", "Geoffrey Hinton"),
    ),
    '(llm OR "language model") (pruning OR quantiz*) -survey': (
        ("A simple and effective pruning approach for large language models", "Wanda."),
        ("Quantization of LLMs: a survey", "We compare quantized models."),
    ),
}


# ---- the README is read correctly ----------------------------------------------------------------

def test_the_section_is_found_and_read() -> None:
    assert len(TABLE) >= 10
    assert "diffusion transformer" in TABLE and "quantiz*" in TABLE
    assert len(BULLETS) >= 5
    assert len(BULLET_QUERIES) >= 10
    assert len(CLAIMS) >= 8
    assert ("generative", False, "generation") in CLAIMS
    assert REFUSED and CONSOLE


# ---- the table -------------------------------------------------------------------------------------

@pytest.mark.parametrize("query", TABLE)
def test_table_example_parses(query: str) -> None:
    parse_query(query)


@pytest.mark.parametrize("query", TABLE)
def test_table_example_finds_a_fitting_paper_and_not_a_near_miss(query: str) -> None:
    assert query in EXAMPLES, f"README example {query!r} has no papers in EXAMPLES: add a fitting and a non-fitting one"
    node = parse_query(query)
    fitting, near_miss = EXAMPLES[query]
    assert evaluate(node, Document.of(*fitting)), fitting
    assert not evaluate(node, Document.of(*near_miss)), near_miss


def test_examples_have_no_entry_the_readme_dropped() -> None:
    assert set(EXAMPLES) <= set(TABLE)


def test_the_engine_finds_the_table_examples_like_the_reference() -> None:
    papers = [paper for query in TABLE for paper in EXAMPLES.get(query, ())]
    index = QueryIndex()
    for query in TABLE:
        index.add(query, parse_query(query))
    found = set(index.match(Batch(papers, index.vocabulary)))
    docs = [Document.of(*paper) for paper in papers]
    expected = {(q, p) for q in TABLE for p, doc in enumerate(docs) if evaluate(parse_query(q), doc)}
    assert found == expected
    for query in EXAMPLES:
        fitting, near_miss = EXAMPLES[query]
        assert (query, papers.index(fitting)) in found
        assert (query, papers.index(near_miss)) not in found


def test_and_may_be_written() -> None:
    """The table says `diffusion AND transformer` finds "the same" as `diffusion transformer`."""
    for paper in [p for pair in EXAMPLES.values() for p in pair]:
        doc = Document.of(*paper)
        assert evaluate(parse_query("diffusion AND transformer"), doc) == evaluate(
            parse_query("diffusion transformer"), doc
        ), paper


def test_prefix_row_finds_the_words_it_lists() -> None:
    row = next(line for line in SECTION.splitlines() if line.startswith("| `quantiz*`"))
    listed = row.split(":")[-1].strip(" |").split(", ")
    assert listed == ["quantization", "quantized", "quantizing"]
    for word in listed:
        assert evaluate(parse_query("quantiz*"), Document.of(f"Post-training {word} of LLMs", ""))


def test_not_is_the_same_as_minus() -> None:
    assert parse_query("diffusion NOT survey") == parse_query("diffusion -survey")


# ---- the bullet list ---------------------------------------------------------------------------------

@pytest.mark.parametrize("query", sorted(set(BULLET_QUERIES)))
def test_bullet_example_parses(query: str) -> None:
    parse_query(query)


@pytest.mark.parametrize("query, finds, text", CLAIMS, ids=[f"{q} {'finds' if f else 'not'} {t}" for q, f, t in CLAIMS])
def test_bullet_claim(query: str, finds: bool, text: str) -> None:
    node = parse_query(query)
    assert evaluate(node, Document.of(f"On {text} in practice", "")) is finds
    assert evaluate(node, Document.of("A paper", f"We study {text}.")) is finds


def _spelling_groups() -> list[list[str]]:
    bullet = next(b for b in BULLETS if "joined spellings" in b)
    groups: dict[str, list[str]] = defaultdict(list)
    for query in re.findall(r"`([^`]+)`", bullet):
        groups[re.sub(r"[^a-z]", "", query.lower())].append(query)
    return list(groups.values())


SPELLINGS = _spelling_groups()


def test_spelling_groups_are_read() -> None:
    assert sorted(map(sorted, SPELLINGS)) == [
        ["auto regressive", "auto-regressive", "autoregressive"],
        ["pre-trained", "pretrained"],
        ["time series", "time-series", "timeseries"],
    ]


@pytest.mark.parametrize(
    "query, written",
    [(q, w) for group in SPELLINGS for q in group for w in group],
)
def test_spellings_find_each_other_in_every_direction(query: str, written: str) -> None:
    assert evaluate(parse_query(query), Document.of(f"Efficient {written} models", ""))
    assert evaluate(parse_query(f'"{query} models"'), Document.of(f"Efficient {written} models", ""))


# ---- refusals --------------------------------------------------------------------------------------

@pytest.mark.parametrize("query", REFUSED)
def test_refusal_example_is_refused(query: str) -> None:
    with pytest.raises(QueryError) as caught:
        parse_query(query)
    assert caught.value.column is not None


@pytest.mark.parametrize("query, shown", CONSOLE)
def test_console_example_shows_the_message(query: str, shown: str) -> None:
    assert query == '"diffusion transformer'
    with pytest.raises(QueryError) as caught:
        parse_query(query)
    assert str(caught.value) == shown == 'bad query: unclosed quote " at column 1'
