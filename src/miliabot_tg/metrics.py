"""Prometheus metrics, on a registry each bot owns (tests build many bots in one process).

Counters move as things happen, through small hooks the engines are given (an update
processor that times updates, the dispatcher's `on_outcomes`, an httpx response hook for
Bot API errors). What lives in the database (dispatch lag, broadcast progress, processes
sharing the database) is read once per scrape, off the event loop, by `web.py`, and kept
in a `Snapshot` that the collector below turns into gauges.
"""

import logging
import math
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import Engine, Table, func, select
from telegram import Update

from miliabot_tg import repo
from miliabot_tg.broadcasts import BROADCASTS, DELIVERIES
from miliabot_tg.db import reading
from miliabot_tg.inbound import Inbound, LaneProcessor
from miliabot_tg.models import (
    BroadcastStatus,
    DeliveryStatus,
    Occurrence,
    OccurrenceStatus,
    Reminder,
)
from miliabot_tg.pacing import Pacer
from miliabot_tg.stats import bots_running

log = logging.getLogger(__name__)

OCCURRENCES: Table = Occurrence.__table__  # type: ignore[attr-defined]
REMINDERS: Table = Reminder.__table__  # type: ignore[attr-defined]

# Buckets for the time an update takes, from arrival to its replies answered by Telegram.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
UPDATE_KINDS = ("message", "command", "callback", "other")
REMINDER_OUTCOMES = ("sent", "late", "missed", "failed", "blocked")


def update_kind(update: object) -> str:
    """What a user did: a command, another message, a button press, or something else."""
    if not isinstance(update, Update):
        return "other"
    if update.callback_query is not None:
        return "callback"
    message = update.message or update.edited_message
    if message is None:
        return "other"
    entities = message.entities or ()
    if any(e.type == "bot_command" and e.offset == 0 for e in entities):
        return "command"
    return "message"


@dataclass
class Snapshot:
    """What the database said at the last scrape."""

    lag_seconds: float = math.nan  # now minus the oldest due, unsent reminder; 0 when none
    processes: int = 0  # bot processes that said they were alive lately
    # Per running (or paused) broadcast: (status, sent, left to send).
    broadcasts: dict[int, tuple[str, int, int]] = field(default_factory=dict)
    at: float = 0.0  # time.monotonic() of the read; 0: never read


def read_snapshot(engine: Engine, now: datetime) -> Snapshot:
    """Read lag, processes and broadcast progress: a few indexed aggregate queries."""
    occurrences, reminders = OCCURRENCES.c, REMINDERS.c
    # Claimed ones count too: a reminder on the wire (or stuck behind a 429) is not sent yet.
    claimable = (*repo.CLAIMABLE, OccurrenceStatus.SENDING.value)
    left = (DeliveryStatus.PENDING.value, DeliveryStatus.SENDING.value)
    with reading(engine).connect() as conn:
        oldest = [
            conn.execute(
                select(func.min(occurrences.due_at)).where(
                    occurrences.status.in_(claimable), occurrences.due_at <= now
                )
            ).scalar(),
            conn.execute(
                select(func.min(reminders.next_due_at)).where(reminders.next_due_at <= now)
            ).scalar(),
        ]
        processes = bots_running(conn, now)
        rows = conn.execute(
            select(BROADCASTS.c.id, BROADCASTS.c.status, DELIVERIES.c.status, func.count())
            .join(DELIVERIES, DELIVERIES.c.broadcast_id == BROADCASTS.c.id)
            .where(
                BROADCASTS.c.status.in_(
                    [BroadcastStatus.RUNNING.value, BroadcastStatus.PAUSED.value]
                )
            )
            .group_by(BROADCASTS.c.id, BROADCASTS.c.status, DELIVERIES.c.status)
        ).all()
    broadcasts: dict[int, tuple[str, int, int]] = {}
    for broadcast_id, status, delivery, count in rows:
        _, sent, pending = broadcasts.get(broadcast_id, (status, 0, 0))
        sent += count if delivery == DeliveryStatus.SENT.value else 0
        pending += count if delivery in left else 0
        broadcasts[broadcast_id] = (status, sent, pending)
    due = [t for t in oldest if t is not None]
    lag = max((now - min(due)).total_seconds(), 0.0) if due else 0.0
    return Snapshot(lag, processes, broadcasts, time.monotonic())


class Metrics:
    """Every metric of one bot process, on its own registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.updates = Counter("miliabot_updates", "Updates handled, by kind", ["kind"], registry=r)
        self.reply_seconds = Histogram(
            "miliabot_reply_seconds",
            "From an update's arrival until it was handled, its replies answered by Telegram",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.reminders = Counter(
            "miliabot_reminders", "Reminder occurrences by outcome", ["outcome"], registry=r
        )
        self.api_errors = Counter(
            "miliabot_bot_api_errors",
            "Bot API answers that were errors, by HTTP status (429 included)",
            ["code"],
            registry=r,
        )
        self.webhook_requests = Counter(
            "miliabot_webhook_requests",
            "Requests to the webhook, by the status they were answered with",
            ["status"],
            registry=r,
        )
        for kind in UPDATE_KINDS:
            self.updates.labels(kind)
        for outcome in REMINDER_OUTCOMES:
            self.reminders.labels(outcome)
        self.snapshot = Snapshot()
        self._pacers: list[Pacer] = []
        self._content_version: Callable[[], int | None] = lambda: None
        r.register(_Live(self))

    # --- hooks -------------------------------------------------------------------------------

    def watch_pacers(self, *pacers: Pacer) -> None:
        """Report these pacers' 429s and pauses."""
        self._pacers.extend(pacers)

    def watch_content(self, version: Callable[[], int | None]) -> None:
        """Report the content version in service (0 while serving the folder)."""
        self._content_version = version

    def count_outcomes(self, outcomes: Iterable[tuple[str, bool]]) -> None:
        """Count reminder outcomes: (status, late) pairs as the dispatcher recorded them."""
        for status, late in outcomes:
            if status in REMINDER_OUTCOMES:
                self.reminders.labels(status).inc()
            if status == "sent" and late:
                self.reminders.labels("late").inc()

    async def on_response(self, response: httpx.Response) -> None:
        """An httpx response hook: count the Bot API's error answers by status."""
        if response.status_code >= 400:
            self.api_errors.labels(str(response.status_code)).inc()

    def processor(self, inbound: Inbound) -> "MeasuredLanes":
        """The update processor (per-chat lanes) that also counts and times updates."""
        return MeasuredLanes(inbound, metrics=self)

    def render(self) -> bytes:
        """The Prometheus text exposition of everything."""
        return generate_latest(self.registry)


class MeasuredLanes(LaneProcessor):
    """`LaneProcessor`, counting updates by kind and timing each from arrival to done."""

    def __init__(self, inbound: Inbound, *, metrics: Metrics) -> None:
        super().__init__(inbound)
        self.metrics = metrics

    async def do_process_update(self, update: object, coroutine: Awaitable[Any]) -> None:
        """Process in the update's lane; count and time it, whatever happens."""
        started = time.monotonic()
        try:
            await super().do_process_update(update, coroutine)
        finally:
            self.metrics.updates.labels(update_kind(update)).inc()
            self.metrics.reply_seconds.observe(time.monotonic() - started)


class _Live(Collector):
    """Figures read at scrape time: the pacers', the content version, the last snapshot."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        m = self.metrics
        limited = CounterMetricFamily(
            "miliabot_rate_limited", "429 answers from Telegram (flood control)"
        )
        limited.add_metric([], sum(p.stats.rate_limited for p in m._pacers))
        yield limited
        paused = CounterMetricFamily(
            "miliabot_paused_seconds", "Seconds all sending was paused for Telegram's retry_after"
        )
        paused.add_metric([], sum(p.stats.paused_total for p in m._pacers))
        yield paused
        yield GaugeMetricFamily(
            "miliabot_content_version",
            "The published content version in service (0: the content folder)",
            value=m._content_version() or 0,
        )
        snap = m.snapshot
        yield GaugeMetricFamily(
            "miliabot_dispatch_lag_seconds",
            "Now minus the oldest due reminder not yet sent (0: none is waiting)",
            value=snap.lag_seconds,
        )
        yield GaugeMetricFamily(
            "miliabot_processes",
            "Bot processes sharing the database (from their heartbeats)",
            value=snap.processes,
        )
        age = time.monotonic() - snap.at if snap.at else math.nan
        yield GaugeMetricFamily(
            "miliabot_database_snapshot_age_seconds",
            "How old the figures read from the database are (they are read at each scrape)",
            value=age,
        )
        sent = GaugeMetricFamily(
            "miliabot_broadcast_sent",
            "Messages sent of a running broadcast",
            labels=["id", "status"],
        )
        left = GaugeMetricFamily(
            "miliabot_broadcast_left",
            "Recipients of a running broadcast still to send",
            labels=["id", "status"],
        )
        for broadcast_id, (status, done, waiting) in sorted(snap.broadcasts.items()):
            sent.add_metric([str(broadcast_id), status], done)
            left.add_metric([str(broadcast_id), status], waiting)
        yield sent
        yield left
