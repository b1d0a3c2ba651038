"""Readiness of a child process: a port counts as open only when something listens on it."""

from __future__ import annotations

import socket

from studyshare.plumbing import infra


def test_a_listening_port_answers_and_a_closed_one_does_not() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        assert infra.listening(server.getsockname()[1])
    assert not infra.listening(infra.free_port())


def test_a_connection_to_itself_is_not_a_listener() -> None:
    """With nothing listening, a connect from the port itself succeeds (TCP simultaneous open):
    `wait_for_port` took that for a started server (devstack's gateway test, refused right after,
    in CI)."""
    port = infra.free_port()
    assert not infra.listening(port, source_port=port)
    assert not infra.listening(port)
