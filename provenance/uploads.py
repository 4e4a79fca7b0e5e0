"""A minimum upload rate: requests whose bodies arrive too slowly end in a 408 and free their thread.

Threads make slow clients cheap, not free: each holds one for as long as its body takes, and a
client sending 10 bytes a second would hold it for days. A body may fall at most ``grace``
seconds behind ``min_rate`` bytes a second (the rule of Kestrel's minimum request body data
rate). A read blocked inside gunicorn cannot be timed out from its own thread (each recv() that
brings a byte restarts a socket timeout), so one watchdog thread per process checks the uploads
in progress and shuts the read side of a late one's socket: its blocked read returns at once,
and gunicorn finds the connection closed instead of reading the rest of the body before the
next request.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from werkzeug.exceptions import RequestTimeout

_STEP = 4096  # bytes per read from gunicorn: progress is seen at least this often
_CHECK_EVERY = 0.25  # seconds between the watchdog's rounds


class _Upload:
    """One request body in progress: gunicorn's ``wsgi.input`` with its progress counted."""

    def __init__(
        self, stream: Any, connection: socket.socket, length: int | None, min_rate: int, grace: float
    ) -> None:
        self._stream = stream
        self._connection = connection
        self._length = length  # None: chunked, complete at the first empty read
        self._min_rate = min_rate
        self._grace = grace
        self._started = time.monotonic()
        self._received = 0
        self._complete = False
        self.late = False

    def check(self, now: float) -> None:
        """Called by the watchdog: cut the body off once it is more than ``grace`` s late."""
        if self.late or self._complete:  # a request computing after its upload is not late
            return
        if self._received >= self._min_rate * (now - self._started - self._grace):
            return
        self.late = True
        with contextlib.suppress(OSError):
            self._connection.shutdown(socket.SHUT_RD)

    def _counted(self, data: bytes) -> bytes:
        if self.late:
            raise RequestTimeout(f"the request body arrived slower than {self._min_rate} bytes a second")
        self._received += len(data)
        if not data or (self._length is not None and self._received >= self._length):
            self._complete = True
        return data

    def read(self, size: int | None = None) -> bytes:
        if size is None or size < 0:
            return b"".join(iter(lambda: self.read(_STEP), b""))
        parts: list[bytes] = []
        wanted = size
        while wanted > 0:
            data = self._counted(self._pull(self._stream.read, min(wanted, _STEP)))
            if not data:
                break
            parts.append(data)
            wanted -= len(data)
        return b"".join(parts)

    def readline(self, size: int | None = None) -> bytes:
        return self._counted(self._pull(self._stream.readline, size))

    def _pull(self, source: Callable[[int | None], bytes], size: int | None) -> bytes:
        # Once the watchdog has shut the socket's read side, a chunked body's reader raises
        # (gunicorn's NoMoreData, an OSError) rather than returning what it had: still a 408.
        try:
            return source(size)
        except OSError as exc:
            if self.late:
                raise RequestTimeout(
                    f"the request body arrived slower than {self._min_rate} bytes a second"
                ) from exc
            raise

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.readline, b"")


class MinimumUploadRate:
    """WSGI middleware for gunicorn (it needs ``gunicorn.socket``): see the module docstring."""

    def __init__(self, app: Callable[..., Iterable[bytes]], min_rate: int, grace: float) -> None:
        self._app = app
        self._min_rate = min_rate
        self._grace = grace
        self._uploads: set[_Upload] = set()
        self._lock = threading.Lock()
        self._watchdog: threading.Thread | None = None

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        connection = environ.get("gunicorn.socket")
        length = environ.get("CONTENT_LENGTH") or None
        chunked = "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()
        if connection is None or not (chunked or (length and int(length) > 0)):
            return self._app(environ, start_response)
        expected = None if chunked else int(length or 0)
        upload = _Upload(environ["wsgi.input"], connection, expected, self._min_rate, self._grace)
        environ["wsgi.input"] = upload
        with self._lock:
            self._uploads.add(upload)
            if self._watchdog is None:  # started here, after fork: threads do not survive one
                self._watchdog = threading.Thread(target=self._watch, name="upload-rate", daemon=True)
                self._watchdog.start()
        try:
            return self._app(environ, start_response)
        finally:
            with self._lock:
                self._uploads.discard(upload)

    def _watch(self) -> None:
        while True:
            time.sleep(_CHECK_EVERY)
            now = time.monotonic()
            with self._lock:
                uploads = list(self._uploads)
            for upload in uploads:
                upload.check(now)
