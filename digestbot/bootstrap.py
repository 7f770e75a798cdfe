"""Settings → the parts every entry point works with: the store, the channels, the renderer, the
link signer, the matcher and the clock. The command line, `digestbot run`, `worker` and `serve`
each call ``bootstrap`` and differ only in what they do with the parts; tests call it with fakes.

Parts are made on first use (the delivery SDKs load only when something is sent, the signing
key is read only when a link is signed), and one of each is shared: one matcher per process
keeps its compiled index between ingests.
"""

from __future__ import annotations

import gc
from dataclasses import dataclass, field
from functools import cached_property

from digestbot.channels import Channel, channels_for
from digestbot.clock import Clock, utcnow
from digestbot.core.tokens import LinkSigner
from digestbot.errors import ConfigError
from digestbot.render import Renderer, Sender
from digestbot.services.delivery import OutboxSender
from digestbot.services.digests import DigestBuilder, signing_key
from digestbot.services.matching import SubscriptionMatcher
from digestbot.services.notices import Notices
from digestbot.services.relevance import RelevanceIndex
from digestbot.settings import Settings
from digestbot.store import Engine, Store, connect, ensure_current


@dataclass
class Parts:
    """What the entry points are built from; ``close`` releases what was opened."""

    settings: Settings
    store: Store
    clock: Clock = utcnow
    given_channels: dict[str, Channel] | None = field(default=None, repr=False)

    @cached_property
    def channels(self) -> dict[str, Channel]:
        """The channel of each message kind: the given fakes, or those the settings choose."""
        return self.given_channels if self.given_channels is not None else channels_for(self.settings)

    @cached_property
    def renderer(self) -> Renderer:
        return Renderer()

    @cached_property
    def signer(self) -> LinkSigner:
        return LinkSigner(signing_key(self.store, self.settings), self.settings.base_url)

    @cached_property
    def sender(self) -> Sender:
        return Sender(self.settings.from_email, self.settings.from_name, self.settings.postal_address)

    @cached_property
    def matcher(self) -> SubscriptionMatcher:
        """The process's matcher, kept between ingests: each syncs only what changed."""
        return SubscriptionMatcher()

    @cached_property
    def relevance(self) -> RelevanceIndex:
        """The process's copy of the stored relevance features, kept between requests."""
        return RelevanceIndex()

    @cached_property
    def digests(self) -> DigestBuilder:
        return DigestBuilder(self.store, self.settings, self.renderer, self.signer, self.sender, self.clock,
                             relevance=self.relevance)

    @cached_property
    def notices(self) -> Notices:
        return Notices(self.renderer, self.signer, self.sender)

    def outbox_sender(self, kinds: tuple[str, ...] | None = None) -> OutboxSender:
        """A sender of the outbox (of these message kinds only, if given), through the shared channels."""
        return OutboxSender(self.store, self.channels, self.settings, clock=self.clock, kinds=kinds)

    def refuse_file_backends(self, *, slack: bool = True) -> None:
        """For a process that runs unattended: its messages must not silently go to files.

        :raises ConfigError: a file backend was not asked for by name (see Settings.unattended_problem)
        """
        if self.given_channels is None and (problem := self.settings.unattended_problem(slack=slack)):
            raise ConfigError(problem)

    def close(self) -> None:
        for channel in self.__dict__.get("channels", {}).values():
            channel.close()
        self.store.dispose()


def bootstrap(settings: Settings | None = None, *, engine: Engine | None = None, clock: Clock = utcnow,
              channels: dict[str, Channel] | None = None, check_schema: bool = True) -> Parts:
    """The parts, from ``settings`` (default: the environment and .env).

    ``engine``: an engine made already (tests); ``channels``: fakes to send through;
    ``check_schema``: refuse a database `digestbot init` has not brought up to date.

    :raises ConfigError: a setting is wrong
    :raises SchemaOutOfDate: the schema is missing or old (with ``check_schema``)
    """
    settings = settings if settings is not None else Settings.load()
    engine = engine if engine is not None else connect(settings.database_url)
    if check_schema:
        ensure_current(engine)
    return Parts(settings=settings, store=Store(engine), clock=clock, given_channels=channels)


def settle_the_collector() -> None:
    """The process's garbage-collection policy, set by the entry points once they have started.

    Ingest and matching build large, acyclic structures (a chunk's entries, the stored papers
    read for its diff, a batch's postings and bitsets) that live until their chunk or batch is
    done; reference counting frees them. With the default thresholds the collector runs every
    700 allocations and, as such a structure grows, walks it again and again. So the objects
    made while starting (modules, settings, templates) are frozen out of every later
    collection, and the youngest generation is collected once 200,000 more container objects
    are alive than after the last collection, instead of 700: an ingest's chunk stays below
    that, and a matching batch is walked about once, not again and again. The policy is the
    same in every thread: no code turns the collector off around its own work (with two
    threads, the first to finish would turn it back on under the other). See BENCHMARKS.md,
    "Garbage collection".
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(200_000, 20, 20)
