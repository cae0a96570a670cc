"""The UV index from Open-Meteo's forecast API: a small cached client and pure summaries.

Open-Meteo is free and needs no key; its data is CC BY 4.0, so every message that shows a
UV figure carries `CREDIT`. Forecasts are cached per location rounded to 0.1° (about
10 km, the same rounding the stored location has) for the rest of the clock hour they were
fetched in. A failing service is left alone for a while (a per-location backoff doubling
from a minute to an hour), and callers never wait on it for long: the dispatcher reads
only the cache (a prefetch fills it ahead of time), replies wait at most a short deadline.
"""

import asyncio
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, timezone, tzinfo
from typing import Final

import httpx

log = logging.getLogger(__name__)

DEFAULT_UV_API_URL: Final = "https://api.open-meteo.com"
CREDIT: Final = 'Weather data by <a href="https://open-meteo.com/">Open-Meteo.com</a>'
# A UV index of 3 or more calls for sun protection (WHO: "moderate" and up).
PROTECT_FROM: Final = 3.0
TIMEOUT: Final = 3.0
FIRST_BACKOFF: Final = timedelta(minutes=1)
MAX_BACKOFF: Final = timedelta(hours=1)
# A forecast is fetched again once it is this old (the cache is per location per hour).
FRESH: Final = timedelta(hours=1)
# After a failure, a forecast this old is still better than none.
STALE_OK: Final = timedelta(hours=6)

Key = tuple[float, float]


class UvDataError(ValueError):
    """The service answered something that is not a forecast we can read."""


def rounded(latitude: float, longitude: float) -> Key:
    """Round a location to 0.1° (about 10 km): what is stored, cached and asked for."""
    if not (-90 <= latitude <= 90 and -180 <= longitude <= 180):
        raise ValueError("not a location on Earth")
    lat, lon = round(latitude, 1), round(longitude, 1)
    # -0.0 would show as "-0.0" and make a second cache key for the same place.
    return lat + 0.0, (lon if lon != 180.0 else -180.0) + 0.0


@dataclass(frozen=True)
class Forecast:
    """Hourly UV and daily sunsets for one location, with its UTC offset."""

    offset: timedelta  # the location's UTC offset (timezone=auto)
    hours: tuple[tuple[datetime, float], ...]  # (start of the hour in UTC, UV index)
    sunsets: tuple[tuple[date, datetime], ...]  # (local date, sunset in UTC)

    def day(self, local_date: date) -> "DayUv | None":
        """Summarise one local day, or None when the forecast does not cover it."""
        tz = timezone(self.offset)
        hours = [(t, uv) for t, uv in self.hours if t.astimezone(tz).date() == local_date]
        if not hours:
            return None
        sunset = next((s for d, s in self.sunsets if d == local_date), None)
        return DayUv(tz=tz, hours=tuple(hours), sunset=sunset)


@dataclass(frozen=True)
class DayUv:
    """One local day's UV: the hours, the peak, and when protection matters."""

    tz: timezone
    hours: tuple[tuple[datetime, float], ...]
    sunset: datetime | None

    @property
    def peak(self) -> float:
        return max(uv for _, uv in self.hours)

    def window(self) -> tuple[time, time]:
        """Local hours when UV is 3 or more (first start to last end); else the peak hour.

        Policy: one span, from the first hour at 3+ to the end of the last one, because
        a cloud at 13:00 does not make 13:00 a good time to skip sunscreen.
        """
        strong = [t for t, uv in self.hours if uv >= PROTECT_FROM]
        if not strong:
            strong = [max(self.hours, key=lambda h: h[1])[0]]
        start = strong[0].astimezone(self.tz)
        end = (strong[-1] + timedelta(hours=1)).astimezone(self.tz)
        return start.time(), end.time()

    def uv_at(self, when: datetime) -> float | None:
        """The UV index for the hour containing `when`, if the day has it."""
        for start, uv in self.hours:
            if start <= when < start + timedelta(hours=1):
                return uv
        return None

    def strong_after(self, when: datetime) -> bool:
        """Whether UV is 3 or more at any hour from the one containing `when` on."""
        return any(
            uv >= PROTECT_FROM for start, uv in self.hours if start + timedelta(hours=1) > when
        )


def peak_text(peak: float) -> str:
    """A UV index as people read it: a whole number (half up), at least 0."""
    return str(max(0, math.floor(peak + 0.5)))


def uv_line(day: DayUv) -> str:
    """ "UV up to 7 today, strongest 12:00–15:00"."""
    start, end = day.window()
    return f"UV up to {peak_text(day.peak)} today, strongest {start:%H:%M}–{end:%H:%M}"


def parse_forecast(data: object) -> Forecast:
    """Read Open-Meteo's JSON (hourly uv_index, daily sunset, timezone=auto).

    Times come as local ISO strings without an offset; `utc_offset_seconds` says which.
    Hours with no value (null) are left out. Raises UvDataError on anything else.
    """
    try:
        _need(isinstance(data, dict))
        assert isinstance(data, dict)  # for mypy; _need raised otherwise
        offset = timedelta(seconds=int(data["utc_offset_seconds"]))
        tz = timezone(offset)
        hourly, daily = data["hourly"], data.get("daily") or {}
        _need(isinstance(hourly, dict) and isinstance(daily, dict))
        times, values = hourly["time"], hourly["uv_index"]
        _need(isinstance(times, list) and isinstance(values, list))
        _need(len(times) == len(values))
        hours = tuple(
            (datetime.fromisoformat(t).replace(tzinfo=tz).astimezone(UTC), float(v))
            for t, v in zip(times, values, strict=True)
            if v is not None
        )
        days, sunsets = daily.get("time") or [], daily.get("sunset") or []
        _need(isinstance(days, list) and isinstance(sunsets, list))
        sunset_list = tuple(
            (date.fromisoformat(d), datetime.fromisoformat(s).replace(tzinfo=tz).astimezone(UTC))
            for d, s in zip(days, sunsets, strict=False)
            if isinstance(d, str) and isinstance(s, str)
        )
    except (AttributeError, KeyError, TypeError, ValueError, OverflowError) as exc:
        raise UvDataError(f"not a forecast: {type(exc).__name__}") from None
    if not hours or any(not math.isfinite(uv) or uv < 0 for _, uv in hours):
        raise UvDataError("not a forecast: no usable hours")
    return Forecast(offset=offset, hours=hours, sunsets=sunset_list)


def _need(condition: bool) -> None:
    if not condition:
        raise UvDataError("not a forecast: unexpected shape")


@dataclass
class _Entry:
    forecast: Forecast
    fetched_at: datetime


class UvClient:
    """Fetches and caches forecasts; never raises, never hammers a failing service."""

    def __init__(
        self,
        base_url: str,
        *,
        clock: Callable[[], datetime],
        timeout: float = TIMEOUT,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.clock = clock
        self.timeout = timeout
        self._client: httpx.AsyncClient | None = None
        self._cache: dict[Key, _Entry] = {}
        self._failed_until: dict[Key, datetime] = {}
        self._failures: dict[Key, int] = {}
        self._inflight: dict[Key, asyncio.Task[Forecast | None]] = {}

    async def close(self) -> None:
        """Close the HTTP client (at shutdown)."""
        for task in list(self._inflight.values()):
            task.cancel()
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def cached(
        self, latitude: float, longitude: float, *, max_age: timedelta = FRESH
    ) -> Forecast | None:
        """A forecast fetched less than `max_age` ago (longer while the service is failing).

        Never does I/O: this is what the dispatcher reads while it holds claims.
        """
        key = rounded(latitude, longitude)
        entry = self._cache.get(key)
        if entry is None:
            return None
        age = self.clock() - entry.fetched_at
        if age < max_age or (key in self._failed_until and age <= STALE_OK):
            return entry.forecast
        return None

    async def forecast(
        self, latitude: float, longitude: float, *, deadline: float | None = None
    ) -> Forecast | None:
        """Return the cached forecast, or fetch it; wait at most `deadline` seconds.

        A fetch that outlives the deadline carries on in the background and fills the
        cache for next time. None when nothing usable is at hand.
        """
        key = rounded(latitude, longitude)
        found = self.cached(*key)
        if found is not None:
            return found
        now = self.clock()
        if now < self._failed_until.get(key, now):
            return None  # backing off: don't ask again yet
        task = self._inflight.get(key)
        if task is None:
            task = asyncio.get_running_loop().create_task(self._fetch(key))
            self._inflight[key] = task
            task.add_done_callback(lambda _t: self._inflight.pop(key, None))
        if deadline is None:
            return await asyncio.shield(task)
        try:
            return await asyncio.wait_for(asyncio.shield(task), deadline)
        except TimeoutError:
            return None

    async def _fetch(self, key: Key) -> Forecast | None:
        params = {
            "latitude": f"{key[0]:.1f}",
            "longitude": f"{key[1]:.1f}",
            "hourly": "uv_index",
            "daily": "uv_index_max,sunset",
            "timezone": "auto",
            "forecast_days": "2",
        }
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self.timeout)
        try:
            response = await self._client.get(f"{self.base_url}/v1/forecast", params=params)
            response.raise_for_status()
            forecast = parse_forecast(response.json())
        except Exception as exc:  # whatever went wrong, the callers carry on without UV
            self._failed(key, exc)
            return None
        self._cache[key] = _Entry(forecast, self.clock())
        self._failed_until.pop(key, None)
        self._failures.pop(key, None)
        self._forget_old()
        return forecast

    def _failed(self, key: Key, exc: Exception) -> None:
        failures = self._failures.get(key, 0) + 1
        self._failures[key] = failures
        wait = min(FIRST_BACKOFF * 2 ** min(failures - 1, 10), MAX_BACKOFF)
        self._failed_until[key] = self.clock() + wait
        log.warning(
            "UV forecast for %s failed (%s); not asking again for %d s",
            key,
            type(exc).__name__,
            wait.total_seconds(),
        )

    def _forget_old(self) -> None:
        """Drop entries too old to serve, so the cache stays as small as the active places."""
        now = self.clock()
        for key in [k for k, e in self._cache.items() if now - e.fetched_at > STALE_OK]:
            del self._cache[key]


def reapply_times(
    start: datetime,
    *,
    day: DayUv | None,
    local_end: datetime,
    every: timedelta = timedelta(hours=2),
) -> list[datetime]:
    """When to remind someone outdoors to reapply, from `start` (UTC) on.

    Policy: every `every` after `start`, at times when the UV index is 3 or more, until
    the UV stays below 3 for the rest of the day or the sun sets. Without a forecast:
    every `every` until `local_end` (16:00 local).
    """
    times: list[datetime] = []
    at = start + every
    while True:
        if day is None:
            if at > local_end:
                return times
            times.append(at)
        else:
            if (day.sunset is not None and at >= day.sunset) or not day.strong_after(at):
                return times
            if at.astimezone(day.tz).date() != start.astimezone(day.tz).date():
                return times
            if (day.uv_at(at) or 0.0) >= PROTECT_FROM:
                times.append(at)
        at += every


def describe_times(times: Sequence[datetime], tz: tzinfo) -> str:
    """ "12:00, 14:00 and 16:00" in the user's zone."""
    shown = [f"{t.astimezone(tz):%H:%M}" for t in times]
    if len(shown) <= 1:
        return "".join(shown)
    return ", ".join(shown[:-1]) + " and " + shown[-1]
