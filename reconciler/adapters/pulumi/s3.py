"""Just enough S3 to clear stale Pulumi locks in an `s3://` backend: list keys under a prefix, read a key (a
lock's holder and time), delete a key.

Pulumi keeps the state itself (through gocloud.dev); the reconciler only needs to remove the lock objects a
killed leader left, and the AWS SDK is a large dependency for three calls. Every answer is bounded in time
(the client's timeout) and in size (`max_bytes`). Requests are signed with Signature Version 4 from static
credentials in the environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, optionally AWS_SESSION_TOKEN);
other credential sources (profiles, roles, instance metadata) are not read here.
The backend URL is read as gocloud.dev reads it: `s3://BUCKET[/PREFIX]?endpoint=…&region=…&use_path_style=…`
(also the older `s3ForcePathStyle` and `disableSSL`).
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from urllib.parse import parse_qs, quote, urlparse
from xml.etree import ElementTree

import httpx

EMPTY_PAYLOAD_SHA256 = hashlib.sha256(b"").hexdigest()
_S3_NAMESPACE = "{http://s3.amazonaws.com/doc/2006-03-01/}"
_TRUE = ("true", "1", "t", "yes")
# A ListObjectsV2 page of 1000 keys is a few hundred KB; a Pulumi lock a few hundred bytes.
MAX_RESPONSE_BYTES = 4 * 1024 * 1024


class S3UnavailableError(Exception):
    """The bucket cannot be reached with what this process knows (no static credentials, bad URL)."""


@dataclass(frozen=True)
class Credentials:
    access_key: str
    secret_key: str
    session_token: str | None = None


@dataclass(frozen=True)
class S3Location:
    """Where a bucket's objects are addressed: `base_url` + key (path style or a virtual host)."""

    base_url: str
    region: str
    prefix: str


def s3_location(backend_url: str, environ: Mapping[str, str] = os.environ) -> S3Location:
    parsed = urlparse(backend_url)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise S3UnavailableError(f"{parsed.scheme}://… is not an s3://BUCKET URL")
    query = {key: values[-1] for key, values in parse_qs(parsed.query).items()}
    bucket = parsed.netloc
    region = (
        query.get("region") or environ.get("AWS_REGION") or environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    )
    insecure = any(query.get(key, "").lower() in _TRUE for key in ("disable_https", "disableSSL"))
    path_style = any(query.get(key, "").lower() in _TRUE for key in ("use_path_style", "s3ForcePathStyle"))
    endpoint = query.get("endpoint")
    if endpoint and "://" not in endpoint:
        endpoint = f"{'http' if insecure else 'https'}://{endpoint}"
    if endpoint is None:
        endpoint = f"https://s3.{region}.amazonaws.com"
    if path_style:
        base_url = f"{endpoint.rstrip('/')}/{bucket}"
    else:
        scheme, _, host = endpoint.partition("://")
        base_url = f"{scheme}://{bucket}.{host.rstrip('/')}"
    prefix = parsed.path.strip("/")
    return S3Location(base_url=base_url, region=region, prefix=f"{prefix}/" if prefix else "")


def environment_credentials(environ: Mapping[str, str] = os.environ) -> Credentials:
    access_key, secret_key = environ.get("AWS_ACCESS_KEY_ID"), environ.get("AWS_SECRET_ACCESS_KEY")
    if not access_key or not secret_key:
        raise S3UnavailableError("AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are not set")
    return Credentials(access_key, secret_key, environ.get("AWS_SESSION_TOKEN") or None)


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


def _encode(text: str, safe: str = "-_.~") -> str:
    return quote(text, safe=safe)


def signed_headers(
    method: str,
    url: str,
    *,
    credentials: Credentials,
    region: str,
    now: datetime.datetime,
    service: str = "s3",
    payload_sha256: str = EMPTY_PAYLOAD_SHA256,
    headers: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The headers of a Signature Version 4 request: `headers` plus Host, X-Amz-Date and Authorization."""
    parsed = urlparse(url)
    amz_date = now.astimezone(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
    all_headers = {
        "host": parsed.netloc,
        "x-amz-date": amz_date,
        **{k.lower(): v for k, v in (headers or {}).items()},
    }
    if credentials.session_token:
        all_headers["x-amz-security-token"] = credentials.session_token
    query = sorted(
        (_encode(key), _encode(value))
        for key, values in parse_qs(parsed.query, keep_blank_values=True).items()
        for value in values
    )
    names = sorted(all_headers)
    canonical_request = "\n".join(
        [
            method,
            _encode(parsed.path or "/", safe="/-_.~%"),
            "&".join(f"{key}={value}" for key, value in query),
            "".join(f"{name}:{' '.join(all_headers[name].split())}\n" for name in names),
            ";".join(names),
            payload_sha256,
        ]
    )
    scope = f"{amz_date[:8]}/{region}/{service}/aws4_request"
    string_to_sign = "\n".join(
        ["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical_request.encode()).hexdigest()]
    )
    key = f"AWS4{credentials.secret_key}".encode()
    for part in (amz_date[:8], region, service, "aws4_request"):
        key = _hmac(key, part)
    signature = hmac.new(key, string_to_sign.encode(), hashlib.sha256).hexdigest()
    all_headers["authorization"] = (
        f"AWS4-HMAC-SHA256 Credential={credentials.access_key}/{scope}, "
        f"SignedHeaders={';'.join(names)}, Signature={signature}"
    )
    return all_headers


class S3Bucket:
    """One bucket (under the backend URL's prefix); keys passed in and returned include that prefix."""

    def __init__(
        self, backend_url: str, environ: Mapping[str, str] = os.environ, timeout: float = 10.0
    ) -> None:
        self.location = s3_location(backend_url, environ)
        self.credentials = environment_credentials(environ)
        self._client = httpx.Client(timeout=timeout)

    def close(self) -> None:
        self._client.close()

    def _request(self, method: str, path: str, query: str = "", max_bytes: int = MAX_RESPONSE_BYTES) -> bytes:
        """The answer's body, read up to `max_bytes` (a longer one is an error, not truncated)."""
        url = f"{self.location.base_url}/{_encode(path, safe='/-_.~')}" + (f"?{query}" if query else "")
        headers = signed_headers(
            method,
            url,
            credentials=self.credentials,
            region=self.location.region,
            now=datetime.datetime.now(datetime.UTC),
            headers={"x-amz-content-sha256": EMPTY_PAYLOAD_SHA256},
        )
        what = f"{method} {self.location.base_url}/{path}"
        try:
            with self._client.stream(method, url, headers=headers) as response:
                if response.status_code >= 300:
                    raise S3UnavailableError(f"{what} answered HTTP {response.status_code}")
                body = bytearray()
                for chunk in response.iter_bytes():
                    body += chunk
                    if len(body) > max_bytes:
                        raise S3UnavailableError(f"{what} answered more than {max_bytes} bytes")
        except httpx.HTTPError as error:
            raise S3UnavailableError(f"{what} failed: {error}") from error
        return bytes(body)

    def keys(self, prefix: str) -> Iterator[str]:
        """Every key under `prefix` (relative to the backend URL's prefix), with ListObjectsV2 pages."""
        token: str | None = None
        while True:
            query = f"list-type=2&prefix={_encode(self.location.prefix + prefix)}"
            if token:
                query += f"&continuation-token={_encode(token)}"
            page = ElementTree.fromstring(self._request("GET", "", query))
            for contents in page.iter(f"{_S3_NAMESPACE}Contents"):
                yield contents.findtext(f"{_S3_NAMESPACE}Key") or ""
            token = page.findtext(f"{_S3_NAMESPACE}NextContinuationToken")
            if page.findtext(f"{_S3_NAMESPACE}IsTruncated") != "true" or not token:
                return

    def get(self, key: str, max_bytes: int = MAX_RESPONSE_BYTES) -> bytes:
        """The content of the object at `key` (as `keys` returns it)."""
        return self._request("GET", key, max_bytes=max_bytes)

    def delete(self, key: str) -> None:
        self._request("DELETE", key)
