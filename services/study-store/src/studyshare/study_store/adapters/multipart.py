"""A multipart/related body split while it streams: each part's content goes to a sink (a
spool file of the blob store) as it arrives, so memory holds at most one fed chunk plus a
delimiter, never a whole part."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

MAX_HEADER_BYTES = 16 * 1024


class MultipartError(ValueError):
    """The body is not a well-formed multipart body."""


class PartSink(Protocol):
    def write(self, data: bytes) -> None: ...

    def close(self) -> None: ...


def part_headers(block: bytes) -> dict[str, str]:
    headers = {}
    for line in block.decode("latin-1").split("\r\n"):
        name, _, value = line.partition(":")
        if name.strip():
            headers[name.strip().lower()] = value.strip()
    return headers


class MultipartSpooler:
    """Feed the body in chunks (`feed`), then `finish`; `open_part(headers)` gives each part's
    sink, closed when the part ends."""

    def __init__(self, boundary: str, open_part: Callable[[dict[str, str]], PartSink]) -> None:
        self.delimiter = b"\r\n--" + boundary.encode("latin-1")
        self.open_part = open_part
        self.buffer = bytearray(b"\r\n")  # the first delimiter may open the body
        self.state = "preamble"
        self.sink: PartSink | None = None
        self.parts = 0

    def feed(self, chunk: bytes) -> None:
        self.buffer += chunk
        while self._step():
            pass

    def finish(self) -> int:
        """The number of parts; refuses a body that ends inside a part."""
        if self.state in ("headers", "body"):
            raise MultipartError("the body ends inside a part")
        return self.parts

    def _step(self) -> bool:
        """Advance as far as the buffer allows; False when more input is needed."""
        buf, delimiter = self.buffer, self.delimiter
        if self.state == "preamble":
            i = buf.find(delimiter)
            if i < 0:
                del buf[: max(0, len(buf) - len(delimiter) + 1)]
                return False
            del buf[: i + len(delimiter)]
            self.state = "delimiter"
            return True
        if self.state == "delimiter":
            if len(buf) < 2:
                return False
            if buf[:2] == b"--":
                self.state = "end"
                return True
            i = buf.find(b"\r\n")
            if i < 0:
                if len(buf) > 1024:
                    raise MultipartError("a delimiter line is too long")
                return False
            if buf[:i].strip(b" \t"):
                raise MultipartError("unexpected text after a delimiter")
            del buf[: i + 2]
            self.state = "headers"
            return True
        if self.state == "headers":
            if len(buf) < 2:
                return False
            if buf[:2] == b"\r\n":
                headers: dict[str, str] = {}
                del buf[:2]
            else:
                i = buf.find(b"\r\n\r\n")
                if i < 0:
                    if len(buf) > MAX_HEADER_BYTES:
                        raise MultipartError("the part headers are too long")
                    return False
                headers = part_headers(bytes(buf[:i]))
                del buf[: i + 4]
            self.sink = self.open_part(headers)
            self.parts += 1
            self.state = "body"
            return True
        if self.state == "body":
            assert self.sink is not None
            i = buf.find(delimiter)
            if i < 0:
                safe = len(buf) - len(delimiter) + 1
                if safe > 0:
                    self.sink.write(bytes(buf[:safe]))
                    del buf[:safe]
                return False
            self.sink.write(bytes(buf[:i]))
            self.sink.close()
            self.sink = None
            del buf[: i + len(delimiter)]
            self.state = "delimiter"
            return True
        buf.clear()  # the epilogue after the closing delimiter is ignored
        return False
