"""Relevance (issue 13): features, similar, recommend and votes, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import numpy as np
import pytest
from sqlalchemy import func, select

from conftest import one_line_error
from digestbot.core import relevance as rel
from digestbot.core.schedule import parse_schedule
from digestbot.errors import UsageError
from digestbot.services import relevance, votes
from digestbot.services.ingest import ingest_paths
from digestbot.services.subscriptions import subscribe
from digestbot.store import Paper, PaperSighting
from digestbot.store.models import ReaderModel, RelevanceFeatures, RelevanceVocabulary

NOW = datetime(2026, 12, 1, 8, tzinfo=UTC)

TOPICS = {
    "diffusion": ["denoising diffusion image generation", "score based diffusion sampler for image synthesis",
                  "latent diffusion models generate images from text", "faster diffusion sampling of images"],
    "speech": ["speech recognition with acoustic models", "text to speech synthesis of voices",
               "robust speech recognition in noisy audio", "speaker voice conversion for speech"],
    "robots": ["robot manipulation from demonstrations", "robotic grasping policy learned in simulation",
               "legged robot locomotion control", "robot arm manipulation with language instructions"],
}


def add_papers(store, papers: list[tuple[str, str]], now: datetime = NOW) -> list[int]:
    """Papers written as ingest writes them (the repository's own insert)."""
    ids = []
    with store.transaction() as tx:
        for title, abstract in papers:
            row = Paper(title=title, title_key=title.casefold(), abstract=abstract, abstract_fp=str(hash(abstract))[:32],
                        first_seen=now)
            tx.session.add(row)
            tx.session.flush()
            tx.session.add(PaperSighting(paper_id=row.id, last_seen=now))
            ids.append(row.id)
    return ids


def topical_papers() -> list[tuple[str, str]]:
    papers = []
    for topic, lines in TOPICS.items():
        for n, line in enumerate(lines):
            papers.append((f"{topic} paper {n}", f"We study {line}. Our method improves {line} a lot."))
    return papers


# ---- the pure part ----

def test_terms_share_the_query_languages_word_identity() -> None:
    assert "transformer" in rel.terms("Transformers")
    assert "autoregressive" in rel.terms("auto-regressive models") and "autoregressive" in rel.terms("autoregressive")
    assert "diffusion model" in rel.terms("Diffusion Models")
    assert "the" not in rel.terms("the model") and "model" in rel.terms("the model")
    assert "of model" not in " ".join(rel.terms("sets of models"))  # no pair across a stop word


def test_vocabulary_and_rows_survive_bytes() -> None:
    texts = [rel.paper_text(t, a) for t, a in topical_papers()]
    vocabulary = rel.Vocabulary.fit(texts)
    again = rel.Vocabulary.loads(vocabulary.dumps())
    assert again.terms == vocabulary.terms and np.array_equal(again.idf, vocabulary.idf)
    rows = vocabulary.transform(texts)
    ids, loaded = rel.load_rows(rel.dump_rows(list(range(5, 5 + len(texts))), rows))
    assert ids.tolist() == list(range(5, 5 + len(texts))) and (loaded != rows).nnz == 0
    assert np.allclose(np.asarray(rows.multiply(rows).sum(axis=1)).ravel(), 1.0, atol=1e-5)  # unit rows


def test_top_is_best_first_and_leaves_out_the_excluded() -> None:
    scores = np.asarray([0.1, 0.9, 0.5, 0.9, -1.0])
    assert rel.top(scores, 3) == [(1, 0.9), (3, 0.9), (2, 0.5)]
    assert [r for r, _ in rel.top(scores, 10, exclude=np.asarray([1, 3]))] == [2, 0, 4]


def test_a_reader_model_ranks_its_topic_first() -> None:
    papers = topical_papers()
    vocabulary = rel.Vocabulary.fit([rel.paper_text(t, a) for t, a in papers])
    matrix = rel.FeatureMatrix(np.arange(100, 100 + len(papers)), vocabulary.transform(
        [rel.paper_text(t, a) for t, a in papers]))
    model = rel.ReaderModel.train(matrix, [104, 105], [100])  # speech up, a diffusion paper down
    best = [int(matrix.ids[r]) for r, _ in rel.top(model.scores(matrix.rows), 2, matrix.positions([104, 105]))]
    assert set(best) == {106, 107}
    assert rel.ReaderModel.loads(model.dumps()).weights.tolist() == model.weights.tolist()


# ---- stored features ----

def test_features_are_stored_once_and_extended_as_papers_arrive(store) -> None:
    add_papers(store, topical_papers())
    index = relevance.RelevanceIndex()
    generation, _vocabulary, matrix = index.current(store, NOW)
    assert len(matrix) == 12
    with store.reading() as tx:
        assert tx.session.scalar(select(func.count()).select_from(RelevanceFeatures)) == 1
    assert relevance.update_features(store, NOW) == 0  # nothing new: nothing recomputed
    # A small store is refitted as it grows; a large one gets chunks in the same vocabulary.
    add_papers(store, [("robot paper 9", "robot grasping of objects")])
    generation2, _v, matrix = index.current(store, NOW)
    assert len(matrix) == 13 and generation2 == generation + 1
    with store.reading() as tx:
        assert tx.session.scalar(select(func.count()).select_from(RelevanceVocabulary)) == 1


def test_a_large_store_grows_by_chunks_without_a_refit(store, monkeypatch) -> None:
    monkeypatch.setattr(relevance, "SMALL_STORE", 5)
    add_papers(store, topical_papers())
    index = relevance.RelevanceIndex()
    generation, _v, _m = index.current(store, NOW)
    add_papers(store, [("robot paper 9", "robot grasping of objects")])
    generation2, _v, matrix = index.current(store, NOW)
    assert generation2 == generation and len(matrix) == 13
    with store.reading() as tx:
        assert tx.session.scalar(select(func.count()).select_from(RelevanceFeatures)) == 2


def test_similar_finds_the_examples_topic_and_leaves_them_out(store) -> None:
    add_papers(store, topical_papers())
    found = relevance.similar(store, relevance.RelevanceIndex(), ["speech paper 0", "Speech Paper 1"], 2, NOW)
    assert {p["title"] for p in found} == {"speech paper 2", "speech paper 3"}
    assert found[0]["score"] >= found[1]["score"] and {"id", "abstract", "first_seen", "score"} <= set(found[0])


@pytest.mark.parametrize("examples", [[], ["no such paper"], ["   "]])
def test_similar_refuses_unknown_or_missing_examples(store, examples) -> None:
    add_papers(store, topical_papers())
    with pytest.raises(UsageError) as caught:
        relevance.similar(store, relevance.RelevanceIndex(), examples, 5, NOW)
    assert caught.value.exit_code == 2


def test_recommend_learns_from_votes_and_never_returns_a_down_vote(store) -> None:
    add_papers(store, topical_papers())
    subscribe(store, "ada@example.org", "anything", schedule=parse_schedule("daily", "08:00", "mon", "UTC"), now=NOW)
    index = relevance.RelevanceIndex()
    assert relevance.recommend(store, index, "ada@example.org", 5, NOW) == []
    votes.vote(store, "ada@example.org", "robots paper 0", "up", NOW)
    votes.vote(store, "ada@example.org", "robots paper 1", "up", NOW)
    votes.vote(store, "ada@example.org", "robots paper 2", "down", NOW)
    found = relevance.recommend(store, index, "ada@example.org", 3, NOW)
    assert found[0]["title"] == "robots paper 3"
    titles = [p["title"] for p in relevance.recommend(store, index, "ada@example.org", 20, NOW)]
    assert "robots paper 2" not in titles and "robots paper 0" not in titles
    with store.reading() as tx:  # trained once, kept
        assert tx.session.scalar(select(func.count()).select_from(ReaderModel)) == 1
        trained_at = tx.session.scalar(select(ReaderModel.trained_at))
    relevance.recommend(store, index, "ada@example.org", 3, datetime(2026, 12, 2, tzinfo=UTC))
    with store.reading() as tx:
        assert tx.session.scalar(select(ReaderModel.trained_at)) == trained_at  # not retrained per request
    votes.vote(store, "ada@example.org", "robots paper 2", "clear", NOW)
    titles = [p["title"] for p in relevance.recommend(store, index, "ada@example.org", 20, NOW)]
    assert "robots paper 2" in titles
    assert [v["vote"] for v in votes.list_votes(store, "ada@example.org")] == ["up", "up"]


def test_a_vote_for_a_paper_never_received_is_allowed_and_bad_input_changes_nothing(store) -> None:
    add_papers(store, topical_papers())
    subscribe(store, "ada@example.org", "anything", schedule=parse_schedule("daily", "08:00", "mon", "UTC"), now=NOW)
    assert votes.vote(store, "ada@example.org", "speech paper 0", "down", NOW)["changed"] is True
    assert votes.vote(store, "ada@example.org", "speech paper 0", "down", NOW)["changed"] is False
    for recipient, paper, action in [("ada@example.org", "nope", "up"), ("bob@example.org", "speech paper 1", "up"),
                                     ("ada@example.org", "speech paper 1", "sideways")]:
        with pytest.raises(UsageError):
            votes.vote(store, recipient, paper, action, NOW)
    assert len(votes.list_votes(store, "ada@example.org")) == 1


# ---- the command line ----

def test_similar_recommend_and_feedback_on_the_command_line(run, dumps) -> None:
    assert run("init").returncode == 0
    assert run("ingest", str(dumps)).returncode == 0
    title = json.loads(run("papers", "--limit", "1", "--json").stdout)[0]["title"]
    proc = run("similar", title, "--limit", "3", "--json")
    found = json.loads(proc.stdout)
    assert proc.returncode == 0 and len(found) == 3 and title not in [p["title"] for p in found]
    assert {"id", "title", "abstract", "upvotes", "first_seen", "last_seen", "score"} <= set(found[0])
    proc = run("similar", "A title nobody wrote")
    assert proc.returncode == 2 and "no stored paper titled" in one_line_error(proc)
    assert run("subscribe", "ada@example.org", "transformer").returncode == 0
    proc = run("recommend", "ada@example.org", "--json")
    assert proc.returncode == 0 and json.loads(proc.stdout) == []
    assert "no likes or votes" in run("recommend", "ada@example.org").stdout
    proc = run("feedback", "ada@example.org", title, "up", "--json")
    assert proc.returncode == 0 and json.loads(proc.stdout)["vote"] == "up"
    listed = json.loads(run("feedback", "ada@example.org", "--json").stdout)
    assert [(v["paper"]["title"], v["vote"]) for v in listed] == [(title, "up")]
    found = json.loads(run("recommend", "ada@example.org", "--limit", "2", "--json").stdout)
    assert len(found) == 2 and title not in [p["title"] for p in found]
    proc = run("feedback", "ada@example.org", "A title nobody wrote", "down")
    assert proc.returncode == 2 and one_line_error(proc)


def test_a_paper_revised_by_a_later_dump_is_vectorised_again(store) -> None:
    from sqlalchemy import update

    [first, *_] = add_papers(store, topical_papers())
    index = relevance.RelevanceIndex()
    index.current(store, NOW)
    assert relevance.update_changed(store) == 0
    with store.transaction() as tx:  # as ingest's update writes a revised abstract
        tx.session.execute(update(Paper).where(Paper.id == first).values(
            abstract="We study legged robot locomotion control.", updated_at=NOW))
    assert relevance.update_changed(store) == 1
    assert relevance.update_changed(store) == 0  # done once
    found = relevance.similar(store, index, ["robots paper 2"], 4, NOW)
    assert "diffusion paper 0" in [p["title"] for p in found]  # it is about robots now


def test_subscribe_like_on_the_command_line(run, dumps) -> None:
    assert run("init").returncode == 0 and run("ingest", str(dumps)).returncode == 0
    title = json.loads(run("papers", "--limit", "1", "--json").stdout)[0]["title"]
    made = json.loads(run("subscribe", "bob@example.org", "--like", title, "--cadence", "weekly", "--json").stdout)
    assert (made["query"], made["likes"], made["like_top"], made["like_threshold"], made["top"]) == ("", [title], 10, 0.2, None)
    assert made["name"].startswith("papers like \u201c")
    made = json.loads(run("subscribe", "eve@example.org", "diffusion", "--like", title, "--cadence", "daily",
                          "--like-threshold", "0.5", "--json", DIGESTBOT_LIKE_TOP_PER_WEEK="14").stdout)
    assert (made["query"], made["like_top"], made["like_threshold"], made["name"]) == ("diffusion", 2, 0.5, None)
    listed = json.loads(run("subscriptions", "--json").stdout)
    assert [s["likes"] for s in listed] == [[title], [title]]
    for args in (["subscribe", "eve@example.org"], ["subscribe", "eve@example.org", "x", "--like-top", "3"],
                 ["subscribe", "eve@example.org", "--like", "No such title"],
                 ["subscribe", "eve@example.org", "--like", title, "--like-threshold", "2"]):
        proc = run(*args)
        assert proc.returncode == 2 and one_line_error(proc), args
    assert len(json.loads(run("subscriptions", "--json").stdout)) == 2  # nothing else was made
