"""Time as the core sees it: passed in, written to the status as RFC 3339 seconds, read back from there."""

from __future__ import annotations

import datetime


def timestamp(moment: datetime.datetime) -> str:
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_timestamp(value: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))


def seconds_since(value: str | None, now: datetime.datetime) -> float:
    if value is None:
        return float("inf")
    return (now - parse_timestamp(value)).total_seconds()
