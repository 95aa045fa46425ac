"""STOMP frames: the data type, an incremental strict parser and the encoder.

Pure: no I/O, no clock. The wire grammar is STOMP 1.2 (which also reads 1.0 and 1.1 frames)::

    COMMAND EOL *(header EOL) EOL body NUL *(EOL)        EOL = [CR] LF

* Frames may arrive split across chunks or several per chunk; EOLs between frames (heart-beats)
  are skipped.
* With ``content-length`` exactly that many octets are read (NULs included) and the next octet
  must be NUL; without it the body runs to the first NUL.
* Header names and values are escaped (``\\r \\n \\c \\\\``) in every frame except
  ``CONNECT`` and ``CONNECTED``; any other escape sequence is a protocol error.
* On repeated headers the first occurrence wins (:meth:`Frame.get`); all are kept in order.
* Limits on the frame size, the header count and a header line's length raise
  :class:`FrameTooLarge`; anything else malformed raises :class:`MalformedFrame`. Both are
  :class:`ordercast.errors.ProtocolError` subclasses. A parser that raised stays broken.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ordercast.errors import ProtocolError

__all__ = [
    "CLIENT_COMMANDS",
    "DEFAULT_MAX_FRAME_SIZE",
    "DEFAULT_MAX_HEADERS",
    "DEFAULT_MAX_HEADER_LINE",
    "SERVER_COMMANDS",
    "Frame",
    "FrameParser",
    "FrameTooLarge",
    "MalformedFrame",
    "escape_header",
    "serialize",
    "unescape_header",
]

DEFAULT_MAX_FRAME_SIZE = 64 * 1024
DEFAULT_MAX_HEADERS = 50
DEFAULT_MAX_HEADER_LINE = 8 * 1024

CLIENT_COMMANDS = frozenset(
    {
        "CONNECT",
        "STOMP",
        "SEND",
        "SUBSCRIBE",
        "UNSUBSCRIBE",
        "ACK",
        "NACK",
        "BEGIN",
        "COMMIT",
        "ABORT",
        "DISCONNECT",
    }
)
SERVER_COMMANDS = frozenset({"CONNECTED", "MESSAGE", "RECEIPT", "ERROR"})

# Frames whose headers are never escaped (kept raw for STOMP 1.0 compatibility).
_RAW_COMMANDS = frozenset({"CONNECT", "CONNECTED"})


class MalformedFrame(ProtocolError):
    """The peer sent bytes that are not a well-formed STOMP frame."""

    code = "stomp_malformed_frame"
    title = "Malformed STOMP frame"


class FrameTooLarge(ProtocolError):
    """A frame exceeds a configured limit (size, header count, header line length)."""

    code = "stomp_frame_too_large"
    title = "STOMP frame too large"


@dataclass(slots=True)
class Frame:
    """One STOMP frame. ``headers`` keep wire order and repeats; values are unescaped."""

    command: str
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""

    def get(self, name: str, default: str | None = None) -> str | None:
        """The first value of header ``name`` (the one that counts), else ``default``."""
        for key, value in self.headers:
            if key == name:
                return value
        return default

    def header_map(self) -> dict[str, str]:
        """Headers as a dict in wire order, first occurrence winning."""
        result: dict[str, str] = {}
        for key, value in self.headers:
            result.setdefault(key, value)
        return result


# -- escaping -----------------------------------------------------------------------------------

_ESCAPE_TABLE = str.maketrans({"\\": "\\\\", "\r": "\\r", "\n": "\\n", ":": "\\c"})
_UNESCAPES = {"r": "\r", "n": "\n", "c": ":", "\\": "\\"}
_ESCAPE_SEQUENCE = re.compile(r"\\(.?)", re.DOTALL)


def escape_header(text: str) -> str:
    """Escape a header name or value per STOMP 1.2 (``\\`` CR LF ``:``)."""
    return text.translate(_ESCAPE_TABLE)


def _unescape_one(match: re.Match[str]) -> str:
    char = match.group(1)
    try:
        return _UNESCAPES[char]
    except KeyError:
        shown = "\\" + char if char else "a trailing '\\'"
        raise MalformedFrame(f"undefined escape sequence {shown!r} in a header") from None


def unescape_header(text: str) -> str:
    """Undo :func:`escape_header`; an undefined escape (e.g. ``\\t``) raises MalformedFrame."""
    if "\\" not in text:
        return text
    return _ESCAPE_SEQUENCE.sub(_unescape_one, text)


# -- encoding -----------------------------------------------------------------------------------


def _check_raw(command: str, key: str, value: str) -> None:
    if not key or ":" in key or "\n" in key or "\r" in key:
        raise ValueError(f"header name {key!r} cannot be sent unescaped in a {command} frame")
    if "\n" in value or "\r" in value:
        raise ValueError(f"header {key!r} of a {command} frame cannot contain CR or LF unescaped")


def serialize(frame: Frame, *, escape: bool = True) -> bytes:
    """Encode ``frame`` to wire bytes, ending with the NUL octet and nothing after it.

    Headers are written exactly as given (no ``content-length`` is added). They are escaped
    unless the command is CONNECT/CONNECTED or ``escape`` is false (STOMP 1.0 peers); in those
    cases a name containing ``:``, CR or LF, or a value containing CR or LF, raises ValueError.
    """
    command = frame.command
    parts = [command]
    if escape and command not in _RAW_COMMANDS:
        for key, value in frame.headers:
            parts.append(f"{key.translate(_ESCAPE_TABLE)}:{value.translate(_ESCAPE_TABLE)}")
    else:
        for key, value in frame.headers:
            _check_raw(command, key, value)
            parts.append(f"{key}:{value}")
    parts.append("\n")
    return "\n".join(parts).encode("utf-8") + frame.body + b"\x00"


# -- parsing ------------------------------------------------------------------------------------

_HEAD_END = re.compile(rb"\n\r?\n")
_COMMAND = re.compile(r"[A-Za-z][A-Za-z0-9_-]*")
_EOL_BYTES = (0x0A, 0x0D)


@dataclass(slots=True)
class _Head:
    command: str
    headers: list[tuple[str, str]]
    length: int  # octets from the command's first octet to the body's first octet
    content_length: int | None


class FrameParser:
    """Incremental STOMP frame parser: :meth:`feed` chunks, pull frames with :meth:`next_frame`.

    ``unescape`` controls header unescaping for frames other than CONNECT/CONNECTED; set it to
    False once a STOMP 1.0 session has been negotiated.
    """

    def __init__(
        self,
        *,
        max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
        max_headers: int = DEFAULT_MAX_HEADERS,
        max_header_line: int = DEFAULT_MAX_HEADER_LINE,
        unescape: bool = True,
    ) -> None:
        self.max_frame_size = max_frame_size
        self.max_headers = max_headers
        self.max_header_line = max_header_line
        self.unescape = unescape
        self._buf = bytearray()
        self._pos = 0  # first unconsumed octet
        self._scan = 0  # octets before this index were already searched for the current target
        self._head: _Head | None = None
        self._error: ProtocolError | None = None

    @property
    def buffered(self) -> int:
        """Octets received but not yet returned as frames."""
        return len(self._buf) - self._pos

    def feed(self, data: bytes | bytearray | memoryview | str) -> None:
        """Append a chunk (``str`` is encoded as UTF-8, as for a WebSocket text message)."""
        if isinstance(data, str):
            data = data.encode("utf-8")
        self._buf += data

    def next_frame(self) -> Frame | None:
        """The next complete frame, or None if more data is needed.

        Raises MalformedFrame or FrameTooLarge; after that every call raises the same error.
        """
        if self._error is not None:
            raise self._error
        try:
            frame = self._next()
        except ProtocolError as exc:
            self._error = exc
            raise
        self._compact()
        return frame

    def frames(self) -> list[Frame]:
        """Every complete frame currently buffered."""
        result: list[Frame] = []
        while (frame := self.next_frame()) is not None:
            result.append(frame)
        return result

    def _compact(self) -> None:
        if self._pos:
            del self._buf[: self._pos]
            self._scan = max(0, self._scan - self._pos)
            self._pos = 0

    def _next(self) -> Frame | None:
        buf = self._buf
        if self._head is None:
            pos = self._pos
            end = len(buf)
            while pos < end and buf[pos] in _EOL_BYTES:
                pos += 1
            self._pos = pos
            if pos == end:
                self._scan = pos
                return None
            match = _HEAD_END.search(buf, max(self._scan, pos))
            if match is None:
                self._scan = max(pos, end - 2)
                self._check_incomplete_head(pos, end)
                return None
            self._head = self._parse_head(pos, match.start(), match.end())
            self._scan = match.end()
        return self._read_body(self._head)

    def _check_incomplete_head(self, pos: int, end: int) -> None:
        if end - pos > self.max_frame_size:
            raise FrameTooLarge(f"frame headers exceed {self.max_frame_size} octets")
        line_start = self._buf.rfind(b"\n", pos, end) + 1 or pos
        if end - line_start > self.max_header_line + 1:
            raise FrameTooLarge(f"header line longer than {self.max_header_line} octets")
        if self._buf.count(b"\n", pos, end) > self.max_headers + 1:
            raise FrameTooLarge(f"more than {self.max_headers} headers in a frame")

    def _parse_head(self, start: int, head_end: int, body_start: int) -> _Head:
        length = body_start - start
        if length > self.max_frame_size:
            raise FrameTooLarge(f"frame headers exceed {self.max_frame_size} octets")
        try:
            text = bytes(self._buf[start:head_end]).decode("utf-8")
        except UnicodeDecodeError:
            raise MalformedFrame("frame command or headers are not valid UTF-8") from None
        lines = text.split("\n")
        command = lines[0].removesuffix("\r")
        if len(command) > self.max_header_line:
            raise FrameTooLarge(f"command line longer than {self.max_header_line} octets")
        if not _COMMAND.fullmatch(command):
            raise MalformedFrame(f"invalid command line {command[:40]!r}")
        if len(lines) - 1 > self.max_headers:
            raise FrameTooLarge(f"more than {self.max_headers} headers in a {command} frame")
        raw = command in _RAW_COMMANDS or not self.unescape
        headers: list[tuple[str, str]] = []
        content_length: int | None = None
        seen_length = False
        for line in lines[1:]:
            line = line.removesuffix("\r")
            if len(line) > self.max_header_line:
                raise FrameTooLarge(f"header line longer than {self.max_header_line} octets")
            key, sep, value = line.partition(":")
            if not sep or not key:
                raise MalformedFrame(f"malformed header line {line[:40]!r} in a {command} frame")
            if not raw:
                key = unescape_header(key)
                value = unescape_header(value)
            if key == "content-length" and not seen_length:
                seen_length = True
                if not (value.isascii() and value.isdigit()):
                    raise MalformedFrame(f"invalid content-length {value[:20]!r}")
                content_length = int(value)
                if length + content_length + 1 > self.max_frame_size:
                    raise FrameTooLarge(
                        f"{command} frame of {length + content_length + 1} octets exceeds "
                        f"the {self.max_frame_size}-octet limit"
                    )
            headers.append((key, value))
        return _Head(command, headers, length, content_length)

    def _read_body(self, head: _Head) -> Frame | None:
        buf = self._buf
        body_start = self._pos + head.length
        if head.content_length is not None:
            body_end = body_start + head.content_length
            if len(buf) <= body_end:
                return None
            if buf[body_end] != 0:
                raise MalformedFrame(
                    f"{head.command} frame body is not followed by NUL after "
                    f"content-length:{head.content_length} octets"
                )
        else:
            body_end = buf.find(0, max(self._scan, body_start))
            if body_end < 0:
                self._scan = len(buf)
                if len(buf) - self._pos > self.max_frame_size:
                    raise FrameTooLarge(
                        f"{head.command} frame exceeds the {self.max_frame_size}-octet limit"
                    )
                return None
            if body_end + 1 - self._pos > self.max_frame_size:
                raise FrameTooLarge(
                    f"{head.command} frame exceeds the {self.max_frame_size}-octet limit"
                )
        body = bytes(buf[body_start:body_end])
        self._pos = body_end + 1
        self._scan = self._pos
        self._head = None
        return Frame(head.command, head.headers, body)
