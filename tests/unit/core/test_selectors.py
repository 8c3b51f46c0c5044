"""Shard selectors: the API server's label-selector grammar, matched as the API server does, named stably."""

from __future__ import annotations

import pytest

from reconciler.core.selectors import SelectorError, parse_selector

SHARD_A = {"canary.atze.io/shard": "a", "team": "shop"}


@pytest.mark.parametrize(
    ("selector", "labels", "matches"),
    [
        pytest.param("canary.atze.io/shard=a", SHARD_A, True, id="equals"),
        pytest.param("canary.atze.io/shard==a", SHARD_A, True, id="double-equals"),
        pytest.param("canary.atze.io/shard=b", SHARD_A, False, id="equals-other-value"),
        pytest.param("canary.atze.io/shard=a", {}, False, id="equals-without-label"),
        pytest.param("canary.atze.io/shard!=b", SHARD_A, True, id="not-equals"),
        pytest.param("canary.atze.io/shard!=b", {}, True, id="not-equals-without-label"),
        pytest.param("canary.atze.io/shard in (a, b)", SHARD_A, True, id="in"),
        pytest.param("canary.atze.io/shard notin (a,b)", SHARD_A, False, id="notin"),
        pytest.param("canary.atze.io/shard notin (b)", {}, True, id="notin-without-label"),
        pytest.param("team", SHARD_A, True, id="exists"),
        pytest.param("!team", SHARD_A, False, id="does-not-exist"),
        pytest.param("!owner", SHARD_A, True, id="does-not-exist-absent"),
        pytest.param("team=shop,canary.atze.io/shard in (a,c)", SHARD_A, True, id="all-requirements"),
        pytest.param("team=shop, canary.atze.io/shard=c", SHARD_A, False, id="one-requirement-fails"),
        pytest.param("tier>2", {"tier": "3"}, True, id="greater-than"),
        pytest.param("tier<2", {"tier": "x"}, False, id="less-than-not-a-number"),
        pytest.param("team=", {"team": ""}, True, id="empty-value"),
        pytest.param("", SHARD_A, True, id="empty-selects-everything"),
    ],
)
def test_a_selector_matches_labels_as_the_api_server_does(
    selector: str, labels: dict[str, str], matches: bool
) -> None:
    assert parse_selector(selector).matches(labels) is matches


@pytest.mark.parametrize(
    ("selector", "complaint"),
    [
        pytest.param("shard=a,", "empty requirement", id="stray-comma"),
        pytest.param("shard in ()", "at least one value", id="empty-set"),
        pytest.param("shard=a b", "is not a requirement", id="space-in-value"),
        pytest.param("-shard=a", "label key '-shard'", id="key-starts-with-dash"),
        pytest.param("Canary.IO/shard=a", "DNS subdomain", id="uppercase-prefix"),
        pytest.param(f"shard={'x' * 64}", "at most 63", id="value-too-long"),
        pytest.param("shard=a;b", "label value 'a;b'", id="bad-character"),
        pytest.param("shard >= 1", "is not a requirement", id="unknown-operator"),
    ],
)
def test_an_invalid_selector_says_which_part_is_wrong(selector: str, complaint: str) -> None:
    with pytest.raises(SelectorError, match=complaint):
        parse_selector(selector)


def test_spellings_of_the_same_selection_share_the_canonical_form_and_digest() -> None:
    first = parse_selector("team = shop, canary.atze.io/shard in (b,a)")
    second = parse_selector("canary.atze.io/shard in (a, b),team==shop")
    assert str(first) == str(second) == "canary.atze.io/shard in (a,b),team=shop"
    assert first.digest() == second.digest()
    assert first.digest() != parse_selector("canary.atze.io/shard in (a,c),team=shop").digest()
    assert parse_selector(str(first)) == first
