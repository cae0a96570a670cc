"""The HTTP surface: ``StandIn`` itself, an aiohttp server on loopback answering the Bot API.

Requests to ``{api_root}/bot{token}/{method}`` (any HTTP verb; JSON, urlencoded, multipart or
query-string parameters; method names case-insensitive like Telegram) are recorded as a
``Call``, put through the faults asked for, and answered by the method's handler.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from collections.abc import Callable
from typing import Final

from aiohttp import web

from miliabot_tg.standin.methods import BotApiMethods
from miliabot_tg.standin.records import DEFAULT_TOKEN, JSON, ApiError, Call, Upload, bad
from miliabot_tg.standin.users import SimulatedUsers
from miliabot_tg.standin.webhooks import WebhookDelivery

MAX_UPLOAD_BYTES: Final = 50 * 1024 * 1024

# --- request decoding -------------------------------------------------------------------------

_JSON_PARAMS: Final = frozenset(
    (
        "reply_markup entities caption_entities allowed_updates commands scope "
        "link_preview_options reply_parameters"
    ).split()
)
_INT_PARAMS: Final = frozenset(
    (
        "chat_id message_id offset limit user_id message_thread_id cache_time max_connections "
        "reply_to_message_id from_chat_id"
    ).split()
)
_BOOL_PARAMS: Final = frozenset(
    (
        "show_alert drop_pending_updates disable_notification protect_content "
        "disable_web_page_preview has_spoiler show_caption_above_media "
        "allow_sending_without_reply"
    ).split()
)
_INT_RE: Final = re.compile(r"-?\d+")


def _coerce(raw: JSON) -> JSON:
    """Turn form/query strings (and stringly JSON) into the types Telegram would read."""
    out: JSON = {}
    for key, value in raw.items():
        if isinstance(value, str):
            if key in _JSON_PARAMS:
                try:
                    value = json.loads(value)
                except ValueError:
                    what = "reply keyboard markup" if key == "reply_markup" else key
                    raise bad(f"can't parse {what} JSON object") from None
            elif key in _INT_PARAMS and _INT_RE.fullmatch(value.strip()):
                value = int(value)
            elif key == "timeout":
                with contextlib.suppress(ValueError):
                    value = float(value)
            elif key in _BOOL_PARAMS:
                value = value.strip().lower() in ("true", "1", "yes", "on")
        elif key == "callback_query_id" and isinstance(value, int):
            value = str(value)
        out[key] = value
    return out


async def _read_params(request: web.Request) -> JSON:
    raw: JSON = dict(request.query)
    if request.can_read_body:
        if request.content_type == "application/json":
            try:
                body = json.loads(await request.read())
            except ValueError:
                body = None
            if not isinstance(body, dict):
                raise bad("can't parse JSON object")
            raw.update(body)
        else:
            form = await request.post()
            for key, value in form.items():
                if isinstance(value, web.FileField):
                    with value.file:
                        data = value.file.read()
                    raw[key] = Upload(value.filename, value.content_type, data)
                elif isinstance(value, bytes):
                    raw[key] = value.decode("utf-8", "replace")
                else:
                    raw[key] = value
    return _coerce(raw)


def _respond(status: int, body: JSON) -> web.Response:
    return web.Response(
        body=json.dumps(body, ensure_ascii=False).encode(),
        status=status,
        headers={"Content-Type": "application/json"},
    )


# --- the stand-in -----------------------------------------------------------------------------


class StandIn(WebhookDelivery, SimulatedUsers, BotApiMethods):
    """A Telegram Bot API server on 127.0.0.1 that records and misbehaves on demand.

    Its parts stack up as ``SimulatedUsers`` and ``BotApiMethods`` over ``ChatState`` over
    ``Misbehaviour``; this class adds the HTTP server and the table of methods it answers.
    """

    def __init__(
        self,
        token: str = DEFAULT_TOKEN,
        *,
        bot_username: str = "miliabot_test_bot",
        bot_first_name: str = "Milia Test Bot",
        global_rate: float | None = 30.0,
        chat_rate: float | None = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(
            token,
            bot_username=bot_username,
            bot_first_name=bot_first_name,
            global_rate=global_rate,
            chat_rate=chat_rate,
            clock=clock,
        )
        self._init_webhooks()
        self._runner: web.AppRunner | None = None
        self._api_root: str | None = None
        self._handlers = self._method_table()
        self._names = {name.lower(): name for name in [*self._handlers, "getUpdates"]}

    # --- lifecycle -----------------------------------------------------------------------------

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        if self._runner is not None:
            raise RuntimeError("the stand-in is already running")
        app = web.Application(client_max_size=MAX_UPLOAD_BYTES)
        app.router.add_route("*", "/bot{token}/{method}", self._handle)
        app.router.add_route("*", "/{tail:.*}", self._not_found)
        self._stopping = asyncio.Event()
        runner = web.AppRunner(
            app, handler_cancellation=True, access_log=None, shutdown_timeout=1.0
        )
        await runner.setup()
        await web.TCPSite(runner, host, port).start()
        bound_port = runner.addresses[0][1]
        self._api_root = f"http://{f'[{host}]' if ':' in host else host}:{bound_port}"
        self._runner = runner
        self._start_webhooks()

    async def stop(self) -> None:
        """Stop serving; pending long-polls return empty and hung calls are released."""
        runner, self._runner = self._runner, None
        if runner is None:
            return
        self._stopping.set()
        await self._stop_webhooks()
        self._updates.fire()
        self._activity.fire()
        await runner.cleanup()

    async def __aenter__(self) -> StandIn:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    @property
    def api_root(self) -> str:
        if self._api_root is None:
            raise RuntimeError("the stand-in has not been started")
        return self._api_root

    def _method_name(self, method: str | None) -> str | None:
        """Telegram's spelling of a method the stand-in answers (None stays None)."""
        if method is None:
            return None
        name = self._names.get(method.lower())
        if name is None:
            known = sorted(self._names.values())
            raise ValueError(f"the stand-in has no method {method!r}; it has {known}")
        return name

    # --- answering calls -----------------------------------------------------------------------

    async def _not_found(self, request: web.Request) -> web.Response:
        return _respond(404, ApiError(404, "Not Found").body())

    async def _handle(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        method = self._names.get(method.lower(), method)
        polling = method == "getUpdates"
        call = Call(method, {}, self._clock())
        self.calls.append(call)
        if not polling:
            self._in_flight += 1
            self._last_activity = time.monotonic()
        self._activity.fire()
        try:
            status, body = await self._answer(request, call)
            call.status, call.response = status, body
        finally:
            if not polling:
                self._in_flight -= 1
                self._last_activity = time.monotonic()
            self._activity.fire()
        return _respond(status, body)

    async def _answer(self, request: web.Request, call: Call) -> tuple[int, JSON]:
        try:
            call.params = await _read_params(request)
            if request.match_info["token"] != self.token:
                raise ApiError(401, "Unauthorized")
            if call.method not in self._names.values():
                raise ApiError(404, "Not Found")
            fault = self._take_fault(call.method)
            pause = self._delay_of(call.method)
            if pause:
                await self._sleep(pause)
            if fault is not None:
                if fault.error is not None:
                    raise fault.error
                await self._stopping.wait()
                raise ApiError(500, "Internal Server Error: the stand-in stopped")
            if call.method == "getUpdates":
                result: object = await self._get_updates(call.params)
            else:
                result = self._handlers[call.method](call.params)
        except ApiError as err:
            return err.code, err.body()
        except Exception as exc:  # a stand-in bug: say so instead of a bare aiohttp 500
            return 500, ApiError(500, f"Internal Server Error: stand-in bug: {exc!r}").body()
        return 200, {"ok": True, "result": result}

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._stopping.wait()
