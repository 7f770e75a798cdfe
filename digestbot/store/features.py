"""The Features repository (issue 13): the stored relevance vocabulary, paper vectors and reader
models, as bytes made by ``digestbot.core.relevance`` (no pickle)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, func, select

from digestbot.store.models import Paper, ReaderModel, RelevanceFeatures, RelevanceVocabulary
from digestbot.store.repository import Repository


class Features(Repository):
    """SQL for relevance_vocabularies, relevance_features and reader_models."""

    def current(self) -> tuple[int, int, bytes] | None:
        """(generation, papers fitted on, vocabulary bytes) of the newest vocabulary."""
        row = self.session.execute(
            select(RelevanceVocabulary.generation, RelevanceVocabulary.papers, RelevanceVocabulary.data)
            .order_by(RelevanceVocabulary.generation.desc()).limit(1)).first()
        return tuple(row) if row else None

    def fitted(self) -> tuple[int, int] | None:
        """(generation, papers fitted on) of the newest vocabulary, without its bytes."""
        row = self.session.execute(select(RelevanceVocabulary.generation, RelevanceVocabulary.papers)
                                   .order_by(RelevanceVocabulary.generation.desc()).limit(1)).first()
        return tuple(row) if row else None

    def state(self) -> tuple[int, int]:
        """(newest generation, newest chunk id): what a loaded index compares itself with."""
        generation = self.session.scalar(select(func.max(RelevanceVocabulary.generation))) or 0
        chunk = self.session.scalar(select(func.max(RelevanceFeatures.id))
                                    .where(RelevanceFeatures.generation == generation)) or 0
        return generation, chunk

    def chunks(self, generation: int, after_id: int = 0) -> list[tuple[int, int, bytes]]:
        """(chunk id, last paper id, bytes) of this generation, after chunk ``after_id``, in order."""
        return [tuple(r) for r in self.session.execute(
            select(RelevanceFeatures.id, RelevanceFeatures.last_paper_id, RelevanceFeatures.data)
            .where(RelevanceFeatures.generation == generation, RelevanceFeatures.id > after_id)
            .order_by(RelevanceFeatures.id))]

    def last_paper_id(self, generation: int) -> int:
        return self.session.scalar(select(func.max(RelevanceFeatures.last_paper_id))
                                   .where(RelevanceFeatures.generation == generation)) or 0

    def new_generation(self, generation: int, papers: int, data: bytes, now: datetime) -> None:
        """A new vocabulary; older generations (and their chunks, by cascade) are removed."""
        self.session.execute(delete(RelevanceFeatures).where(RelevanceFeatures.generation < generation))
        self.session.execute(delete(RelevanceVocabulary).where(RelevanceVocabulary.generation < generation))
        self.session.add(RelevanceVocabulary(generation=generation, papers=papers, data=data, created_at=now))
        self.session.flush()

    def add_chunk(self, generation: int, last_paper_id: int, data: bytes, updated_until: datetime | None = None) -> None:
        self.session.add(RelevanceFeatures(generation=generation, last_paper_id=last_paper_id, data=data,
                                           updated_until=updated_until))
        self.session.flush()

    def updated_until(self, generation: int) -> datetime | None:
        return self.session.scalar(select(func.max(RelevanceFeatures.updated_until))
                                   .where(RelevanceFeatures.generation == generation))

    def newest_update(self) -> datetime | None:
        return self.session.scalar(select(func.max(Paper.updated_at)))

    def changed_papers(self, after: datetime | None, up_to_id: int) -> list[tuple[int, str, str]]:
        """(id, title, abstract) of papers changed after ``after`` (all changed ones if None), ids up to ``up_to_id``."""
        statement = select(Paper.id, Paper.title, Paper.abstract).where(Paper.updated_at.is_not(None),
                                                                      Paper.id <= up_to_id)
        if after is not None:
            statement = statement.where(Paper.updated_at > after)
        return [tuple(r) for r in self.session.execute(statement.order_by(Paper.id))]

    def papers_after(self, paper_id: int, limit: int) -> list[tuple[int, str, str]]:
        """(id, title, abstract) of papers with an id above ``paper_id``, by id."""
        return [tuple(r) for r in self.session.execute(
            select(Paper.id, Paper.title, Paper.abstract).where(Paper.id > paper_id).order_by(Paper.id).limit(limit))]

    def paper_count(self) -> int:
        return self.session.scalar(select(func.count()).select_from(Paper)) or 0

    # ---- reader models ----

    def model(self, recipient_id: int) -> tuple[str, bytes] | None:
        row = self.session.execute(select(ReaderModel.fingerprint, ReaderModel.data)
                                   .where(ReaderModel.recipient_id == recipient_id)).first()
        return tuple(row) if row else None

    def save_model(self, recipient_id: int, fingerprint: str, data: bytes, now: datetime) -> None:
        row = self.session.get(ReaderModel, recipient_id)
        if row is None:
            self.session.add(ReaderModel(recipient_id=recipient_id, fingerprint=fingerprint, data=data, trained_at=now))
        else:
            row.fingerprint, row.data, row.trained_at = fingerprint, data, now

    def papers(self, ids: list[int]) -> dict[int, Paper]:
        """The papers with these ids, by id."""
        found: dict[int, Paper] = {}
        for start in range(0, len(ids), 500):
            found.update((p.id, p) for p in self.session.scalars(select(Paper).where(Paper.id.in_(ids[start:start + 500]))))
        return found

    def max_paper_id(self) -> int:
        return self.session.scalar(select(func.max(Paper.id))) or 0
