"""Kubernetes label selectors as the reconciler's shards use them: parsed once at start-up (so a typo fails
with a clear error before anything runs), matched against a CanaryApp's labels, and named.

The grammar is the API server's (`k8s.io/apimachinery/pkg/labels.Parse`): comma-separated requirements
`key`, `!key`, `key=value`, `key==value`, `key!=value`, `key in (a,b)`, `key notin (a,b)`, `key>1`, `key<1`.
The same string is passed to list and watch calls, so the API server selects; `matches` answers the same
question for reads by name, which the API server does not filter.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass

_NAME = r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?"
_NAME_RE = re.compile(rf"^{_NAME}$")
_DNS_SUBDOMAIN_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_TOKEN = r"[^\s,!=<>()]+"
_EXISTS = re.compile(rf"^(?P<negated>!?)\s*(?P<key>{_TOKEN})$")
_EQUALITY = re.compile(rf"^(?P<key>{_TOKEN})\s*(?P<op>==|=|!=)\s*(?P<value>{_TOKEN})?$")
_SET = re.compile(rf"^(?P<key>{_TOKEN})\s+(?P<op>in|notin)\s*\((?P<values>[^()]*)\)$")
_NUMERIC = re.compile(rf"^(?P<key>{_TOKEN})\s*(?P<op>[<>])\s*(?P<value>-?\d+)$")
_SPLIT = re.compile(r",(?![^(]*\))")  # commas outside parentheses separate requirements


class SelectorError(ValueError):
    """A selector the API server would reject; the message says which part and why."""


@dataclass(frozen=True)
class Requirement:
    key: str
    operator: str  # exists, !, =, !=, in, notin, >, <
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        present = self.key in labels
        value = labels.get(self.key, "")
        if self.operator == "exists":
            return present
        if self.operator == "!":
            return not present
        if self.operator in ("=", "in"):
            return present and value in self.values
        if self.operator in ("!=", "notin"):
            return not present or value not in self.values
        if not present or not re.fullmatch(r"-?\d+", value):
            return False
        bound = int(self.values[0])
        return int(value) > bound if self.operator == ">" else int(value) < bound

    def __str__(self) -> str:
        if self.operator == "exists":
            return self.key
        if self.operator == "!":
            return f"!{self.key}"
        if self.operator in ("in", "notin"):
            return f"{self.key} {self.operator} ({','.join(self.values)})"
        return f"{self.key}{self.operator}{self.values[0]}"


@dataclass(frozen=True)
class LabelSelector:
    requirements: tuple[Requirement, ...]

    def matches(self, labels: Mapping[str, str] | None) -> bool:
        return all(requirement.matches(labels or {}) for requirement in self.requirements)

    def __str__(self) -> str:
        """The canonical form: requirements sorted by key, values sorted (as the API server prints it)."""
        return ",".join(str(requirement) for requirement in self.requirements)

    def digest(self, length: int = 10) -> str:
        """A short, stable name for this selector: the same selection, however it was spelled, same digest."""
        return hashlib.sha256(str(self).encode()).hexdigest()[:length]


def _check_key(key: str) -> None:
    prefix, slash, name = key.rpartition("/")
    if slash and (not prefix or len(prefix) > 253 or not _DNS_SUBDOMAIN_RE.match(prefix)):
        raise SelectorError(
            f"label key {key!r}: the prefix before '/' must be a DNS subdomain (e.g. canary.io)"
        )
    if len(name) > 63 or not _NAME_RE.match(name):
        raise SelectorError(
            f"label key {key!r}: the name must be at most 63 characters, alphanumerics, '-', '_' or '.', "
            "starting and ending with an alphanumeric"
        )


def _check_value(key: str, value: str) -> str:
    if value and (len(value) > 63 or not _NAME_RE.match(value)):
        raise SelectorError(
            f"label value {value!r} of {key!r}: at most 63 characters, alphanumerics, '-', '_' or '.', "
            "starting and ending with an alphanumeric (or empty)"
        )
    return value


def _requirement(text: str) -> Requirement:
    if found := _SET.match(text):
        key, values = found["key"], [value.strip() for value in found["values"].split(",")]
        if values == [""]:
            raise SelectorError(f"{text!r}: '{found['op']}' needs at least one value in the parentheses")
        _check_key(key)
        return Requirement(key, found["op"], tuple(sorted({_check_value(key, v) for v in values})))
    if found := _EQUALITY.match(text):
        key, operator = found["key"], "=" if found["op"] == "==" else found["op"]
        _check_key(key)
        return Requirement(key, operator, (_check_value(key, found["value"] or ""),))
    if found := _NUMERIC.match(text):
        _check_key(found["key"])
        return Requirement(found["key"], found["op"], (str(int(found["value"])),))
    if found := _EXISTS.match(text):
        _check_key(found["key"])
        return Requirement(found["key"], "!" if found["negated"] else "exists")
    raise SelectorError(
        f"{text!r} is not a requirement: use key, !key, key=value, key!=value, key in (a,b), key notin (a,b)"
    )


def parse_selector(text: str) -> LabelSelector:
    """The selector `text` denotes; an empty text selects everything. Raises SelectorError."""
    parts = [part.strip() for part in _SPLIT.split(text)] if text.strip() else []
    if any(not part for part in parts):
        raise SelectorError(f"{text!r} has an empty requirement (a stray comma)")
    requirements = sorted((_requirement(part) for part in parts), key=lambda r: (r.key, r.operator, r.values))
    return LabelSelector(tuple(requirements))
