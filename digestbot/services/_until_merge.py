"""What services/subscriptions.py and services/search.py take today, given a Transaction.

Their functions take a Session until the subscriptions and papers parts of issue 11 make them
take a Transaction; the services that compose them inside their own transaction pass
``legacy_session(tx)``. At the merge: call them with ``tx`` (or whatever they take then) and
delete this module.
"""

from __future__ import annotations

from digestbot.store import Transaction


def legacy_session(tx: Transaction):
    return tx.session
