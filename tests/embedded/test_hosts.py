"""Hosts as network namespaces (alive_tools/embedded/hosts.py): a host's processes are found
by the module they run (as a test finds one service of a host to stop) and killed with it."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from alive_tools.embedded.hosts import Network, hosts_available

pytestmark = pytest.mark.skipif(
    not hosts_available(), reason="needs root and iproute2 for network namespaces"
)


def test_a_hosts_processes_are_found_by_module_and_killed_with_it() -> None:
    with Network() as network:
        host = network.add_host("a")
        server = subprocess.Popen(
            host.command([sys.executable, "-m", "http.server", "--bind", host.address, "0"]),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        outside = subprocess.Popen(
            [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", "0"]
        )
        try:
            deadline = time.monotonic() + 10
            while not host.pids_of("http.server") and time.monotonic() < deadline:
                time.sleep(0.05)  # `ip netns exec` execs python: the pid is the server's
            assert host.pids_of("http.server") == [server.pid]  # not the one outside
            assert host.pids_of("http") == []  # the whole module name, not a prefix
            assert host.kill_all() >= 1
            assert server.wait(timeout=10) < 0
        finally:
            outside.kill()
            outside.wait()
            server.kill()
