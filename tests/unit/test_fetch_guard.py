"""The SSRF guard's decisions, without sockets: addresses, URLs, redirects, sizes, statuses."""

from __future__ import annotations

import threading
from ipaddress import ip_address, ip_network
from pathlib import Path

import pytest

from kube_transcode_worker.errors import PermanentJobError, TransientJobError
from kube_transcode_worker.fetch import (
    HttpFetcher,
    IPAddress,
    check_size,
    forbidden_reason,
    parse_target,
    redirect_url,
    status_error,
    vet_addresses,
)

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("::1", "loopback"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("192.168.1.1", "private"),
        ("fd12:3456::1", "private"),
        ("169.254.169.254", "cloud metadata service"),
        ("fd00:ec2::254", "cloud metadata service"),
        ("169.254.1.1", "link-local"),
        ("fe80::1", "link-local"),
        ("100.64.0.1", "carrier-grade NAT"),
        ("224.0.0.1", "multicast"),
        ("ff02::1", "multicast"),
        ("0.0.0.0", "unspecified"),  # noqa: S104 - an address under test, not a bind
        ("::", "unspecified"),
        ("240.0.0.1", "reserved"),
        ("::ffff:127.0.0.1", "loopback (as 127.0.0.1)"),
        ("::ffff:169.254.169.254", "cloud metadata service"),
        ("64:ff9b::a00:1", "private (as 10.0.0.1)"),
        ("2002:c0a8:101::1", "private (as 192.168.1.1)"),
    ],
)
def test_internal_addresses_are_forbidden(address: str, reason: str) -> None:
    assert forbidden_reason(ip_address(address)) == reason


@pytest.mark.parametrize("address", ["93.184.215.14", "1.1.1.1", "2606:4700:4700::1111"])
def test_public_addresses_are_allowed(address: str) -> None:
    assert forbidden_reason(ip_address(address)) is None


def test_configured_networks_are_allowed_but_metadata_never() -> None:
    allowed = [ip_network("10.0.0.0/8"), ip_network("169.254.0.0/16"), ip_network("::1/128")]
    assert forbidden_reason(ip_address("10.9.8.7"), allowed) is None
    assert forbidden_reason(ip_address("::1"), allowed) is None
    assert forbidden_reason(ip_address("::ffff:10.9.8.7"), allowed) is None
    assert forbidden_reason(ip_address("169.254.169.254"), allowed) == "cloud metadata service"
    assert forbidden_reason(ip_address("192.168.0.1"), allowed) == "private"


def test_one_forbidden_address_among_several_refuses_the_host() -> None:
    addresses: list[IPAddress] = [ip_address("93.184.215.14"), ip_address("10.0.0.1")]
    with pytest.raises(PermanentJobError, match=r"resolves to 10\.0\.0\.1 \(private\)"):
        vet_addresses("rebind.example", addresses, ())
    with pytest.raises(PermanentJobError, match="no address"):
        vet_addresses("empty.example", [], ())


@pytest.mark.parametrize(
    ("url", "allow_http", "says"),
    [
        ("http://example.com/a.mp4", False, "scheme 'http' not allowed"),
        ("ftp://example.com/a.mp4", True, "scheme 'ftp' not allowed"),
        ("file:///etc/passwd", True, "scheme 'file' not allowed"),
        ("https://user:pw@example.com/a.mp4", False, "credentials"),
        ("https:///a.mp4", False, "no host"),
        ("https://example.com:99999/a.mp4", False, "cannot parse"),
    ],
)
def test_bad_urls_are_permanent_errors(url: str, allow_http: bool, says: str) -> None:
    with pytest.raises(PermanentJobError, match=says):
        parse_target(url, allow_http)


def test_targets_keep_the_host_for_the_host_header_and_sni() -> None:
    target = parse_target("https://Media.Example.com/v/a.mp4?sig=1", allow_http=False)
    assert (target.host, target.port, target.path) == ("media.example.com", 443, "/v/a.mp4?sig=1")
    assert target.host_header == "media.example.com"
    assert parse_target("http://[2001:db8::1]:8080/", True).host_header == "[2001:db8::1]:8080"


def test_redirects_resolve_relative_locations() -> None:
    assert redirect_url("https://a.example/x/y.mp4", 302, "z.mp4") == "https://a.example/x/z.mp4"
    assert redirect_url("https://a.example/x", 301, "http://10.0.0.1/") == "http://10.0.0.1/"
    with pytest.raises(PermanentJobError, match="without a Location"):
        redirect_url("https://a.example/", 302, None)


def test_size_limit_applies_to_declared_and_received_bytes() -> None:
    check_size(100, 100, 100)
    with pytest.raises(PermanentJobError, match="SourceTooLarge"):
        check_size(101, 0, 100)
    with pytest.raises(PermanentJobError, match="SourceTooLarge"):
        check_size(None, 101, 100)


@pytest.mark.parametrize(
    ("status", "kind", "reason"),
    [
        (404, PermanentJobError, "SourceNotFound"),
        (403, PermanentJobError, "SourceForbidden"),
        (400, PermanentJobError, "SourceRequestRejected"),
        (429, TransientJobError, "SourceUnavailable"),
        (503, TransientJobError, "SourceUnavailable"),
    ],
)
def test_http_statuses_map_to_permanent_or_transient(
    status: int, kind: type[Exception], reason: str
) -> None:
    error = status_error(status, "https://a.example/v.mp4")
    assert type(error) is kind and error.reason == reason


def test_fetcher_refuses_before_connecting_when_dns_answers_an_internal_address(
    tmp_path: Path,
) -> None:
    asked: list[str] = []

    def resolver(host: str, port: int) -> list[IPAddress]:
        asked.append(f"{host}:{port}")
        return [ip_address("169.254.169.254")]

    fetcher = HttpFetcher(max_bytes=10, resolver=resolver)
    with pytest.raises(PermanentJobError, match="cloud metadata"):
        fetcher.fetch("https://innocent.example/v.mp4", tmp_path / "src", threading.Event())
    assert asked == ["innocent.example:443"]
    assert not (tmp_path / "src").exists()
