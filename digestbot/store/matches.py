"""The Matches repository: matches stored per query (match_queries, query_matches) and the matches view."""

from __future__ import annotations

from digestbot.store.repository import Repository


class Matches(Repository):
    """SQL for matches stored per query (match_queries, query_matches) and the matches view."""
