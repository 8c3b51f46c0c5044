"""Stale Pulumi locks: the S3 requests are signed as AWS documents, the backend URL is read as gocloud.dev
reads it, and clearing removes the locks of this shard's stacks only (file backend here; the s3:// backend
against a real S3 server in tests/integration/test_shards.py)."""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest

from reconciler.adapters.pulumi_stacks import PulumiSettings, PulumiStacks
from reconciler.adapters.s3 import (
    EMPTY_PAYLOAD_SHA256,
    Credentials,
    S3UnavailableError,
    environment_credentials,
    s3_location,
    signed_headers,
)

# The examples of AWS's "Signature Version 4 for Amazon S3" documentation (GET Object, ListObjects).
EXAMPLE_CREDENTIALS = Credentials("AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")
EXAMPLE_TIME = datetime.datetime(2013, 5, 24, tzinfo=datetime.UTC)


@pytest.mark.parametrize(
    ("url", "headers", "signature"),
    [
        pytest.param(
            "https://examplebucket.s3.amazonaws.com/test.txt",
            {"Range": "bytes=0-9", "x-amz-content-sha256": EMPTY_PAYLOAD_SHA256},
            "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41",
            id="get-object",
        ),
        pytest.param(
            "https://examplebucket.s3.amazonaws.com/?max-keys=2&prefix=J",
            {"x-amz-content-sha256": EMPTY_PAYLOAD_SHA256},
            "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7",
            id="list-objects",
        ),
    ],
)
def test_requests_are_signed_as_the_aws_documentation_signs_them(
    url: str, headers: dict[str, str], signature: str
) -> None:
    signed = signed_headers(
        "GET", url, credentials=EXAMPLE_CREDENTIALS, region="us-east-1", now=EXAMPLE_TIME, headers=headers
    )
    assert signed["authorization"].endswith(f"Signature={signature}")
    assert "Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request" in signed["authorization"]


@pytest.mark.parametrize(
    ("backend_url", "base_url", "region", "prefix"),
    [
        pytest.param(
            "s3://state?endpoint=http://127.0.0.1:9000&use_path_style=true&region=eu-west-1",
            "http://127.0.0.1:9000/state",
            "eu-west-1",
            "",
            id="endpoint-path-style",
        ),
        pytest.param(
            "s3://state/canaryapp?endpoint=127.0.0.1:9000&disableSSL=true&s3ForcePathStyle=true",
            "http://127.0.0.1:9000/state",
            "us-east-1",
            "canaryapp/",
            id="v1-parameters-and-prefix",
        ),
        pytest.param("s3://state", "https://state.s3.us-east-1.amazonaws.com", "us-east-1", "", id="aws"),
    ],
)
def test_the_backend_url_is_read_as_gocloud_reads_it(
    backend_url: str, base_url: str, region: str, prefix: str
) -> None:
    location = s3_location(backend_url, environ={})
    assert (location.base_url, location.region, location.prefix) == (base_url, region, prefix)


def test_without_static_credentials_the_bucket_is_unavailable_not_guessed() -> None:
    with pytest.raises(S3UnavailableError, match="AWS_ACCESS_KEY_ID"):
        environment_credentials({})


def lock(root: Path, stack: str, lock_id: str = "0a1b") -> Path:
    path = root / ".pulumi" / "locks" / "organization" / "canaryapp" / stack / f"{lock_id}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("{}")
    return path


def test_clearing_removes_only_the_locks_of_this_shards_stacks(tmp_path: Path) -> None:
    mine, another_shards = lock(tmp_path, "default.web"), lock(tmp_path, "default.shop")
    stacks = PulumiStacks(PulumiSettings(f"file://{tmp_path}", str(tmp_path / "w"), str(tmp_path / "h")), 1)
    try:
        assert stacks.clear_stale_locks({"default.web", "default.api"}) == 1
        assert not mine.exists()
        assert another_shards.exists()
        assert stacks.clear_stale_locks({"default.web"}) == 0
    finally:
        stacks.close()


def test_a_backend_whose_locks_cannot_be_reached_is_left_alone(caplog: pytest.LogCaptureFixture) -> None:
    stacks = PulumiStacks(PulumiSettings("gs://state", "/nonexistent/w", "/nonexistent/h"), 1)
    try:
        assert stacks.clear_stale_locks({"default.web"}) == 0
    finally:
        stacks.close()
    assert "Left stale stack locks alone" in caplog.text
