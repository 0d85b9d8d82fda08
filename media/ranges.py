"""HTTP byte ranges (RFC 9110 section 14) for one stored file: which bytes a request asks for.

One range per answer: a request for several ranges is answered with the whole file (200),
which RFC 9110 allows (a server MAY ignore Range) and every player accepts; multipart
byteranges buy a player nothing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["UNSATISFIABLE", "ByteRange", "etag_matches", "parse_range"]

# ASCII digits only, and few enough that int() is cheap: longer is malformed (ignored)
_SPEC = re.compile(r"([0-9]{0,19})-([0-9]{0,19})")


@dataclass(frozen=True)
class ByteRange:
    start: int
    end: int  # inclusive, as in Content-Range

    @property
    def length(self) -> int:
        return self.end - self.start + 1

    def content_range(self, size: int) -> str:
        return f"bytes {self.start}-{self.end}/{size}"


UNSATISFIABLE = ByteRange(-1, -1)
"""A well-formed range that starts past the end of the file: 416."""


def parse_range(header: str | None, size: int) -> ByteRange | None:
    """The one range a Range header asks for, None to serve the whole file, or UNSATISFIABLE.

    Malformed headers, other units and multi-range requests give None: RFC 9110 lets a
    server ignore Range, and answering 200 with the whole file is always correct.
    """
    if not header:
        return None
    unit, sep, spec = header.partition("=")
    if not sep or unit.strip().lower() != "bytes":
        return None
    specs = [s.strip() for s in spec.split(",") if s.strip()]
    if len(specs) != 1:
        return None
    match = _SPEC.fullmatch(specs[0])
    if match is None or match.group(0) == "-":
        return None
    first, last = match.groups()
    if not first:  # a suffix: the last n bytes
        suffix = int(last)
        if suffix == 0 or size == 0:
            return UNSATISFIABLE
        return ByteRange(max(size - suffix, 0), size - 1)
    start = int(first)
    if last and int(last) < start:
        return None  # invalid, so ignored (RFC 9110 14.1.1), not unsatisfiable
    if start >= size:
        return UNSATISFIABLE
    return ByteRange(start, min(int(last), size - 1) if last else size - 1)


def etag_matches(header: str | None, etag: str, *, weak: bool) -> bool:
    """Whether an If-None-Match (weak comparison) or If-Range (strong) header names etag."""
    if header is None:
        return False
    if weak and header.strip() == "*":
        return True
    for candidate in header.split(","):
        tag = candidate.strip()
        if tag.startswith("W/"):
            if not weak:
                continue  # a weak validator never satisfies a strong comparison
            tag = tag[2:]
        if tag == etag:
            return True
    return False
