"""Services: the use cases the command line, the bot and the web pages call.

The one rule: **a service owns its transaction.** A public service function takes the ``Store``
and opens ``with store.transaction() as tx`` (or ``store.reading()`` when it only reads), does
its work through the repositories of ``tx`` and the pure functions of ``digestbot.core``, and
returns values the caller can use after the transaction has closed. A helper meant to run inside
another service's transaction takes that ``Transaction`` instead (its name ends in ``_in`` where
a public twin exists). Entry points never open transactions, and no service writes SQL: that is
the store's (ARCHITECTURE.md).
"""
