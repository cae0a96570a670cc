"""Bot API faults from the stand-in while `miliabot run` sends due reminders and a broadcast,
on SQLite and on PostgreSQL.

The first send gets a 429 with `retry_after` (3 s at CI size, 30 s under `make soak`: the
bot runs on the real clock in its own process, so the long wait is really waited), then
502s and 500s, two sends that are never answered (the client's read timeout), and 502s
sprinkled in while the rest goes out. Afterwards: everything due within grace and every
recipient delivered, the retry_after honoured (no send reaches Telegram inside the wait,
apart from the ones already on the wire), and no request storm: the sends Telegram saw
are the messages delivered plus the faults injected plus at most one lost batch on the wire.
"""

import asyncio
from pathlib import Path

from sqlalchemy import func, select

from miliabot_tg.broadcasts import DELIVERIES
from miliabot_tg.db import make_engine
from miliabot_tg.dispatch import OCCURRENCES, DispatchPolicy
from miliabot_tg.standin import DEFAULT_TOKEN, StandIn
from miliabot_tg.standin.records import Call
from tests.robustness.bots import start_bot, stop_bot
from tests.robustness.results import record, size
from tests.robustness.test_crashes import NEWS, _seed, until
from tests.test_processes import _env

RETRY_AFTER = size(3, 30)
SOLID_5XX = 15  # each of 502 and 500, back to back
SPRINKLED = 6  # rounds of two 502s while sending
HANGS = 2


def _name(url: str) -> str:
    return "PostgreSQL" if url.startswith("postgresql") else "SQLite"


async def test_after_429s_5xx_and_timeouts_everything_arrives_without_a_storm(
    tmp_path: Path, database_url: str
) -> None:
    url = database_url
    broadcast_id, due, overdue, recipients = _seed(url, reminders=200, recipients=200)
    injected = 1 + 2 * SOLID_5XX + 2 * SPRINKLED + HANGS
    async with StandIn(global_rate=None, chat_rate=None) as standin:

        def counts() -> tuple[dict[int, int], dict[int, int]]:
            reminders: dict[int, int] = {}
            news: dict[int, int] = {}
            for user_id in due | overdue | recipients:
                for message in standin.chat(user_id):
                    into = news if NEWS in message.plain else reminders
                    into[user_id] = into.get(user_id, 0) + 1
            return reminders, news

        def finished() -> bool:
            reminders, news = counts()
            return set(reminders) >= due and set(news) >= recipients

        standin.fail_next("sendMessage", status=429, retry_after=RETRY_AFTER)
        standin.fail_next("sendMessage", status=502, count=SOLID_5XX)
        standin.fail_next("sendMessage", status=500, count=SOLID_5XX)
        standin.hang_next("sendMessage", count=HANGS)
        standin.delay("sendMessage", 0.005)
        env = _env(
            MILIABOT_TOKEN=DEFAULT_TOKEN,
            MILIABOT_API_URL=standin.api_root,
            MILIABOT_DATABASE_URL=url,
            MILIABOT_GLOBAL_RATE="10000",
        )
        bot = await start_bot(env, tmp_path)
        try:
            await standin.wait_for(lambda: standin.calls_to("sendMessage"), timeout=60)
            for _ in range(SPRINKLED):
                await asyncio.sleep(0.5)
                standin.fail_next("sendMessage", status=502, count=2)
            await until(finished, timeout=240 + RETRY_AFTER)
            await standin.settle(quiet=1.0)
        finally:
            log = await stop_bot(bot)
        assert bot.returncode == 0, log[-3000:]
        sends = standin.calls_to("sendMessage")

    reminders, news = counts()
    engine = make_engine(url)
    with engine.connect() as conn:
        occurrences: dict[str, int] = dict(
            conn.execute(
                select(OCCURRENCES.c.status, func.count()).group_by(OCCURRENCES.c.status)
            ).all()
        )
        deliveries: dict[str, int] = dict(
            conn.execute(
                select(DELIVERIES.c.status, func.count())
                .where(DELIVERIES.c.broadcast_id == broadcast_id)
                .group_by(DELIVERIES.c.status)
            ).all()
        )
    engine.dispose()
    lost = len(due - set(reminders)) + len(recipients - set(news))
    delivered = sum(reminders.values()) + sum(news.values())
    duplicates = delivered - len(reminders) - len(news)
    (limited,) = [c for c in sends if c.status == 429]
    # Sends that reached Telegram inside the wait, beyond those already on the wire.
    inside = [c for c in sends if limited.at + 0.5 < c.at < limited.at + RETRY_AFTER - 0.1]
    policy = DispatchPolicy()
    extra = len(sends) - delivered - injected

    # Back-off: a message whose send failed with a 5xx is tried again 5 s later at the
    # earliest (a user's reminder and the broadcast to them are two messages).
    def item(call: Call) -> tuple[object, bool]:
        return call.params.get("chat_id"), NEWS in str(call.params.get("text"))

    gaps = []
    for i, call in enumerate(sends):
        if call.status in (500, 502):
            later = [c.at for c in sends[i + 1 :] if item(c) == item(call)]
            if later:
                gaps.append(later[0] - call.at)
    record(
        f"bot api faults ({_name(url)})",
        delivered=delivered,
        lost=lost,
        duplicates=duplicates,
        sends=len(sends),
        injected_faults=injected,
        extra_requests=extra,
        sends_inside_retry_after=len(inside),
        retried_after_5xx=len(gaps),
        shortest_retry_ms=int(1000 * min(gaps, default=0)),
    )
    assert lost == 0
    assert occurrences == {"sent": len(due), "missed": len(overdue)}
    assert deliveries == {"sent": len(recipients)}
    assert inside == [], "retry_after honoured"
    assert gaps, "5xx sends were retried"
    assert min(gaps) >= 4.5, "retries back off (5 s, 10 s, ...)"
    # No storm: every request is a delivery, an injected fault, or one of a batch that was
    # on the wire when a fault came back (each fault can fail at most what is in flight).
    assert extra <= policy.concurrency, (len(sends), delivered, injected)


async def test_after_telegram_refused_connections_for_a_while_everything_arrives(
    tmp_path: Path, database_url: str
) -> None:
    # CI: 5 s of connection refused; `make soak`: 60 s.
    outage = size(5, 60)
    url = database_url
    _, due, overdue, recipients = _seed(url, reminders=400, recipients=400)
    standin = StandIn(global_rate=None, chat_rate=None)
    await standin.start()
    port = int(standin.api_root.rsplit(":", 1)[1])

    def counts() -> tuple[dict[int, int], dict[int, int]]:
        reminders: dict[int, int] = {}
        news: dict[int, int] = {}
        for user_id in due | overdue | recipients:
            for message in standin.chat(user_id):
                into = news if NEWS in message.plain else reminders
                into[user_id] = into.get(user_id, 0) + 1
        return reminders, news

    def finished() -> bool:
        reminders, news = counts()
        return set(reminders) >= due and set(news) >= recipients

    standin.delay("sendMessage", 0.02)
    env = _env(
        MILIABOT_TOKEN=DEFAULT_TOKEN,
        MILIABOT_API_URL=standin.api_root,
        MILIABOT_DATABASE_URL=url,
        MILIABOT_GLOBAL_RATE="10000",
    )
    bot = await start_bot(env, tmp_path)
    try:
        total = len(due) + len(recipients)
        await until(lambda: len(standin.calls_to("sendMessage")) >= total // 4, 120, every=0.02)
        await standin.stop()  # connection refused from now on
        await asyncio.sleep(outage)
        assert bot.returncode is None, "the bot keeps running"
        calls_before = len(standin.calls)
        await standin.start(port=port)
        back = asyncio.get_running_loop().time()
        await until(finished, timeout=300)
        await standin.settle(quiet=1.0)
        elapsed = asyncio.get_running_loop().time() - back
    finally:
        log = await stop_bot(bot)
        await standin.stop()
    assert bot.returncode == 0, log[-3000:]
    reminders, news = counts()
    lost = len(due - set(reminders)) + len(recipients - set(news))
    delivered = sum(reminders.values()) + sum(news.values())
    duplicates = delivered - len(reminders) - len(news)
    after = standin.calls[calls_before:]
    sends_after = [c for c in after if c.method == "sendMessage"]
    others_after = len(after) - len(sends_after)
    record(
        f"telegram unreachable ({_name(url)})",
        outage_seconds=outage,
        delivered=delivered,
        lost=lost,
        duplicates=duplicates,
        requests_after_outage=len(after),
        other_requests_after_outage=others_after,
    )
    assert lost == 0
    assert not overdue & set(reminders)
    policy = DispatchPolicy()
    assert duplicates <= 2 * (policy.concurrency + policy.flush_every)
    # No storm: after the outage, sends are the messages still to go (plus any the outage
    # cut off on the wire), and the rest is polling: at most a few requests a second.
    sent_before = sum(1 for c in standin.calls[:calls_before] if c.method == "sendMessage" and c.ok)
    assert len(sends_after) <= total - sent_before + policy.concurrency
    assert others_after <= 10 + 5 * elapsed, others_after
