"""Bring a job's source to local disk: s3:// from the configured endpoint, or https:// guarded.

A URL from a user must not become a way into the cluster (SSRF). For http(s) sources:
- the worker resolves the name itself and refuses the source if ANY address it resolves to is
  loopback, private (RFC 1918, ULA), link-local, CGNAT, multicast, unspecified, reserved or
  otherwise not globally routable (IPv4 inside IPv6 forms is checked as IPv4) unless the
  address lies in KT_ALLOWED_SOURCE_NETWORKS; cloud metadata addresses are refused always;
- it connects to the address it vetted, sending the original Host header and TLS SNI and
  verifying the certificate against the name, so DNS cannot change between check and use;
- redirects are followed by hand, each one checked like the first, at most a few;
- size is limited by Content-Length and by counting, with connect and read timeouts.
Errors become PermanentJobError (forbidden, bad URL, 4xx, too large) or TransientJobError
(timeouts, 5xx, connections reset) for the consumer's retry decision.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Final
from urllib.parse import urljoin, urlsplit

import urllib3
from botocore.exceptions import BotoCoreError, ClientError

from kube_transcode.addresses import IPAddress as IPAddress
from kube_transcode.addresses import Network
from kube_transcode.addresses import forbidden_reason as forbidden_reason
from kube_transcode_worker.errors import JobCancelledError, PermanentJobError, TransientJobError

log = logging.getLogger(__name__)

Resolver = Callable[[str, int], list[IPAddress]]

CHUNK_BYTES: Final = 1024 * 1024
REDIRECT_STATUSES: Final = frozenset({301, 302, 303, 307, 308})
# Worth retrying although 4xx: the server asks us to come back.
RETRYABLE_CLIENT_STATUSES: Final = frozenset({408, 425, 429})
USER_AGENT: Final = "kube-transcode-worker"


@dataclass(frozen=True)
class FetchResult:
    path: Path
    size_bytes: int
    seconds: float


# ------------------------------------------- the guard (pure; the address rules: kube_transcode)


@dataclass(frozen=True)
class Target:
    """A parsed http(s) URL: where to connect and what to ask for."""

    scheme: str
    host: str
    port: int
    path: str  # path and query, as sent in the request line

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.scheme == "https" else 80
        return host if self.port == default else f"{host}:{self.port}"


def parse_target(url: str, allow_http: bool) -> Target:
    """Check scheme and form of an http(s) URL; PermanentJobError when it cannot be fetched."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise PermanentJobError("BadSourceUrl", f"cannot parse {url!r}: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme != "https" and not (scheme == "http" and allow_http):
        allowed = "https or http" if allow_http else "https"
        raise PermanentJobError("BadSourceUrl", f"scheme {scheme!r} not allowed (use {allowed})")
    if parts.username is not None or parts.password is not None:
        raise PermanentJobError("BadSourceUrl", "credentials in the source URL are not supported")
    if not parts.hostname:
        raise PermanentJobError("BadSourceUrl", f"no host in {url!r}")
    path = parts.path or "/"
    if parts.query:
        path = f"{path}?{parts.query}"
    return Target(
        scheme=scheme,
        host=parts.hostname,
        port=port or (443 if scheme == "https" else 80),
        path=path,
    )


def vet_addresses(
    host: str, addresses: list[IPAddress], allowed: Iterable[Network]
) -> list[IPAddress]:
    """The addresses to connect to; PermanentJobError if any of them is forbidden."""
    if not addresses:
        raise PermanentJobError("SourceUnreachable", f"{host} resolves to no address")
    allowed = tuple(allowed)
    for ip in addresses:
        reason = forbidden_reason(ip, allowed)
        if reason is not None:
            raise PermanentJobError(
                "ForbiddenSourceAddress",
                f"{host} resolves to {ip} ({reason}); sources must be public hosts "
                "unless the worker's KT_ALLOWED_SOURCE_NETWORKS allows the network",
            )
    return addresses


def redirect_url(current: str, status: int, location: str | None) -> str:
    if not location:
        raise PermanentJobError("BadRedirect", f"HTTP {status} without a Location header")
    return urljoin(current, location)


def check_size(declared: int | None, received: int, limit: int) -> None:
    """PermanentJobError once the declared or received size exceeds the limit."""
    size = max(declared or 0, received)
    if size > limit:
        raise PermanentJobError(
            "SourceTooLarge", f"the source is larger than the limit of {limit} bytes"
        )


def status_error(status: int, url: str) -> PermanentJobError | TransientJobError:
    if status >= 500 or status in RETRYABLE_CLIENT_STATUSES:
        return TransientJobError("SourceUnavailable", f"HTTP {status} from {url}")
    if status in (404, 410):
        return PermanentJobError("SourceNotFound", f"HTTP {status} from {url}")
    if status in (401, 403):
        return PermanentJobError("SourceForbidden", f"HTTP {status} from {url}")
    return PermanentJobError("SourceRequestRejected", f"HTTP {status} from {url}")


# ------------------------------------------------------------------------------------- I/O


def resolve(host: str, port: int) -> list[IPAddress]:
    """Every address of a name (or the literal itself), in the resolver's order."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        if exc.errno == socket.EAI_AGAIN:
            raise TransientJobError("SourceUnreachable", f"cannot resolve {host}: {exc}") from None
        raise PermanentJobError("SourceUnreachable", f"cannot resolve {host}: {exc}") from None
    seen: dict[IPAddress, None] = {}
    for _family, _type, _proto, _name, sockaddr in infos:
        # Strip an IPv6 zone ("fe80::1%eth0"); the address itself is what the guard judges.
        seen[ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])] = None
    return list(seen)


def _write_stream(
    chunks: Iterator[bytes],
    out: IO[bytes],
    declared: int | None,
    limit: int,
    cancel: threading.Event,
) -> int:
    received = 0
    for chunk in chunks:
        if cancel.is_set():
            raise JobCancelledError("fetch cancelled")
        received += len(chunk)
        check_size(declared, received, limit)
        out.write(chunk)
    return received


class HttpFetcher:
    def __init__(
        self,
        *,
        allowed_networks: Iterable[Network] = (),
        allow_http: bool = False,
        max_bytes: int,
        connect_timeout: float = 10,
        read_timeout: float = 60,
        max_redirects: int = 5,
        resolver: Resolver = resolve,
    ) -> None:
        self.allowed = tuple(allowed_networks)
        self.allow_http = allow_http
        self.max_bytes = max_bytes
        self.timeout = urllib3.Timeout(connect=connect_timeout, read=read_timeout)
        self.max_redirects = max_redirects
        self.resolver = resolver

    def fetch(self, url: str, dest: Path, cancel: threading.Event) -> int:
        current = url
        for _ in range(self.max_redirects + 1):
            target = parse_target(current, self.allow_http)
            addresses = vet_addresses(
                target.host, self.resolver(target.host, target.port), self.allowed
            )
            response = self._request(target, addresses)
            try:
                if response.status in REDIRECT_STATUSES:
                    current = redirect_url(
                        current, response.status, response.headers.get("Location")
                    )
                    log.info("source redirects to %s", current)
                    continue
                if response.status != 200:
                    raise status_error(response.status, current)
                declared = _content_length(response.headers.get("Content-Length"))
                check_size(declared, 0, self.max_bytes)
                with dest.open("wb") as out:
                    return _write_stream(
                        response.stream(CHUNK_BYTES, decode_content=False),
                        out,
                        declared,
                        self.max_bytes,
                        cancel,
                    )
            except (urllib3.exceptions.HTTPError, OSError) as exc:
                raise TransientJobError("SourceUnavailable", f"reading {current}: {exc}") from None
            finally:
                response.release_conn()
        raise PermanentJobError("TooManyRedirects", f"more than {self.max_redirects} redirects")

    def _request(self, target: Target, addresses: list[IPAddress]) -> Any:
        """GET from the first vetted address that answers; never from a re-resolved name."""
        last_error: Exception | None = None
        for ip in addresses:
            pool = self._pool(target, ip)
            try:
                return pool.urlopen(
                    "GET",
                    target.path,
                    headers={
                        "Host": target.host_header,
                        "User-Agent": USER_AGENT,
                        "Accept-Encoding": "identity",
                    },
                    redirect=False,
                    retries=False,
                    preload_content=False,
                    decode_content=False,
                )
            except urllib3.exceptions.SSLError as exc:
                raise PermanentJobError(
                    "SourceTlsError", f"TLS with {target.host}: {exc}"
                ) from None
            except (urllib3.exceptions.HTTPError, OSError) as exc:
                last_error = exc
        raise TransientJobError(
            "SourceUnavailable", f"cannot connect to {target.host}: {last_error}"
        )

    def _pool(self, target: Target, ip: IPAddress) -> urllib3.HTTPConnectionPool:
        if target.scheme == "https":
            return urllib3.HTTPSConnectionPool(
                str(ip),
                target.port,
                timeout=self.timeout,
                retries=False,
                maxsize=1,
                cert_reqs="CERT_REQUIRED",
                server_hostname=target.host,
                assert_hostname=target.host,
            )
        return urllib3.HTTPConnectionPool(
            str(ip), target.port, timeout=self.timeout, retries=False, maxsize=1
        )


def _content_length(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def parse_s3_url(url: str) -> tuple[str, str]:
    rest = url.removeprefix("s3://")
    bucket, _, key = rest.partition("/")
    if not bucket or not key:
        raise PermanentJobError("BadSourceUrl", f"expected s3://<bucket>/<key>, got {url!r}")
    return bucket, key


_S3_NOT_FOUND: Final = frozenset({"NoSuchKey", "NoSuchBucket", "404", "NotFound"})
_S3_FORBIDDEN: Final = frozenset({"AccessDenied", "403", "Forbidden", "InvalidAccessKeyId"})


def s3_error(exc: ClientError, url: str) -> PermanentJobError | TransientJobError:
    code = str(exc.response.get("Error", {}).get("Code", ""))
    status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
    if code in _S3_NOT_FOUND:
        return PermanentJobError("SourceNotFound", f"{url} does not exist ({code})")
    if code in _S3_FORBIDDEN:
        return PermanentJobError("SourceForbidden", f"{url}: access denied ({code})")
    if status >= 500 or code in ("SlowDown", "RequestTimeout", "InternalError"):
        return TransientJobError("SourceUnavailable", f"{url}: {code or status}")
    return PermanentJobError("SourceRequestRejected", f"{url}: {code or status}")


class S3Fetcher:
    def __init__(self, client: Any, *, max_bytes: int) -> None:
        self.client = client
        self.max_bytes = max_bytes

    def fetch(self, url: str, dest: Path, cancel: threading.Event) -> int:
        bucket, key = parse_s3_url(url)
        try:
            head = self.client.head_object(Bucket=bucket, Key=key)
            declared = int(head["ContentLength"])
            check_size(declared, 0, self.max_bytes)
            body = self.client.get_object(Bucket=bucket, Key=key)["Body"]
            try:
                with dest.open("wb") as out:
                    return _write_stream(
                        body.iter_chunks(CHUNK_BYTES), out, declared, self.max_bytes, cancel
                    )
            finally:
                body.close()
        except ClientError as exc:
            raise s3_error(exc, url) from None
        except (BotoCoreError, urllib3.exceptions.HTTPError, OSError) as exc:
            raise TransientJobError("SourceUnavailable", f"reading {url}: {exc}") from None


class Fetcher:
    """One entry point for every source scheme a job may name."""

    def __init__(self, http: HttpFetcher, s3: S3Fetcher) -> None:
        self.http = http
        self.s3 = s3

    def fetch(self, url: str, dest: Path, cancel: threading.Event) -> FetchResult:
        started = time.monotonic()
        fetcher = self.s3 if url.startswith("s3://") else self.http
        size = fetcher.fetch(url, dest, cancel)
        return FetchResult(dest, size, time.monotonic() - started)
