"""Misbehaviour on demand: failed, hung and late calls, blocked users and Telegram's 429s.

Rate limits apply to the message-sending methods in ``RATE_LIMITED_METHODS`` only (edits,
deletes and answers are free): ``global_rate`` sends a second over all chats and
``chat_rate`` per chat, counted in sliding one-second windows on the stand-in's clock.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from miliabot_tg.standin.records import JSON, ApiError

RATE_LIMITED_METHODS: Final = frozenset({"sendMessage", "sendPhoto", "copyMessage"})
# Telegram's limit for messages sent with allow_paid_broadcast (charged in Stars).
PAID_BROADCAST_RATE: Final = 1000.0
_STATUS_TEXT: Final = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    409: "Conflict",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


class RateWindow:
    """Send times in a sliding window: ``rate`` per second means at most ``rate`` sends in any
    one-second window (below 1, one send per ``1 / rate`` seconds)."""

    __slots__ = ("_times",)

    def __init__(self) -> None:
        self._times: deque[float] = deque()

    def retry_after(self, now: float, rate: float) -> int:
        """0 if one more send fits now, else the whole seconds (>= 1) until it does."""
        if rate <= 0:
            raise ValueError(f"rate must be positive or None, not {rate}")
        span, capacity = (1.0, int(rate)) if rate >= 1 else (1.0 / rate, 1)
        times = self._times
        while times and times[0] <= now - span:
            times.popleft()
        if len(times) < capacity:
            return 0
        return max(1, math.ceil(times[-capacity] + span - now))

    def add(self, now: float) -> None:
        self._times.append(now)


@dataclass
class Fault:
    method: str | None  # None: any method but getUpdates
    remaining: int
    error: ApiError | None  # None: hang


class Misbehaviour:
    """The part of ``StandIn`` that fails, hangs, delays and rate-limits calls on demand."""

    def __init__(
        self,
        *,
        global_rate: float | None,
        chat_rate: float | None,
        clock: Callable[[], float],
    ) -> None:
        self.global_rate = global_rate  # messages/second over all chats; None disables
        self.chat_rate = chat_rate  # messages/second per chat; None disables
        self.rate_limited = 0  # 429s caused by global_rate / chat_rate
        self._clock = clock  # also stamps each Call
        self._blocked: set[int] = set()
        self._forgotten: set[int] = set()
        self._faults: list[Fault] = []
        self._delays: dict[str | None, float] = {}
        self._global_window = RateWindow()
        # Paid broadcasts (allow_paid_broadcast) have a limit of their own, 1000 a second.
        self._paid_window = RateWindow()
        self._chat_windows: dict[int, RateWindow] = {}

    def block(self, chat_id: int) -> None:
        """Sends to (and edits in) this chat get 403, as when a user blocks the bot."""
        self._blocked.add(chat_id)

    def unblock(self, chat_id: int) -> None:
        self._blocked.discard(chat_id)

    def forget(self, chat_id: int) -> None:
        """Calls naming this chat get 400 "chat not found"."""
        self._forgotten.add(chat_id)

    def fail_next(
        self,
        method: str | None = None,
        *,
        count: int = 1,
        status: int = 500,
        description: str | None = None,
        retry_after: int | None = None,
    ) -> None:
        """The next ``count`` calls of ``method`` (None: any but getUpdates) fail this way.

        ``description`` defaults to Telegram's wording for the status; a 429 always carries
        ``parameters.retry_after`` (default 1).
        """
        if status == 429:
            retry_after = 1 if retry_after is None else retry_after
            description = description or f"Too Many Requests: retry after {retry_after}"
        text = description or _STATUS_TEXT.get(status, "Error")
        error = ApiError(status, text, retry_after=retry_after)
        self._faults.append(Fault(self._method_name(method), self._count(count), error))

    def hang_next(self, method: str | None = None, count: int = 1) -> None:
        """The next ``count`` calls of ``method`` are never answered (until stop())."""
        self._faults.append(Fault(self._method_name(method), self._count(count), None))

    def delay(self, method: str | None = None, seconds: float = 0.0) -> None:
        """Answer ``method`` (None: any but getUpdates) ``seconds`` late; 0 clears."""
        name = self._method_name(method)
        if seconds > 0:
            self._delays[name] = seconds
        else:
            self._delays.pop(name, None)

    def _method_name(self, method: str | None) -> str | None:
        """Telegram's spelling of a method the stand-in answers (None stays None)."""
        raise NotImplementedError  # the server knows which methods it answers

    @staticmethod
    def _count(count: int) -> int:
        if count < 1:
            raise ValueError("count must be at least 1")
        return count

    def _take_fault(self, method: str) -> Fault | None:
        for fault in self._faults:
            if fault.method == method or (fault.method is None and method != "getUpdates"):
                fault.remaining -= 1
                if not fault.remaining:
                    self._faults.remove(fault)
                return fault
        return None

    def _delay_of(self, method: str) -> float | None:
        pause = self._delays.get(method)
        if pause is None and method != "getUpdates":
            pause = self._delays.get(None)
        return pause

    def _check_rate(self, chat_id: int, params: JSON | None = None) -> None:
        now = self._clock()
        windows: list[tuple[RateWindow, float]] = []
        paid = bool(params and params.get("allow_paid_broadcast") in (True, "true"))
        if paid:
            windows.append((self._paid_window, PAID_BROADCAST_RATE))
        elif self.global_rate is not None:
            windows.append((self._global_window, self.global_rate))
        if self.chat_rate is not None:
            window = self._chat_windows.setdefault(chat_id, RateWindow())
            windows.append((window, self.chat_rate))
        wait = max((window.retry_after(now, rate) for window, rate in windows), default=0)
        if wait:
            self.rate_limited += 1
            raise ApiError(429, f"Too Many Requests: retry after {wait}", retry_after=wait)
        for window, _ in windows:
            window.add(now)
