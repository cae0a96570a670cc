"""Webhook mode: Telegram (the stand-in) posts updates to the bot's own HTTP server.

The bot runs as `miliabot run` does (`lifecycle.run`), in this process or as a process of
its own, with the secret enforced; the stand-in delivers updates to the webhook the bot
registered, as Telegram would.
"""

import asyncio
import json
import logging
import os
import signal
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import aiohttp.web
import pytest
from telegram import Bot, Update
from telegram.error import BadRequest

from miliabot_tg import lifecycle
from miliabot_tg.app import Built, build_application
from miliabot_tg.cli import main
from miliabot_tg.config import Settings
from miliabot_tg.db import make_engine, migrate
from miliabot_tg.handlers import Deps
from miliabot_tg.models import utcnow
from miliabot_tg.standin import DEFAULT_TOKEN, StandIn
from miliabot_tg.web import WebServer, make_server
from miliabot_tg.webhook import SECRET_HEADER, WebhookSpec, register
from tests.harness import GUIDE, USER
from tests.test_lifecycle import Output, _free_port
from tests.test_processes import _env, _start_bot

URL = "https://bot.example.com/tg/hook"
SECRET = "s3cret-Token_1"


@dataclass
class Hooked:
    """A bot running in webhook mode, and the stand-in posting to it."""

    standin: StandIn
    built: Built
    web: WebServer

    @property
    def hook(self) -> str:
        return self.web.url + "/tg/hook"

    async def post(self, body: bytes, headers: dict[str, str] | None = None) -> int:
        async with (
            aiohttp.ClientSession() as session,
            session.post(self.hook, data=body, headers=headers or {}) as response,
        ):
            return response.status

    def metric(self, kind: str) -> float:
        value = self.built.metrics.updates.labels(kind)._value.get()
        return float(value)


def _update(text: str, update_id: int = 900_001, user: int = USER) -> dict[str, object]:
    chat = {"id": user, "type": "private", "first_name": "Eve"}
    message = {
        "message_id": 1,
        "date": 1_700_000_000,
        "chat": chat,
        "from": {"id": user, "is_bot": False, "first_name": "Eve"},
        "text": text,
    }
    if text.startswith("/"):
        message["entities"] = [{"type": "bot_command", "offset": 0, "length": len(text)}]
    return {"update_id": update_id, "message": message}


async def _until(check: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "not within the timeout"
        await asyncio.sleep(0.01)


@asynccontextmanager
async def webhook_bot(tmp_path: Path) -> AsyncIterator[Hooked]:
    """`miliabot run` in webhook mode, in this process, against a fresh stand-in."""
    url = f"sqlite:///{tmp_path / 'bot.sqlite3'}"
    engine = make_engine(url)
    migrate(engine)
    async with StandIn(chat_rate=None, global_rate=None) as standin:
        settings = Settings(
            api_url=standin.api_root,
            database_url=url,
            listen="127.0.0.1:0",
            webhook_url=URL,
            webhook_secret=SECRET,
            global_rate=10_000.0,
            chat_rate=10_000.0,
        )
        deps = Deps(settings=settings, engine=engine, guide=GUIDE, clock=utcnow)
        built = build_application(deps, DEFAULT_TOKEN)
        web = make_server(settings, deps, built)
        assert web is not None
        stop = asyncio.Event()
        running = asyncio.create_task(lifecycle.run(built, stop=stop, web=web))
        try:
            await standin.wait_for(lambda: standin.webhook_url, timeout=30)
            standin.deliver_webhooks_to(web.url)
            yield Hooked(standin, built, web)
        finally:
            stop.set()
            await running
            for signum in (signal.SIGTERM, signal.SIGINT):  # lifecycle.run's, on this loop
                asyncio.get_running_loop().remove_signal_handler(signum)
    engine.dispose()


async def test_a_posted_update_is_answered_and_the_webhook_registered_once(
    tmp_path: Path,
) -> None:
    async with webhook_bot(tmp_path) as h:
        h.standin.send_message("/start")
        reply = await h.standin.wait_for(lambda: h.standin.last(USER), timeout=10)
        assert "MiliaBot" in reply.plain
        assert [p.status for p in h.standin.webhook_posts] == [200]
        assert h.standin.calls_to("getUpdates") == [], "no polling in webhook mode"
        (registered,) = h.standin.calls_to("setWebhook")
        # A second instance starting now finds it registered and leaves it.
        async with Bot(DEFAULT_TOKEN, base_url=f"{h.standin.api_root}/bot") as other:
            spec = WebhookSpec(url=URL, secret=SECRET)
            assert await register(other, spec) is False
        assert len(h.standin.calls_to("setWebhook")) == 1
    assert registered.params["url"] == URL
    assert registered.params["secret_token"] == SECRET
    assert set(registered.params["allowed_updates"]) == set(Update.ALL_TYPES)
    assert registered.params["max_connections"] == 40
    assert h.standin.calls_to("deleteWebhook") == [], "stopping leaves it for the others"


async def test_requests_without_the_right_secret_get_403_and_are_not_processed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    body = json.dumps(_update("/start")).encode()
    async with webhook_bot(tmp_path) as h:
        assert await h.post(body) == 403
        assert await h.post(body, {SECRET_HEADER: "wrong"}) == 403
        assert await h.post(body, {SECRET_HEADER: SECRET + "x"}) == 403
        assert await h.post(body, {SECRET_HEADER: "é" * 3}) == 403
        await h.standin.settle()
        await asyncio.sleep(0.2)
        assert h.standin.chat(USER) == []
        assert h.metric("command") == 0
        # The same body with the secret is answered.
        assert await h.post(body, {SECRET_HEADER: SECRET}) == 200
        await h.standin.wait_for(lambda: h.standin.last(USER), timeout=10)
        await _until(lambda: h.metric("command") == 1)  # counted once its handling ends
        requests = h.built.metrics.webhook_requests
        assert requests.labels("403")._value.get() == 4
        # Stopping (or not yet started): 503, so Telegram delivers it again later.
        assert h.web.webhook is not None
        h.web.webhook.accepting = False
        assert await h.post(body, {SECRET_HEADER: SECRET}) == 503
        assert await h.post(body, {SECRET_HEADER: "wrong"}) == 403, "the secret first"
        h.web.webhook.accepting = True
    refused = [r for r in caplog.records if "wrong secret" in r.getMessage()]
    assert len(refused) == 1, "one line a minute, not one per request"
    assert SECRET not in caplog.text


async def test_too_large_and_malformed_bodies_are_refused_quietly(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    good = {SECRET_HEADER: SECRET}
    async with webhook_bot(tmp_path) as h:
        huge = json.dumps(_update("x" * (2 * 1024 * 1024))).encode()
        assert await h.post(huge, good) == 413

        async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: read, then refused
            for _ in range(40):
                yield b" " * 65536

        async with (
            aiohttp.ClientSession() as session,
            session.post(h.hook, data=chunks(), headers=good) as response,
        ):
            assert response.status == 413
        for bad in (b"not json", b"[1, 2]", b'{"message": {}}', b'{"update_id": "7"}', b"\xff"):
            assert await h.post(bad, good) == 400, bad
        assert await h.post(b'{"update_id": 5, "message": "text"}', good) == 400
        await asyncio.sleep(0.2)
        assert h.standin.chat(USER) == []
    assert "Traceback" not in caplog.text
    assert all(r.exc_info is None for r in caplog.records)
    lines = [r.getMessage() for r in caplog.records if "not an update" in r.getMessage()]
    assert len(lines) == 1, lines


async def test_registering_again_after_telegram_saw_403s_and_on_a_new_url(
    tmp_path: Path,
) -> None:
    async with StandIn() as standin, Bot(DEFAULT_TOKEN, base_url=f"{standin.api_root}/bot") as bot:
        spec = WebhookSpec(url=URL, secret=SECRET)
        assert await register(bot, spec) is True
        assert await register(bot, spec) is False
        # Deliveries refused with 403 (a changed secret): registered again.
        standin.deliver_webhooks_to(f"http://127.0.0.1:{_free_port()}")
        standin.send_message("/start")
        await standin.wait_for(lambda: standin.webhook_posts, timeout=5)
        standin._webhook_error = (int(utcnow().timestamp()), "Wrong response: 403 Forbidden")
        assert await register(bot, spec) is True
        assert await register(bot, WebhookSpec(url=URL + "2", secret=SECRET)) is True
        assert await register(bot, WebhookSpec(url=URL + "2", secret=SECRET, max_connections=5))
        assert len(standin.calls_to("setWebhook")) == 4


@pytest.mark.postgres
async def test_instances_starting_together_register_once(postgres_url: str) -> None:
    engine = make_engine(postgres_url)
    async with StandIn() as standin:
        bots = [Bot(DEFAULT_TOKEN, base_url=f"{standin.api_root}/bot") for _ in range(3)]
        spec = WebhookSpec(url=URL, secret=SECRET)
        standin.delay("getWebhookInfo", 0.2)  # each look takes a while: they overlap
        done = await asyncio.gather(*(register(bot, spec, engine) for bot in bots))
        for bot in bots:
            await bot.shutdown()
    engine.dispose()
    assert sorted(done) == [False, False, True]
    assert len(standin.calls_to("setWebhook")) == 1


@pytest.fixture
def bot_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("MILIABOT_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)  # no .env of the project's
    monkeypatch.setenv("MILIABOT_TOKEN", DEFAULT_TOKEN)
    monkeypatch.setenv("MILIABOT_DATABASE_URL", f"sqlite:///{tmp_path / 'bot.sqlite3'}")


@pytest.mark.usefixtures("bot_env")
def test_webhook_without_a_secret_refuses_to_start(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MILIABOT_WEBHOOK_URL", URL)
    with pytest.raises(SystemExit) as exited:
        main(["run"])
    assert exited.value.code == 2
    said = capsys.readouterr().err.strip()
    assert said.startswith(
        "miliabot: MILIABOT_WEBHOOK_SECRET is required with MILIABOT_WEBHOOK_URL"
    )
    assert "\n" not in said
    monkeypatch.setenv("MILIABOT_WEBHOOK_URL", "http://plain.example.com/hook")
    monkeypatch.setenv("MILIABOT_WEBHOOK_SECRET", SECRET)
    with pytest.raises(SystemExit):
        main(["run"])
    assert "MILIABOT_WEBHOOK_URL must be a public https:// URL" in capsys.readouterr().err


@pytest.mark.usefixtures("bot_env")
async def test_cli_webhook_set_info_delete(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    async def cli(*argv: str) -> tuple[int, str]:
        with pytest.raises(SystemExit) as exited:
            await asyncio.to_thread(main, list(argv))
        out = capsys.readouterr()
        return int(str(exited.value.code)), out.out + out.err

    async with StandIn() as standin:
        monkeypatch.setenv("MILIABOT_API_URL", standin.api_root)
        code, said = await cli("webhook", "set")
        assert code == 2
        assert "MILIABOT_WEBHOOK_URL is not set" in said
        assert standin.calls_to("setWebhook") == []
        monkeypatch.setenv("MILIABOT_WEBHOOK_URL", URL)
        monkeypatch.setenv("MILIABOT_WEBHOOK_SECRET", SECRET)
        monkeypatch.setenv("MILIABOT_WEBHOOK_MAX_CONNECTIONS", "12")
        assert await cli("webhook", "set") == (0, f"registered the webhook {URL}\n")
        (call,) = standin.calls_to("setWebhook")
        assert call.params["secret_token"] == SECRET
        assert call.params["max_connections"] == 12
        code, said = await cli("webhook", "info")
        assert code == 0
        assert f"url: {URL}\n" in said
        assert "max connections: 12" in said
        assert SECRET not in said
        code, said = await cli("webhook", "delete", "--drop-pending-updates")
        assert code == 0
        assert "deleted the webhook and dropped the pending updates" in said
        assert standin.webhook_url is None
        code, said = await cli("webhook", "info")
        assert "url: (none: the bot polls)" in said
        standin.fail_next("getWebhookInfo", status=502)
        code, said = await cli("webhook", "info")
        assert code == 69
        assert said.startswith("miliabot: Telegram refused")


async def test_miliabot_run_in_webhook_mode_answers_and_stops_on_sigterm(
    tmp_path: Path,
) -> None:
    port = _free_port()
    async with StandIn(chat_rate=None) as standin:
        standin.deliver_webhooks_to(f"http://127.0.0.1:{port}")
        env = _env(
            MILIABOT_TOKEN=DEFAULT_TOKEN,
            MILIABOT_API_URL=standin.api_root,
            MILIABOT_DATABASE_URL=f"sqlite:///{tmp_path / 'bot.sqlite3'}",
            MILIABOT_LISTEN=f"127.0.0.1:{port}",
            MILIABOT_WEBHOOK_URL=URL,
            MILIABOT_WEBHOOK_SECRET=SECRET,
        )
        process = await _start_bot(env, tmp_path)
        output = Output(process)
        try:
            await output.wait_for(lambda lines: any("taking updates" in x for x in lines), 60)
            standin.send_message("/start")
            reply = await standin.wait_for(lambda: standin.last(USER), timeout=20)
            assert "MiliaBot" in reply.plain
            async with (
                aiohttp.ClientSession() as session,
                session.get(f"http://127.0.0.1:{port}/readyz") as ready,
            ):
                assert ready.status == 200, await ready.text()
        finally:
            process.send_signal(signal.SIGTERM)
            code = await output.finish()
    assert code == 0, output.text
    assert "Traceback" not in output.text
    assert len(standin.calls_to("setWebhook")) == 1
    assert standin.calls_to("getUpdates") == []
    assert SECRET not in output.text
    assert DEFAULT_TOKEN.split(":")[1] not in output.text


async def test_the_standin_posts_to_the_webhook_with_the_secret_and_retries_failures() -> None:
    seen: list[tuple[str | None, dict[str, object]]] = []
    answers = [503, 200]

    async def hook(request: aiohttp.web.Request) -> aiohttp.web.Response:
        seen.append((request.headers.get(SECRET_HEADER), await request.json()))
        return aiohttp.web.Response(status=answers.pop(0) if answers else 200)

    receiver = aiohttp.web.Application()
    receiver.router.add_post("/tg/hook", hook)
    runner = aiohttp.web.AppRunner(receiver)
    await runner.setup()
    port = _free_port()
    await aiohttp.web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        async with StandIn() as standin:
            standin.webhook_retry_delay = 0.05
            async with Bot(DEFAULT_TOKEN, base_url=f"{standin.api_root}/bot") as bot:
                with pytest.raises(BadRequest, match=r"(?i)secret token contains unallowed"):
                    await bot.set_webhook(URL, secret_token="not allowed!")
                await bot.set_webhook(URL, secret_token=SECRET)
                update_id = standin.send_message("/start")
                # Not delivered until the test says where the URL is served.
                await asyncio.sleep(0.1)
                assert standin.webhook_posts == []
                assert (await bot.get_webhook_info()).pending_update_count == 1
                standin.deliver_webhooks_to(f"http://127.0.0.1:{port}")
                await standin.wait_for(lambda: standin.pending_updates == 0, timeout=5)
                info = await bot.get_webhook_info()
    finally:
        await runner.cleanup()
    assert [p.status for p in standin.webhook_posts] == [503, 200]
    assert [s for s, _ in seen] == [SECRET, SECRET]
    assert seen[0][1]["update_id"] == update_id
    assert info.pending_update_count == 0
    assert info.last_error_message == "Wrong response from the webhook: 503 Service Unavailable"
