"""Pulumi's update locks, and the deletion of those that are provably stale, in a `file://` or an `s3://`
backend (another backend: logged and left alone).

A lock left behind keeps its stack busy forever, so it is deleted, but only when no update can hold it any
more: held by a process this replica killed; at start, written before this replica acquired its Lease (by a
previous leader, which can no longer act); for a busy stack, held by a process of this host that is gone.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import urlparse

from reconciler.adapters.pulumi.s3 import S3Bucket, S3UnavailableError

log = logging.getLogger(__name__)

_LOCKS_PREFIX = ".pulumi/locks/"
# A Pulumi lock is about 150 bytes of JSON.
_MAX_LOCK_BYTES = 64 * 1024


@dataclass(frozen=True)
class StackLock:
    """A Pulumi update lock (`.pulumi/locks/[<org>/<project>/]<stack>/<id>.json`): who holds it (the `pulumi`
    process) and since when; what cannot be read is None."""

    key: str
    locked_at: datetime.datetime | None
    pid: int | None = None
    hostname: str | None = None

    @property
    def stack(self) -> str:
        return PurePosixPath(self.key).parent.name


def parse_lock(key: str, content: bytes) -> StackLock:
    """A lock as Pulumi writes it: `{"pid", "username", "hostname", "timestamp"}`, the time in RFC 3339 with
    nanoseconds and an offset (Go's time.Time). A time without an offset is unreadable, not guessed."""
    try:
        document = json.loads(content)
    except ValueError:
        document = None
    fields = document if isinstance(document, dict) else {}
    pid, hostname, locked_at = fields.get("pid"), fields.get("hostname"), fields.get("timestamp")
    return StackLock(
        key=key,
        locked_at=_aware_time(locked_at) if isinstance(locked_at, str) else None,
        pid=pid if isinstance(pid, int) and not isinstance(pid, bool) else None,
        hostname=hostname if isinstance(hostname, str) else None,
    )


def _aware_time(text: str) -> datetime.datetime | None:
    try:
        moment = datetime.datetime.fromisoformat(text.strip())
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None


def kept_at_start(lock: StackLock, acquired_at: datetime.datetime | None) -> str | None:
    """Why a lock found at start is kept; None if it is provably stale: written before this replica acquired
    the Lease (by a previous leader, which can no longer act). Without leader election (`acquired_at` None)
    this replica is the only one, so every lock of its stacks is stale."""
    if acquired_at is None:
        return None
    if lock.locked_at is None:
        return "its time cannot be read: delete it by hand once no `pulumi` update of the stack runs"
    if lock.locked_at >= acquired_at.astimezone(datetime.UTC):
        return "written after this replica acquired its Lease: an update of another replica may hold it"
    return None


def kept_after_kill(lock: StackLock, hostname: str, killed_pids: Collection[int]) -> str | None:
    """Why a lock of a killed step's stack is kept; None if one of the processes this replica killed held it
    (they are gone, so it is stale)."""
    if lock.hostname == hostname and lock.pid in killed_pids:
        return None
    return "not held by a process this replica killed"


def kept_while_holder_lives(lock: StackLock, hostname: str) -> str | None:
    """Why a lock of a busy stack is kept; None if a process of this host held it and is gone (a `pulumi`
    run killed from outside, or one that died when the backend vanished): no update can hold it any more.
    A pid that now belongs to another process keeps the lock, on the safe side."""
    if lock.hostname != hostname or lock.pid is None:
        return "held by a process of another host (or of unknown pid)"
    try:
        os.kill(lock.pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass
    return "its holder still runs"


class _FileLocks:
    """The same calls as S3Bucket, on a `file://` backend's folder."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def keys(self, prefix: str) -> Iterator[str]:
        folder = self.root / prefix
        return (
            (path.relative_to(self.root).as_posix() for path in folder.rglob("*.json"))
            if folder.exists()
            else iter(())
        )

    def get(self, key: str, max_bytes: int) -> bytes:
        with (self.root / key).open("rb") as file:
            content = file.read(max_bytes + 1)
        if len(content) > max_bytes:
            raise OSError(f"{key} holds more than {max_bytes} bytes")
        return content

    def delete(self, key: str) -> None:
        (self.root / key).unlink(missing_ok=True)

    def close(self) -> None:
        pass


def _read_lock(store: _FileLocks | S3Bucket, key: str) -> StackLock:
    try:
        return parse_lock(key, store.get(key, max_bytes=_MAX_LOCK_BYTES))
    except (OSError, S3UnavailableError) as error:
        log.warning("Failed to read stack lock", extra={"key": key, "detail": str(error)})
        return StackLock(key=key, locked_at=None)


def _lock_store(backend_url: str) -> _FileLocks | S3Bucket:
    parsed = urlparse(backend_url)
    if parsed.scheme == "file":
        return _FileLocks(Path(parsed.path))
    if parsed.scheme == "s3":
        return S3Bucket(backend_url)
    raise S3UnavailableError(f"{parsed.scheme}:// backends are not supported; clear their locks by hand")


def clear_locks(
    backend_url: str, stack_names: Collection[str], kept: Callable[[StackLock], str | None]
) -> int:
    """Deletes the locks of these stacks for which `kept` gives no reason to keep them; logs each and returns
    how many it deleted."""
    try:
        store = _lock_store(backend_url)
    except S3UnavailableError as error:
        log.warning(
            "Left stale stack locks alone: cannot reach the backend's lock objects",
            extra={"detail": str(error)},
        )
        return 0
    deleted = 0
    try:
        keys = [key for key in store.keys(_LOCKS_PREFIX) if PurePosixPath(key).parent.name in stack_names]
        for key in keys:
            lock = _read_lock(store, key)
            reason = kept(lock)
            fields = {
                "stack": lock.stack,
                "locked_at": lock.locked_at.isoformat() if lock.locked_at else None,
                "key": key,
            }
            if reason is None:
                store.delete(key)
                deleted += 1
                log.info("Deleted stale stack lock", extra=fields)
            else:
                log.warning("Kept stack lock", extra={**fields, "reason": reason})
    except S3UnavailableError as error:
        log.warning("Failed to clear stale stack locks", extra={"detail": str(error)})
    finally:
        store.close()
    return deleted
