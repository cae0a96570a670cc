"""Published versions of the guide: publish a folder, follow the latest, roll back.

The files in `content/` are the authoring format; what users see is the latest version
published to the database. Each version keeps the normalised text of every file, so any
version can be rebuilt exactly, on any bot process, and republished later (a rollback).
"""

import asyncio
import contextlib
import hashlib
import json
import logging
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import Any, Final

from sqlalchemy import Connection, Engine, Table, func, select
from sqlalchemy.exc import IntegrityError
from telegram.ext import Job, JobQueue

from miliabot_tg.content import ContentError, Guide, guide_from_sources, source_files, validate
from miliabot_tg.db import reading
from miliabot_tg.models import ContentFile, ContentVersion, utcnow

log = logging.getLogger(__name__)

VERSIONS: Table = ContentVersion.__table__  # type: ignore[attr-defined]
FILES: Table = ContentFile.__table__  # type: ignore[attr-defined]

# How often a running bot looks for a newly published version: a cheap indexed read.
POLL_SECONDS: Final = 3.0
LIVE_GUIDE_JOB: Final = "live-guide"
# Two publishers at once both take the next number; the loser tries again this often.
_RECORD_ATTEMPTS: Final = 3
_BY_LENGTH: Final = 128


class UnknownVersionError(LookupError):
    """No published version has this number."""


@dataclass(frozen=True)
class Changes:
    """What a version changed from the one before it, by snippet id."""

    added: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    tips: tuple[str, ...] = ()  # tip kinds added, changed or removed
    titles: Mapping[str, str] = field(default_factory=dict)  # of every id above
    rollback_of: int | None = None  # republished from this older version

    def title(self, snippet_id: str) -> str:
        """The snippet's title, or its id when it has none recorded."""
        return self.titles.get(snippet_id, snippet_id)

    def to_json(self) -> str:
        """The form stored in the database."""
        return json.dumps(
            {
                "added": list(self.added),
                "changed": list(self.changed),
                "removed": list(self.removed),
                "tips": list(self.tips),
                "titles": dict(self.titles),
                "rollback_of": self.rollback_of,
            },
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str) -> "Changes":
        """Read the stored form back; unknown keys are ignored."""
        data: dict[str, Any] = json.loads(text)
        return cls(
            added=tuple(data.get("added", ())),
            changed=tuple(data.get("changed", ())),
            removed=tuple(data.get("removed", ())),
            tips=tuple(data.get("tips", ())),
            titles=dict(data.get("titles", {})),
            rollback_of=data.get("rollback_of"),
        )

    def summary(self) -> str:
        """One line for the command line: "added: a, b; changed: c"."""
        parts = [
            f"{name}: {', '.join(ids)}"
            for name, ids in (
                ("added", self.added),
                ("changed", self.changed),
                ("removed", self.removed),
                ("tips changed", self.tips),
            )
            if ids
        ]
        return "; ".join(parts) or "no snippet changes"


@dataclass(frozen=True)
class Version:
    """One published version, without its files."""

    number: int
    fingerprint: str
    published_by: str
    published_at: datetime
    changes: Changes


@dataclass(frozen=True)
class Published:
    """The outcome of a publish: the latest version, and whether this call recorded it."""

    version: Version
    created: bool


# --- fingerprints and differences (pure) ------------------------------------------------------


def fingerprint(sources: Mapping[str, str]) -> str:
    """A stable SHA-256 of the files: their paths and normalised texts, in path order."""
    digest = hashlib.sha256()
    for path in sorted(sources):
        for part in (path, sources[path]):
            data = part.encode("utf-8")
            # Lengths first, so no two different sets of files hash the same bytes.
            digest.update(len(data).to_bytes(8, "big"))
            digest.update(data)
    return digest.hexdigest()


def folder_fingerprint(folder: Path) -> str:
    """The fingerprint of a (valid) content folder, as `publish` would record it."""
    return fingerprint(source_files(folder))


def _snippet_id(path: str) -> str | None:
    """Snippet files sit at the top of the folder, named after their id."""
    return None if "/" in path else PurePosixPath(path).stem


def diff(
    old: Mapping[str, str],
    new: Mapping[str, str],
    titles: Mapping[str, str],
    *,
    rollback_of: int | None = None,
) -> Changes:
    """What changed between two versions' files: any difference in a file's text counts."""
    paths = sorted(old.keys() | new.keys())
    added, changed, removed, tips = [], [], [], []
    for path in paths:
        before, after = old.get(path), new.get(path)
        if before == after:
            continue
        snippet_id = _snippet_id(path)
        if snippet_id is None:
            tips.append(PurePosixPath(path).stem)
        elif before is None:
            added.append(snippet_id)
        elif after is None:
            removed.append(snippet_id)
        else:
            changed.append(snippet_id)
    named = {i: titles[i] for i in (*added, *changed, *removed) if i in titles}
    return Changes(tuple(added), tuple(changed), tuple(removed), tuple(tips), named, rollback_of)


# --- reading versions -------------------------------------------------------------------------


def _version(row: Any) -> Version:
    return Version(
        number=row.number,
        fingerprint=row.fingerprint,
        published_by=row.published_by,
        published_at=row.published_at,
        changes=Changes.from_json(row.changes),
    )


def latest_number(conn: Connection) -> int | None:
    """The number of the latest published version, or None before the first."""
    number = conn.execute(select(func.max(VERSIONS.c.number))).scalar()
    return int(number) if number is not None else None


def get_version(conn: Connection, number: int) -> Version | None:
    """The version with this number, or None."""
    row = conn.execute(select(VERSIONS).where(VERSIONS.c.number == number)).first()
    return _version(row) if row is not None else None


def latest_version(conn: Connection) -> Version | None:
    """The latest published version, or None before the first."""
    row = conn.execute(select(VERSIONS).order_by(VERSIONS.c.number.desc()).limit(1)).first()
    return _version(row) if row is not None else None


def history(engine: Engine, *, limit: int | None = None) -> list[Version]:
    """Published versions, newest first."""
    query = select(VERSIONS).order_by(VERSIONS.c.number.desc()).limit(limit)
    with reading(engine).connect() as conn:
        return [_version(row) for row in conn.execute(query)]


def _files(conn: Connection, number: int) -> list[Any]:
    return list(
        conn.execute(
            select(FILES.c.path, FILES.c.snippet_id, FILES.c.title, FILES.c.source)
            .join(VERSIONS, VERSIONS.c.id == FILES.c.version_id)
            .where(VERSIONS.c.number == number)
        )
    )


def version_sources(conn: Connection, number: int) -> dict[str, str]:
    """The files of a version, by path; UnknownVersionError when there is no such version."""
    if get_version(conn, number) is None:
        raise UnknownVersionError(f"there is no content version {number}")
    return {row.path: row.source for row in _files(conn, number)}


def version_guide(conn: Connection, number: int) -> Guide:
    """Rebuild a version's guide; ContentError when this code no longer accepts it."""
    return guide_from_sources(version_sources(conn, number), Path(f"content version {number}"))


def latest_guide(engine: Engine) -> tuple[int, Guide] | None:
    """The latest version's number and guide, or None before the first."""
    with reading(engine).connect() as conn:
        number = latest_number(conn)
        return (number, version_guide(conn, number)) if number is not None else None


# --- publishing -------------------------------------------------------------------------------


def publish(engine: Engine, folder: Path, by: str, *, now: datetime | None = None) -> Published:
    """Validate the folder and record it as a new version, unless it is the latest already.

    An invalid folder raises ContentError with every problem, and nothing is written.
    """
    sources, guide = _checked(folder)
    return _record(engine, sources, guide, by, now or utcnow())


def publish_if_new(
    engine: Engine, folder: Path, by: str, *, now: datetime | None = None
) -> Published | None:
    """Publish the folder only if no version ever had this content.

    This is what a bot does at start-up: a release with new content publishes it, but a
    restart with the same content never undoes a newer publish or a rollback.
    """
    sources, guide = _checked(folder)
    with reading(engine).connect() as conn:
        seen = conn.execute(
            select(VERSIONS.c.number).where(VERSIONS.c.fingerprint == fingerprint(sources))
        ).first()
    if seen is not None:
        return None
    return _record(engine, sources, guide, by, now or utcnow())


def publish_at_start(engine: Engine, folder: Path) -> Published | None:
    """Publish the configured content folder when it is new (see `publish_if_new`)."""
    published = publish_if_new(engine, folder, f"miliabot run on {socket.gethostname()}")
    if published is not None and published.created:
        log.info(
            "published content version %d: %s",
            published.version.number,
            published.version.changes.summary(),
        )
    return published


def rollback(engine: Engine, number: int, by: str, *, now: datetime | None = None) -> Published:
    """Republish an older version as a new one (nothing new when it is the latest already)."""
    with reading(engine).connect() as conn:
        sources = version_sources(conn, number)
    guide = guide_from_sources(sources, Path(f"content version {number}"))
    return _record(engine, sources, guide, by, now or utcnow(), rollback_of=number)


def _checked(folder: Path) -> tuple[dict[str, str], Guide]:
    problems = validate(folder)
    if problems:
        raise ContentError(problems)
    sources = source_files(folder)
    return sources, guide_from_sources(sources, folder)


def _record(
    engine: Engine,
    sources: dict[str, str],
    guide: Guide,
    by: str,
    now: datetime,
    *,
    rollback_of: int | None = None,
) -> Published:
    for attempt in range(_RECORD_ATTEMPTS):
        try:
            with engine.begin() as conn:
                return _record_in(conn, sources, guide, by[:_BY_LENGTH], now, rollback_of)
        except IntegrityError:
            # Another publisher took the same number first; look again at what is latest.
            if attempt == _RECORD_ATTEMPTS - 1:
                raise
    raise AssertionError("unreachable")


def _record_in(
    conn: Connection,
    sources: dict[str, str],
    guide: Guide,
    by: str,
    now: datetime,
    rollback_of: int | None,
) -> Published:
    print_ = fingerprint(sources)
    latest = latest_version(conn)
    if latest is not None and latest.fingerprint == print_:
        return Published(latest, created=False)
    old = _files(conn, latest.number) if latest is not None else []
    titles = {row.snippet_id: row.title for row in old if row.snippet_id and row.title}
    titles.update({s.id: s.title for s in guide.snippets})
    changes = diff({row.path: row.source for row in old}, sources, titles, rollback_of=rollback_of)
    version = Version(
        number=(latest.number if latest is not None else 0) + 1,
        fingerprint=print_,
        published_by=by,
        published_at=now,
        changes=changes,
    )
    key = conn.execute(
        VERSIONS.insert().values(
            number=version.number,
            fingerprint=version.fingerprint,
            published_by=version.published_by,
            published_at=version.published_at,
            changes=changes.to_json(),
        )
    ).inserted_primary_key
    assert key is not None
    conn.execute(
        FILES.insert(),
        [
            {
                "version_id": key[0],
                "path": path,
                "snippet_id": _snippet_id(path),
                "title": _title(guide, _snippet_id(path)),
                "source": text,
            }
            for path, text in sorted(sources.items())
        ],
    )
    return Published(version, created=True)


def _title(guide: Guide, snippet_id: str | None) -> str | None:
    snippet = guide.get(snippet_id) if snippet_id is not None else None
    return snippet.title if snippet is not None else None


# --- following the latest version in a running bot -------------------------------------------


class LiveGuide:
    """The guide a bot serves, following the latest published version within seconds.

    Readers take `current` once and use that Guide for the whole of one answer: a Guide
    is immutable, and a new version replaces it in one reference swap, so nobody ever
    sees half of an update. Until a version is read from the database (none is published,
    or the poller is not running, as in the console), the guide given at start serves.
    A database that fails, or a stored version this code refuses, leaves the guide in
    service as it is, and is logged once.
    """

    def __init__(self, guide: Guide, *, every: float = POLL_SECONDS) -> None:
        # (version number or None for the folder's guide, the guide): swapped as one.
        self._served: tuple[int | None, Guide] = (None, guide)
        self.every = every
        self.engine: Engine | None = None
        self._job: Job[Any] | None = None
        self._busy = False
        self._failing = False
        self._refused: set[int] = set()

    @property
    def current(self) -> Guide:
        """The guide to answer with now."""
        return self._served[1]

    @property
    def version(self) -> int | None:
        """The number of the version in service; None for the guide given at start."""
        return self._served[0]

    def served(self) -> tuple[int | None, Guide]:
        """The version number and guide in service, read together."""
        return self._served

    def __call__(self) -> Guide:
        """The guide to answer with now (for code that takes a guide callable)."""
        return self._served[1]

    def follow(self, engine: Engine, job_queue: JobQueue[Any] | None) -> None:
        """Poll `engine` for new versions every few seconds, first at once."""
        self.engine = engine
        if job_queue is not None and self._job is None:
            # A job of the application's queue: it stops with the application.
            self._job = job_queue.run_repeating(
                self._tick, interval=self.every, first=0, name=LIVE_GUIDE_JOB
            )

    def stop(self) -> None:
        """Stop polling (the guide in service stays)."""
        job, self._job = self._job, None
        if job is not None:
            with contextlib.suppress(Exception):  # the queue may be shut down already
                job.schedule_removal()

    async def _tick(self, _context: Any) -> None:
        await self.poll()

    async def poll(self) -> bool:
        """Look for a new version off the event loop; True when one was swapped in."""
        if self._busy:  # the last look is still waiting for a slow database
            return False
        self._busy = True
        try:
            return await asyncio.to_thread(self.refresh)
        finally:
            self._busy = False

    def refresh(self) -> bool:
        """Swap in the latest version if it is newer than the one in service; never raises."""
        engine = self.engine
        if engine is None:
            return False
        number: int | None = None
        try:
            with reading(engine).connect() as conn:
                number = latest_number(conn)
                if number is None or number == self.version or number in self._refused:
                    self._recovered()
                    return False
                guide = version_guide(conn, number)
        except ContentError as exc:
            assert number is not None
            self._refused.add(number)
            log.error(
                "content version %d is refused, still serving %s: %s",
                number,
                self._describe(),
                "; ".join(str(p) for p in exc.problems[:3]),
            )
            return False
        except Exception:
            if not self._failing:
                self._failing = True
                log.warning(
                    "cannot read content versions, still serving %s",
                    self._describe(),
                    exc_info=True,
                )
            return False
        self._recovered()
        self._served = (number, guide)  # the one swap
        log.info("now serving content version %d", number)
        return True

    def _recovered(self) -> None:
        if self._failing:
            self._failing = False
            log.info("reading content versions again")

    def _describe(self) -> str:
        version = self.version
        return f"version {version}" if version is not None else "the content folder"
