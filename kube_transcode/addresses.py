"""Which addresses a URL from a user may reach: the guard against SSRF, pure.

Shared by the worker (https sources) and the operator (webhook receivers). An address is
refused when it is loopback, private (RFC 1918, ULA), link-local, CGNAT, multicast,
unspecified, reserved or otherwise not globally routable (IPv4 inside IPv6 forms is checked as
IPv4), unless it lies in an allowed network; cloud metadata addresses are refused always.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from typing import Final

IPAddress = IPv4Address | IPv6Address
Network = IPv4Network | IPv6Network

# Instance metadata services: never reachable, whatever networks are allowed.
METADATA_ADDRESSES: Final = frozenset(
    {
        ipaddress.ip_address("169.254.169.254"),  # AWS, GCP, Azure, OpenStack
        ipaddress.ip_address("169.254.170.2"),  # AWS ECS task metadata
        ipaddress.ip_address("100.100.100.200"),  # Alibaba Cloud
        ipaddress.ip_address("fd00:ec2::254"),  # AWS over IPv6
    }
)
CGNAT: Final = ipaddress.ip_network("100.64.0.0/10")
NAT64: Final = ipaddress.ip_network("64:ff9b::/96")


def _embedded_ipv4(ip: IPAddress) -> IPv4Address | None:
    """The IPv4 address an IPv6 address stands for (mapped, NAT64, 6to4, Teredo), if any."""
    if isinstance(ip, IPv4Address):
        return None
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip in NAT64:
        return IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    return None


def _category(ip: IPAddress) -> str | None:
    """Why an address is not a public Internet host, or None when it is one."""
    if ip.is_loopback:
        return "loopback"
    if ip.is_unspecified:
        return "unspecified"
    if ip.is_link_local:
        return "link-local"
    if ip.is_multicast:
        return "multicast"
    if isinstance(ip, IPv4Address) and ip in CGNAT:
        return "carrier-grade NAT"
    if ip.is_reserved:
        return "reserved"
    if ip.is_private:
        return "private"
    if not ip.is_global:
        return "not globally routable"
    return None


def forbidden_reason(ip: IPAddress, allowed: Iterable[Network] = ()) -> str | None:
    """None if `ip` may be reached; otherwise a few words saying why not."""
    embedded = _embedded_ipv4(ip)
    candidates = [ip] if embedded is None else [ip, embedded]
    if any(candidate in METADATA_ADDRESSES for candidate in candidates):
        return "cloud metadata service"
    allowed = tuple(allowed)
    if any(candidate in network for candidate in candidates for network in allowed):
        return None
    if embedded is not None:
        # IPv6 that stands for IPv4 reaches what the IPv4 address reaches.
        embedded_reason = _category(embedded)
        if embedded_reason is not None:
            return f"{embedded_reason} (as {embedded})"
    return _category(ip)


def first_forbidden(
    addresses: Iterable[IPAddress], allowed: Iterable[Network] = ()
) -> tuple[IPAddress, str] | None:
    """The first address that may not be reached and why, or None: all of them may."""
    allowed = tuple(allowed)
    for ip in addresses:
        reason = forbidden_reason(ip, allowed)
        if reason is not None:
            return ip, reason
    return None


def networks_from_setting(value: object) -> object:
    """A setting's "10.0.0.0/8, fd00::/64" as networks (a settings validator's `before` step);
    anything but a string is left for the field's own validation."""
    if isinstance(value, str):
        parts = (part.strip() for part in value.split(","))
        return tuple(ipaddress.ip_network(part) for part in parts if part)
    return value
