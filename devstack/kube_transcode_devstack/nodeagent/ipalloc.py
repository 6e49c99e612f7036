"""Loopback pod IPs: every pod gets its own 127.P.Q.X/Y address (all of 127/8 is loopback on
Linux, no setup needed), so several pods can bind the same port on distinct addresses."""

from __future__ import annotations

import ipaddress
import threading


class IPExhaustedError(Exception):
    pass


class IPAllocator:
    """Hands out ``<prefix>.X.Y`` (X 0-255, Y 1-254) round robin, never one in use."""

    def __init__(self, prefix: str = "127.77") -> None:
        octets = prefix.strip(".").split(".")
        if len(octets) != 2 or octets[0] != "127" or not all(o.isdigit() for o in octets):
            raise ValueError(f"pod IP prefix must look like 127.N (two octets), got {prefix!r}")
        if not 0 <= int(octets[1]) <= 255:
            raise ValueError(f"invalid pod IP prefix {prefix!r}")
        self.prefix = f"127.{int(octets[1])}"
        self._size = 256 * 254
        self._next = 0
        self._used: set[str] = set()
        self._lock = threading.Lock()

    def _ip(self, index: int) -> str:
        return f"{self.prefix}.{index // 254}.{index % 254 + 1}"

    def contains(self, ip: str) -> bool:
        try:
            addr = ipaddress.IPv4Address(ip)
        except ValueError:
            return False
        parts = str(addr).split(".")
        return ".".join(parts[:2]) == self.prefix and 1 <= int(parts[3]) <= 254

    def allocate(self) -> str:
        with self._lock:
            for _ in range(self._size):
                ip = self._ip(self._next)
                self._next = (self._next + 1) % self._size
                if ip not in self._used:
                    self._used.add(ip)
                    return ip
        raise IPExhaustedError(f"no free pod IP left in {self.prefix}.0.0/16")

    def reserve(self, ip: str) -> bool:
        """Claim a specific IP (a pod's IP from before an agent restart). False if unusable."""
        with self._lock:
            if not self.contains(ip) or ip in self._used:
                return False
            self._used.add(ip)
            return True

    def release(self, ip: str) -> None:
        with self._lock:
            self._used.discard(ip)

    def in_use(self) -> set[str]:
        with self._lock:
            return set(self._used)
