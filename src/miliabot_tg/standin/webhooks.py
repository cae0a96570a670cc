"""Webhook delivery: the stand-in posts queued updates to the bot, as Telegram does.

Telegram posts to the https URL given to setWebhook; on loopback there is no TLS, so
``deliver_webhooks_to(root)`` says where that URL is served (what a TLS-terminating proxy
would do): each update is POSTed as JSON to ``root`` + the URL's path, with
``X-Telegram-Bot-Api-Secret-Token`` when a secret was set, at most ``max_connections``
at once. An update answered 2xx is done; any other answer (or none) is recorded in
``getWebhookInfo``'s ``last_error_*`` and tried again after ``webhook_retry_delay``.
Every POST is recorded in ``webhook_posts``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlsplit

import aiohttp

from miliabot_tg.standin.records import JSON
from miliabot_tg.standin.state import ChatState, unix_now

SECRET_HEADER: Final = "X-Telegram-Bot-Api-Secret-Token"  # noqa: S105 (a header's name)
_TIMEOUT: Final = aiohttp.ClientTimeout(total=10)


@dataclass
class WebhookPost:
    """One POST of an update to the bot's webhook."""

    update_id: int
    at: float  # the stand-in's clock, when the POST was sent
    status: int | None = None  # the bot's answer; None: no answer (refused, timed out)
    answered_at: float | None = None


class WebhookDelivery(ChatState):
    """The part of ``StandIn`` that delivers updates to a set webhook."""

    webhook_retry_delay: float = 0.5

    def _init_webhooks(self) -> None:
        self.webhook_posts: list[WebhookPost] = []
        self._webhook_root: str | None = None
        self._webhook_task: asyncio.Task[None] | None = None
        self._webhook_busy: set[int] = set()
        self._webhook_retry_at: dict[int, float] = {}

    def deliver_webhooks_to(self, root: str) -> None:
        """Post updates for the set webhook to this local root (e.g. http://127.0.0.1:8080)."""
        self._webhook_root = root.rstrip("/")
        self._updates.fire()

    def _start_webhooks(self) -> None:
        self._webhook_task = asyncio.create_task(self._deliver_loop(), name="standin-webhooks")

    async def _stop_webhooks(self) -> None:
        task, self._webhook_task = self._webhook_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _deliver_loop(self) -> None:
        async with aiohttp.ClientSession(timeout=_TIMEOUT) as session:
            posts: set[asyncio.Task[None]] = set()
            try:
                while True:
                    webhook, root = self._webhook, self._webhook_root
                    for update in self._deliverable():
                        assert webhook is not None
                        assert root is not None
                        post = asyncio.create_task(self._post(session, update, webhook, root))
                        posts.add(post)
                        post.add_done_callback(posts.discard)
                    retry = min(self._webhook_retry_at.values(), default=None)
                    wait = 1.0 if retry is None else max(retry - self._loop_time(), 0.01)
                    await self._updates.wait(wait)
            finally:
                for post in posts:
                    post.cancel()

    def _loop_time(self) -> float:
        return asyncio.get_running_loop().time()

    def _deliverable(self) -> list[JSON]:
        webhook = self._webhook
        if webhook is None or self._webhook_root is None:
            return []
        room = int(webhook.get("max_connections") or 40) - len(self._webhook_busy)
        now = self._loop_time()
        found = []
        for update in self._pending:
            if room <= 0:
                break
            update_id = update["update_id"]
            if update_id in self._webhook_busy or self._webhook_retry_at.get(update_id, 0) > now:
                continue
            self._webhook_busy.add(update_id)
            found.append(update)
            room -= 1
        return found

    async def _post(
        self, session: aiohttp.ClientSession, update: JSON, webhook: JSON, root: str
    ) -> None:
        update_id = update["update_id"]
        parts = urlsplit(webhook["url"])
        target = root + (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        headers = {SECRET_HEADER: webhook["secret"]} if webhook.get("secret") else {}
        post = WebhookPost(update_id, self._clock())
        self.webhook_posts.append(post)
        try:
            async with session.post(target, json=update, headers=headers) as response:
                post.status = response.status
                await response.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            error = f"Connection failed: {type(exc).__name__}"
        else:
            error = f"Wrong response from the webhook: {response.status} {response.reason}"
        finally:
            post.answered_at = self._clock()
            self._webhook_busy.discard(update_id)
        if post.status is not None and 200 <= post.status < 300:
            self._webhook_retry_at.pop(update_id, None)
            self._pending = deque(u for u in self._pending if u["update_id"] != update_id)
        else:
            self._webhook_error = (unix_now(), error)
            self._webhook_retry_at[update_id] = self._loop_time() + self.webhook_retry_delay
        self._activity.fire()
        self._updates.fire()
