"""Several hosts on one machine, for tests that show Alive across machines: each host is a
Linux network namespace with its own loopback and one address on a bridge, so its
processes reach only what the bridge offers (the broker and the object store, started in
the machine's own namespace on the bridge's address) and each other host only over it.

Needs root and iproute2 (``ip netns``, veth pairs, a bridge): CI has both; tests skip
without them (``hosts_available``). Everything made here is named with one random tag and
removed again on ``close``, even after a crash of what ran inside.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path


def hosts_available() -> bool:
    """Whether network namespaces can be made here (root and ``ip``)."""
    return os.geteuid() == 0 and shutil.which("ip") is not None


def _ip(*args: str, netns: str | None = None) -> None:
    command = ["ip", *args] if netns is None else ["ip", "netns", "exec", netns, "ip", *args]
    subprocess.run(command, check=True, capture_output=True)


@dataclass
class Host:
    """One host: a network namespace with an address on the bridge."""

    name: str
    netns: str
    address: str

    def command(self, argv: Sequence[str]) -> list[str]:
        """``argv`` run inside this host's namespace."""
        return ["ip", "netns", "exec", self.netns, *argv]

    def pids(self) -> list[int]:
        listed = subprocess.run(
            ["ip", "netns", "pids", self.netns], capture_output=True, text=True, check=False
        )
        return [int(p) for p in listed.stdout.split()]

    def pids_of(self, module: str) -> list[int]:
        """The host's processes that run ``python -m <module>`` (a service, as the embedded
        stack starts it: alive_tools/embedded/stack.py), so a test can stop one service."""
        found = []
        for pid in self.pids():
            try:
                argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            except OSError:  # it exited since the listing
                continue
            if argv[1:3] == [b"-m", module.encode()]:
                found.append(pid)
        return found

    def kill_all(self) -> int:
        """SIGKILLs every process of the host at once (the machine vanished); how many."""
        pids = self.pids()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        return len(pids)


@dataclass
class Network:
    """A bridge in this namespace (``gateway`` is its address) and the hosts on it."""

    tag: str = field(default_factory=lambda: secrets.token_hex(3))
    hosts: list[Host] = field(default_factory=list)

    def __post_init__(self) -> None:
        # A /24 unlikely to be in use: 10.<200..249>.<0..255>.0, from the tag.
        number = int(self.tag, 16)
        self._prefix = f"10.{200 + number % 50}.{(number >> 8) % 256}"
        self.gateway = f"{self._prefix}.1"
        self._bridge = f"alv{self.tag}"

    def open(self) -> Network:
        _ip("link", "add", self._bridge, "type", "bridge")
        _ip("addr", "add", f"{self.gateway}/24", "dev", self._bridge)
        _ip("link", "set", self._bridge, "up")
        return self

    def add_host(self, name: str) -> Host:
        number = len(self.hosts) + 1
        host = Host(name, f"alive-{self.tag}-{name}", f"{self._prefix}.{10 + number}")
        outside, inside = f"alv{self.tag}h{number}", f"alv{self.tag}n{number}"
        _ip("netns", "add", host.netns)
        self.hosts.append(host)  # from here on, close() removes it
        _ip("link", "add", outside, "type", "veth", "peer", "name", inside)
        _ip("link", "set", inside, "netns", host.netns)
        _ip("link", "set", outside, "master", self._bridge)
        _ip("link", "set", outside, "up")
        _ip("addr", "add", f"{host.address}/24", "dev", inside, netns=host.netns)
        _ip("link", "set", inside, "up", netns=host.netns)
        _ip("link", "set", "lo", "up", netns=host.netns)
        _ip("route", "add", "default", "via", self.gateway, netns=host.netns)
        return host

    def close(self) -> None:
        for host in self.hosts:
            host.kill_all()
            with contextlib.suppress(subprocess.CalledProcessError):
                _ip("netns", "del", host.netns)  # takes its veth pair with it
        self.hosts.clear()
        with contextlib.suppress(subprocess.CalledProcessError):
            _ip("link", "del", self._bridge)

    def __enter__(self) -> Network:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()
