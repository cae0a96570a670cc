"""The database goes away, or is shared with the command line, while the bot is busy.

PostgreSQL "stops" by way of a TCP proxy that drops every connection and refuses new ones
(tests/stalling_proxy.py; the machine's server is shared and keeps running), in the middle
of dispatching due reminders and a broadcast: the bot keeps running, answers the guide
meanwhile, loses nothing and catches up once the proxy forwards again.

On SQLite, `miliabot broadcast send` and `miliabot content publish` run while the bot
writes (dispatch and a broadcast): neither ever fails with "database is locked".
"""

import asyncio
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from miliabot_tg.dispatch import DispatchPolicy
from miliabot_tg.paths import bundled_dir
from miliabot_tg.standin import DEFAULT_TOKEN, StandIn
from tests.robustness.bots import start_bot, stop_bot
from tests.robustness.results import record, size
from tests.robustness.test_crashes import NEWS, _seed, until
from tests.stalling_proxy import stalling_proxy
from tests.test_processes import _env

GUIDE_USER = 1001


def _answers(standin: StandIn, count: int) -> Callable[[], bool]:
    return lambda: len(standin.chat(GUIDE_USER)) >= count


OUTAGE_SECONDS = size(5, 60)


@pytest.mark.postgres
async def test_a_stopped_postgres_during_dispatch_and_broadcast_loses_nothing(
    tmp_path: Path, postgres_url: str
) -> None:
    _, due, overdue, recipients = _seed(postgres_url, reminders=600, recipients=600)
    with stalling_proxy(postgres_url) as proxy:
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

            standin.delay("sendMessage", 0.02)
            env = _env(
                MILIABOT_TOKEN=DEFAULT_TOKEN,
                MILIABOT_API_URL=standin.api_root,
                MILIABOT_DATABASE_URL=proxy.url(postgres_url),
                MILIABOT_GLOBAL_RATE="10000",
            )
            bot = await start_bot(env, tmp_path)
            try:
                total = len(due) + len(recipients)
                await standin.wait_for(
                    lambda: len(standin.calls_to("sendMessage")) >= total // 4, timeout=120
                )
                proxy.refuse()
                before = len(standin.calls_to("sendMessage"))
                # The guide answers from memory while the database is away.
                for number, text in enumerate(("/guide", "sunscreen"), start=1):
                    standin.send_message(text, user_id=GUIDE_USER)
                    await standin.wait_for(_answers(standin, number), timeout=30)
                await asyncio.sleep(OUTAGE_SECONDS)
                assert bot.returncode is None, "the bot keeps running"
                proxy.resume(reset=True)
                try:
                    await until(finished, timeout=300)
                except AssertionError as late:
                    reminders, news = counts()
                    got = f"reminders {len(set(reminders) & due)}/{len(due)}"
                    got += f", news {len(set(news) & recipients)}/{len(recipients)}"
                    raise AssertionError(f"{late}: {got}") from late
                await standin.settle(quiet=1.0)
            finally:
                log = await stop_bot(bot)
            assert bot.returncode == 0, log[-3000:]
            guide = [m.plain for m in standin.chat(GUIDE_USER)]
    reminders, news = counts()
    lost = len(due - set(reminders)) + len(recipients - set(news))
    duplicates = sum(reminders.values()) - len(reminders) + sum(news.values()) - len(news)
    record(
        "postgres outage",
        outage_seconds=OUTAGE_SECONDS,
        sent_before_outage=before,
        lost=lost,
        duplicates=duplicates,
    )
    assert any("Milia" in text or "sunscreen" in text.lower() for text in guide), guide
    assert lost == 0
    assert not overdue & set(reminders)
    policy = DispatchPolicy()
    assert duplicates <= 2 * (policy.concurrency + policy.flush_every)


async def _cli(env: dict[str, str], cwd: Path, *args: str) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "miliabot_tg",
        *args,
        env=env,
        cwd=cwd,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(process.communicate(), timeout=120)
    return process.returncode or 0, out.decode(errors="replace")


async def test_sqlite_bot_and_command_line_writing_together_never_lock(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'bot.sqlite3'}"
    _seed(url, reminders=1000, recipients=1000)
    text = tmp_path / "news.html"
    text.write_text("<b>Extra</b> news", encoding="utf-8")
    runs = size(4, 20)
    failures: list[str] = []
    async with StandIn(global_rate=None, chat_rate=None) as standin:
        standin.delay("sendMessage", 0.01)
        env = _env(
            MILIABOT_TOKEN=DEFAULT_TOKEN,
            MILIABOT_API_URL=standin.api_root,
            MILIABOT_DATABASE_URL=url,
            MILIABOT_GLOBAL_RATE="10000",
        )
        bot = await start_bot(env, tmp_path)
        try:
            await standin.wait_for(lambda: standin.calls_to("sendMessage"), timeout=60)
            content = str(bundled_dir("content"))
            for _ in range(runs):
                results = await asyncio.gather(
                    _cli(env, tmp_path, "broadcast", "send", "--text-file", str(text), "--yes"),
                    _cli(env, tmp_path, "content", "publish", content, "--by", "soak"),
                )
                failures += [out for code, out in results if code != 0 or "locked" in out]
        finally:
            log = await stop_bot(bot)
    locked = log.count("database is locked") + len(failures)
    record("sqlite bot + command line", runs=runs, unhandled_errors=locked)
    assert failures == []
    assert bot.returncode == 0, log[-3000:]
    assert "database is locked" not in log
