"""Ports for child processes: never one handed out twice, never one the kernel hands out."""

from __future__ import annotations

import socket
from pathlib import Path

from studyshare.plumbing import infra


def test_free_ports_are_never_handed_out_twice() -> None:
    """The kernel gives a port it just released to the next `bind(0)`: before, 15 picks in a
    row (a platform's ports) held a duplicate ~1 % of the time, and 2,000 picks always did."""
    ports = [infra.free_port() for _ in range(2000)]
    assert len(set(ports)) == len(ports)


def test_free_ports_lie_below_the_kernels_own_picks() -> None:
    """A child's `bind(0)` or an outgoing connection cannot take a port picked for a server
    between the pick and the server's bind."""
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    port = infra.free_port()
    assert 1024 <= port < low
    for _ in range(200):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            assert s.getsockname()[1] >= low
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))  # still free: nothing took it


def test_each_xdist_worker_picks_from_its_own_share_of_the_ports() -> None:
    """Two workers picking at the same moment never pick the same port."""
    alone = infra.pickable_ports({}, 32768)
    assert (alone.start, alone.stop) == (20768, 32768)
    workers = [
        infra.pickable_ports({"PYTEST_XDIST_WORKER": w, "PYTEST_XDIST_WORKER_COUNT": "2"}, 32768)
        for w in ("gw0", "gw1")
    ]
    assert set(workers[0]).isdisjoint(workers[1])
    assert set(workers[0]) | set(workers[1]) == set(alone)
