"""What services/subscriptions.py and services/search.py take today, given a Transaction.

Their functions take a Session until the subscriptions and papers parts of issue 11 make them
take a Store or a Transaction; the services that compose them inside their own transaction
pass ``legacy_session(tx)``. At the merge, with the subscriptions helper's API (branch a-subs):

- notices.sign_up: ``subscriptions.subscribe(legacy_session(tx), …)`` → ``subscriptions.subscribe_in(tx, …)``
- notices.send_manage_link: ``subscriptions.recipient_subscriptions(legacy_session(tx), id)`` →
  ``tx.subscriptions.of_recipient(id)``
- feedback.apply_sendgrid_events: ``unsubscribe_recipient(legacy_session(tx), …)`` → ``unsubscribe_recipient_in(tx, …)``
- selfservice: ``named_subscriptions`` / ``recipient_subscriptions`` → ``tx.subscriptions.of_recipient(id, ids)``;
  ``change`` → a-subs' ``set_paused`` / ``confirm`` / ``delete`` / ``edit`` (or their ``_owned(tx, …)`` and the
  same steps); ``unsubscribe_owned`` / ``confirm`` → theirs; the Slack command → ``subscribe_in``,
  ``list_subscriptions_in``, ``unsubscribe_in``; ``preview`` → whatever ``RecentPapers.search`` takes then.
- ``tx.outbox.recipient*`` (named as a-subs' ``Subscriptions`` methods) → ``tx.subscriptions.recipient*``.

Then delete this module.
"""

from __future__ import annotations

from digestbot.store import Transaction


def legacy_session(tx: Transaction):
    return tx.session
