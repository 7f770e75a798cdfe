"""The Matches repository: matches stored per query (match_queries, query_matches) and the matches view.

Matches are stored once per distinct query text (``query_matches``), not once per subscriber:
a popular query is shared by many subscriptions, and the writes were most of an ingest's
matching time. Each subscription's own matches are the ``matches`` view (migration 0008): its
query's matches of the papers first seen since its ``match_since``, outside its pauses.

Matches come in as JSON documents ``{query text: [paper ids]}``: one statement stores the
matches of many queries, the rows made by the database (json_each) rather than one by one by
the driver; and the database works on one document without holding the GIL while Python
makes the next one.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from itertools import islice

from sqlalchemy import text

from digestbot.store.repository import Repository

QUERIES_PER_DOCUMENT = 2_000  # queries per statement

_INSERT_STATEMENTS = {
    "sqlite": (
        "INSERT OR IGNORE INTO match_queries (query) SELECT key FROM json_each(:matches)",
        "INSERT OR IGNORE INTO query_matches (query_id, paper_id) SELECT q.id, p.value "
        "FROM json_each(:matches) AS d JOIN match_queries AS q ON q.query = d.key JOIN json_each(d.value) AS p",
    ),
    "postgresql": (
        "INSERT INTO match_queries (query) SELECT key FROM json_each(CAST(:matches AS JSON)) ON CONFLICT DO NOTHING",
        "INSERT INTO query_matches (query_id, paper_id) SELECT q.id, CAST(p.value AS INTEGER) "
        "FROM json_each(CAST(:matches AS JSON)) AS d JOIN match_queries AS q ON q.query = d.key, "
        "json_array_elements_text(d.value) AS p ON CONFLICT DO NOTHING",
    ),
}


class Matches(Repository):
    """SQL for matches stored per query (match_queries, query_matches) and the matches view."""

    def store(self, matches: Iterable[tuple[str, list[int]]]) -> int:
        """Store (query text, paper ids) matches, ignoring pairs already stored; returns how many were given."""
        documents = ((json.dumps(dict(chunk)), sum(len(ids) for _, ids in chunk))
                     for chunk in _chunks(((query, ids) for query, ids in matches if ids), QUERIES_PER_DOCUMENT))
        return self.store_documents(documents)

    def store_documents(self, documents: Iterable[tuple[str, int]]) -> int:
        """Store (JSON object ``{query text: [paper ids]}``, pairs in it) documents, ignoring pairs already
        stored; returns the sum of the pairs.

        Documents are written by a background thread, one at a time, while ``documents`` makes the
        next (the session is not used meanwhile): on two cores, storing costs little more than matching.
        """
        connection = self.session.connection()
        statements = [text(sql) for sql in _INSERT_STATEMENTS[self.dialect]]

        def write(document: str) -> None:
            for statement in statements:
                connection.execute(statement, {"matches": document})

        given = 0
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="digestbot-store") as writer:
            writing = None
            for document, pairs in documents:
                given += pairs
                if writing is not None:
                    writing.result()  # one statement at a time on the connection; raises what it raised
                writing = writer.submit(write, document)
            if writing is not None:
                writing.result()
        return given


def _chunks(items: Iterable, size: int) -> Iterator[list]:
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk
