"""The HTTP server beside the bot: /healthz, /readyz and /metrics, on a real port."""

import asyncio
import re
import signal
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path

import aiohttp
import pytest

from miliabot_tg import broadcasts as store
from miliabot_tg.config import ConfigError, Settings
from miliabot_tg.db import make_engine
from miliabot_tg.dispatch import DispatchPolicy
from miliabot_tg.lifecycle import _start_web
from miliabot_tg.standin import DEFAULT_TOKEN, StandIn
from miliabot_tg.web import Readiness, WebServer
from tests.harness import Harness, running_bot
from tests.stalling_proxy import stalling_proxy
from tests.test_lifecycle import Output
from tests.test_processes import _env, _start_bot


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@asynccontextmanager
async def serving(h: Harness, **readiness: object) -> AsyncIterator[WebServer]:
    """The bot's web server for this harness, on a free loopback port."""
    assert h.deps is not None
    checks = Readiness(
        engine=h.engine,
        guide=h.deps.live,
        dispatcher=h.dispatcher,
        started=lambda: h.app.running,
    )
    for name, value in readiness.items():
        setattr(checks, name, value)
    server = WebServer(host="127.0.0.1", port=0, readiness=checks, metrics=h.metrics, clock=h.clock)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


async def _get(server: WebServer | str, path: str) -> tuple[int, str]:
    root = server if isinstance(server, str) else server.url
    async with aiohttp.ClientSession() as session, session.get(root + path) as response:
        return response.status, await response.text()


def _value(metrics_text: str, name: str, labels: str = "") -> float:
    """A sample's value from the text exposition (`labels` as written, e.g. 'kind="command"')."""
    pattern = re.escape(name + (f"{{{labels}}}" if labels else "")) + r" (\S+)"
    found = re.search(r"^" + pattern + r"$", metrics_text, re.MULTILINE)
    assert found is not None, f"{name}{{{labels}}} not in:\n{metrics_text}"
    return float(found.group(1))


async def test_healthz_and_readyz_answer_200_when_all_is_well(tmp_path: Path) -> None:
    async with running_bot(tmp_path) as h, serving(h) as server:
        await h.dispatcher.run_cycle()
        assert await _get(server, "/healthz") == (200, "ok\n")
        assert await _get(server, "/readyz") == (200, "ready\n")


async def test_readyz_is_503_with_the_reason_when_the_database_refuses(tmp_path: Path) -> None:
    gone = make_engine(f"postgresql://postgres@127.0.0.1:{_closed_port()}/nothing")
    async with running_bot(tmp_path) as h, serving(h, engine=gone) as server:
        status, body = await _get(server, "/readyz")
        assert status == 503
        assert body.startswith("not ready: database: OperationalError"), body
        assert "refused" in body.lower(), body
        assert await _get(server, "/healthz") == (200, "ok\n"), "alive all the same"
    gone.dispose()


@pytest.mark.postgres
async def test_readyz_is_503_within_the_timeout_when_the_database_stalls(
    tmp_path: Path, postgres_url: str
) -> None:
    with stalling_proxy(postgres_url) as proxy:
        async with running_bot(tmp_path, database_url=proxy.url(postgres_url)) as h:
            async with serving(h, db_timeout=0.5) as server:
                assert (await _get(server, "/readyz"))[0] == 200
                proxy.stall(at_most=10.0)
                started = asyncio.get_running_loop().time()
                status, body = await _get(server, "/readyz")
                took = asyncio.get_running_loop().time() - started
                # A second probe meanwhile waits for the same one, not a thread of its own.
                again = await _get(server, "/readyz")
                proxy.resume()
            assert status == 503
            assert "database: no answer within 0.5 s" in body, body
            assert took < 5, "answered at the timeout, not when the database came back"
            assert again[0] == 503


async def test_readyz_is_503_when_the_dispatcher_has_not_cycled(tmp_path: Path) -> None:
    policy = DispatchPolicy(idle_poll=timedelta(seconds=0.05))  # stalled after 0.15 s
    async with running_bot(tmp_path, policy=policy) as h, serving(h) as server:
        await asyncio.sleep(0.3)  # the dispatcher is asleep (dispatch=False): no cycle
        status, body = await _get(server, "/readyz")
        assert status == 503
        assert "the reminder dispatcher has not cycled for" in body, body
        await h.dispatcher.run_cycle()
        assert (await _get(server, "/readyz"))[0] == 200


async def test_readyz_is_503_before_the_bot_has_started(tmp_path: Path) -> None:
    async with running_bot(tmp_path) as h, serving(h, started=lambda: False) as server:
        status, body = await _get(server, "/readyz")
    assert status == 503
    assert "not started: waiting for Telegram" in body


async def test_metrics_have_every_family_and_move_after_events(tmp_path: Path) -> None:
    async with running_bot(tmp_path) as h, serving(h) as server:
        status, before = await _get(server, "/metrics")
        assert status == 200
        for family in (
            "miliabot_updates_total",
            "miliabot_reply_seconds_bucket",
            "miliabot_reminders_total",
            "miliabot_rate_limited_total",
            "miliabot_paused_seconds_total",
            "miliabot_dispatch_lag_seconds",
            "miliabot_content_version",
            "miliabot_processes",
            "# TYPE miliabot_broadcast_sent gauge",
            "# TYPE miliabot_broadcast_left gauge",
            "# TYPE miliabot_bot_api_errors_total counter",
        ):
            assert family in before, family
        assert _value(before, "miliabot_updates_total", 'kind="command"') == 0

        await h.say("/start")
        await h.say("sunscreen")
        await h.say("/remind sunscreen 09:30 daily")
        # A reminder falls due and waits, unsent, for five minutes: that is the lag.
        h.clock.advance(timedelta(minutes=35))
        _, waiting = await _get(server, "/metrics")
        assert _value(waiting, "miliabot_dispatch_lag_seconds") == 300
        # Telegram says 429 to the first try: the pacer pauses, then it goes out (late).
        h.standin.fail_next("sendMessage", status=429, retry_after=1)
        await h.dispatcher.run_cycle()
        _, after = await _get(server, "/metrics")

    assert _value(after, "miliabot_updates_total", 'kind="command"') == 2
    assert _value(after, "miliabot_updates_total", 'kind="message"') == 1
    assert _value(after, "miliabot_reply_seconds_count") == 3
    assert _value(after, "miliabot_dispatch_lag_seconds") == 0
    assert _value(after, "miliabot_bot_api_errors_total", 'code="429"') == 1
    assert _value(after, "miliabot_rate_limited_total") >= 1
    assert _value(after, "miliabot_paused_seconds_total") >= 1
    assert _value(after, "miliabot_processes") == 1, "its heartbeat"
    assert _value(after, "miliabot_content_version") == 0, "the content folder serves"


async def test_metrics_count_button_presses_and_reminder_outcomes(tmp_path: Path) -> None:
    async with running_bot(tmp_path) as h, serving(h) as server:
        await h.say("/guide")
        await h.press(h.standin.last(1001).buttons[0][0][0])  # type: ignore[union-attr]
        await h.say("/remind sunscreen 09:30 daily")
        h.clock.advance(timedelta(minutes=30))
        await h.dispatcher.run_cycle()
        h.standin.block(1001)
        h.clock.advance(timedelta(days=1))
        await h.dispatcher.run_cycle()
        _, text = await _get(server, "/metrics")
    assert _value(text, "miliabot_updates_total", 'kind="callback"') == 1
    assert _value(text, "miliabot_reminders_total", 'outcome="sent"') == 1
    assert _value(text, "miliabot_reminders_total", 'outcome="late"') == 0
    assert _value(text, "miliabot_reminders_total", 'outcome="blocked"') == 1
    assert _value(text, "miliabot_bot_api_errors_total", 'code="403"') == 1


async def test_listen_off_means_no_server_and_a_taken_port_is_a_config_error(
    tmp_path: Path,
) -> None:
    assert Settings(listen="off").listen_address() is None
    assert Settings(listen="").listen_address() is None
    assert Settings(listen="[::1]:9000").listen_address() == ("::1", 9000)
    with pytest.raises(ValueError, match="host:port"):
        Settings(listen="8080")
    async with running_bot(tmp_path) as h, serving(h) as first:
        second = WebServer(
            host="127.0.0.1", port=first.port, readiness=first.readiness, metrics=h.metrics
        )
        with pytest.raises(ConfigError, match=rf"MILIABOT_LISTEN 127.0.0.1:{first.port} cannot"):
            await _start_web(second)


async def test_metrics_show_a_running_broadcasts_progress(tmp_path: Path) -> None:
    async with running_bot(tmp_path) as h, serving(h) as server:
        for user in (2001, 2002, 2003):
            await h.say("/start", user_id=user)
        with h.engine.begin() as conn:
            broadcast_id = store.create_draft(conn, created_by=1, now=h.clock(), text="News")
        store.start(h.engine, broadcast_id, h.clock(), "UTC")
        _, waiting = await _get(server, "/metrics")
        h.standin.block(2003)
        await h.broadcaster.run_round()
        _, finished = await _get(server, "/metrics")
    labels = f'id="{broadcast_id}",status="running"'
    assert _value(waiting, "miliabot_broadcast_left", labels) == 3
    assert _value(waiting, "miliabot_broadcast_sent", labels) == 0
    assert f'miliabot_broadcast_left{{id="{broadcast_id}"' not in finished, "done: gone"
    assert _value(finished, "miliabot_bot_api_errors_total", 'code="403"') == 1


async def test_metrics_count_reminders_missed_beyond_the_grace_window(tmp_path: Path) -> None:
    async with running_bot(tmp_path) as h, serving(h) as server:
        await h.say("/remind sunscreen 09:30 daily")
        h.clock.advance(timedelta(hours=5))  # the bot was down: past the 2 h grace
        await h.dispatcher.run_cycle()
        _, text = await _get(server, "/metrics")
    assert _value(text, "miliabot_reminders_total", 'outcome="missed"') == 1
    assert _value(text, "miliabot_reminders_total", 'outcome="sent"') == 0


async def test_miliabot_run_answers_healthz_while_waiting_for_telegram_then_readyz(
    tmp_path: Path,
) -> None:
    port, telegram = _closed_port(), _closed_port()
    env = _env(
        MILIABOT_TOKEN=DEFAULT_TOKEN,
        MILIABOT_API_URL=f"http://127.0.0.1:{telegram}",
        MILIABOT_DATABASE_URL=f"sqlite:///{tmp_path / 'bot.sqlite3'}",
        MILIABOT_LISTEN=f"127.0.0.1:{port}",
    )
    process = await _start_bot(env, tmp_path)
    output = Output(process)
    server = f"http://127.0.0.1:{port}"
    standin = StandIn(chat_rate=None)
    try:
        await output.wait_for(
            lambda lines: any("Telegram is not answering" in x for x in lines), 30
        )
        assert await _get(server, "/healthz") == (200, "ok\n")
        status, body = await _get(server, "/readyz")
        assert status == 503
        assert "not started: waiting for Telegram" in body
        await standin.start(port=telegram)  # Telegram answers: the bot polls, then is ready
        await standin.wait_for(lambda: standin.calls_to("getUpdates"), timeout=60)
        for _ in range(100):
            if (await _get(server, "/readyz"))[0] == 200:
                break
            await asyncio.sleep(0.1)
        assert await _get(server, "/readyz") == (200, "ready\n")
        status, text = await _get(server, "/metrics")
        assert status == 200
        assert "miliabot_updates_total" in text
    finally:
        process.send_signal(signal.SIGTERM)
        code = await output.finish()
        await standin.stop()
    assert code == 0, output.text
    assert "Traceback" not in output.text
