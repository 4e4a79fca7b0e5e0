"""The minimum upload rate: a late body is cut off with a 408, a complete one never is."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest
from werkzeug.exceptions import RequestTimeout

from provenance.uploads import _Upload


class SocketStream:
    """What gunicorn's wsgi.input does: read until ``size`` bytes or the end."""

    def __init__(self, connection: socket.socket) -> None:
        self._connection = connection

    def read(self, size: int) -> bytes:
        data = b""
        while len(data) < size:
            chunk = self._connection.recv(size - len(data))
            if not chunk:
                break
            data += chunk
        return data


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    server, client = socket.socketpair()
    with server, client:
        yield server, client


def test_a_body_later_than_the_grace_is_cut_off_with_a_408(pair: tuple[socket.socket, socket.socket]) -> None:
    server, client = pair
    upload = _Upload(SocketStream(server), server, length=10_000, min_rate=1000, grace=2)
    client.sendall(b"x" * 1000)
    assert upload.read(1000) == b"x" * 1000
    upload.check(time.monotonic() + 2.5)  # 1000 bytes are enough until 3 s
    assert not upload.late
    upload.check(time.monotonic() + 3.5)
    assert upload.late
    with pytest.raises(RequestTimeout):  # at once: the read side is shut
        upload.read(100)


def test_a_complete_body_is_never_late_while_its_request_computes(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    server, client = pair
    upload = _Upload(SocketStream(server), server, length=100, min_rate=1000, grace=1)
    client.sendall(b"x" * 100)
    assert upload.read(100) == b"x" * 100
    upload.check(time.monotonic() + 60)
    assert not upload.late
    client.sendall(b"next request")  # the connection stays usable for keep-alive
    assert server.recv(100) == b"next request"
