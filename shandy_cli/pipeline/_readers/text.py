"""Bytes to text for the line-based formats: sampling, encoding detection, decoding.

Only the first ``SAMPLE_SIZE`` bytes are ever held for detection; the rest of the file
is decoded as it streams past. Bytes that do not decode never raise: an error handler
turns each into a lone surrogate (U+DC00 + byte), which the readers later turn into a
row-level problem instead of a crash.
"""

from __future__ import annotations

import codecs
import io
import re
from dataclasses import dataclass
from typing import BinaryIO

from shandy_cli.errors import InputError

SAMPLE_SIZE = 64 * 1024
ESCAPE = "shandy-escape-bytes"

# C0 control characters that never appear in real CSV text (tab, LF, VT, FF, CR do).
_CONTROL = re.compile("[\x00-\x08\x0e-\x1f\x7f]")

# Signatures of files people rename or mix up; naming them beats "bad data in row 1".
MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"PK\x03\x04", "a zip archive (an .xlsx or .ods workbook?)"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "an old-style Excel (.xls) workbook"),
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"),
    (b"%PDF", "a PDF document"),
    (b"\x1f\x8b", "gzip-compressed data (name it .gz)"),
    (b"\xfd7zXZ\x00", "xz-compressed data (name it .xz)"),
    (b"\x28\xb5\x2f\xfd", "zstd-compressed data (name it .zst)"),
    (b"BZh91AY&SY", "bzip2-compressed data (name it .bz2)"),
    (b"PAR1", "a Parquet file (name it .parquet)"),
    (b"ARROW1", "an Arrow IPC file (name it .arrow)"),
    (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive"),
    (b"Rar!", "a RAR archive"),
)


def _escape_bytes(exc: UnicodeError) -> tuple[str, int]:
    # Unlike the built-in "surrogateescape", this also escapes bytes below 0x80,
    # which UTF-16 errors (a lone surrogate, an odd trailing byte) can involve.
    if not isinstance(exc, UnicodeDecodeError):
        raise exc
    bad = exc.object[exc.start : exc.end]
    return "".join(chr(0xDC00 + b) for b in bad), exc.end


codecs.register_error(ESCAPE, _escape_bytes)


def describe_magic(head: bytes) -> str | None:
    for magic, what in MAGIC:
        if head.startswith(magic):
            return what
    return None


def read_sample(f: BinaryIO, size: int = SAMPLE_SIZE) -> tuple[bytes, bool]:
    """Read up to ``size`` bytes; also say whether that was the whole stream."""
    chunks: list[bytes] = []
    total = 0
    while total < size:
        data = f.read(size - total)  # pipes may return short reads: loop
        if not data:
            return b"".join(chunks), True
        chunks.append(data)
        total += len(data)
    return b"".join(chunks), False


class ByteStream(io.RawIOBase):
    """The sampled prefix replayed, then the rest of the stream; counts bytes handed on.

    Replaying lets stdin and pipes (which cannot seek back) be sniffed like files.
    """

    def __init__(self, prefix: bytes, rest: BinaryIO | None) -> None:
        super().__init__()
        self._prefix = memoryview(prefix)
        self._pos = 0
        self._rest = rest
        self.count = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        if self._pos < len(self._prefix):
            n = min(len(buffer), len(self._prefix) - self._pos)
            buffer[:n] = self._prefix[self._pos : self._pos + n]
            self._pos += n
        elif self._rest is None:
            n = 0
        else:
            data = self._rest.read(len(buffer)) or b""
            n = len(data)
            buffer[:n] = data
        self.count += n
        return n


def normalize_encoding(encoding: str) -> str:
    """Check a user-given ``--encoding`` and return it as given (lower-cased)."""
    try:
        info = codecs.lookup(encoding)
    except LookupError:
        info = None
    # "base64", "rot13" and friends are codecs but not text encodings.
    if info is None or not getattr(info, "_is_text_encoding", True):
        raise InputError(
            f"unknown encoding {encoding!r} (try utf-8, utf-8-sig, utf-16, cp1252 or latin-1)"
        )
    return encoding.strip().lower()


def is_utf8(encoding: str) -> bool:
    return codecs.lookup(encoding).name == "utf-8"


def decodes(sample: bytes, encoding: str, complete: bool) -> bool:
    """Whether ``sample`` decodes strictly; an incomplete tail only counts when ``complete``."""
    try:
        codecs.getincrementaldecoder(encoding)().decode(sample, final=complete)
    except UnicodeDecodeError:
        return False
    return True


def _utf16_without_bom(sample: bytes) -> str | None:
    # Mostly-ASCII UTF-16 has a NUL in every other byte: at odd offsets for LE, even
    # offsets for BE. Random or single-byte data essentially never shows that pattern.
    if len(sample) < 8:
        return None
    even, odd = sample[0::2], sample[1::2]
    for zeros, others, name in (
        (odd, even, "utf-16-le"),
        (even, odd, "utf-16-be"),
    ):
        if zeros.count(0) >= 0.4 * len(zeros) and others.count(0) <= 0.02 * len(others):
            return name if decodes(sample, name, complete=False) else None
    return None


def detect_encoding(sample: bytes, complete: bool) -> str:
    """BOM, then strict UTF-8, then cp1252 (Windows Excel exports), then latin-1.

    latin-1 maps every byte, so it is the last resort that cannot fail. cp1252 is
    preferred whenever it decodes: it is what Excel on Windows writes, and it only
    differs from latin-1 in 0x80-0x9F, where latin-1 has invisible control codes.
    """
    if sample.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if sample.startswith(codecs.BOM_UTF32_LE):  # before UTF-16: FF FE is its prefix
        return "utf-32"
    if sample.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    guess = _utf16_without_bom(sample)
    if guess:
        return guess
    if decodes(sample, "utf-8", complete):
        return "utf-8"
    if decodes(sample, "cp1252", complete):
        return "cp1252"
    return "latin-1"


def byte_order(encoding: str, sample: bytes) -> str:
    """``--encoding utf-16`` (or utf-32) on a file without a BOM: Python's decoder
    refuses outright, so settle the byte order here (little-endian, as Windows writes,
    unless the bytes say big-endian)."""
    name = codecs.lookup(encoding).name
    if name == "utf-16" and not sample.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return _utf16_without_bom(sample) or "utf-16-le"
    if name == "utf-32" and not sample.startswith((codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)):
        return "utf-32-le"
    return encoding


def decode_sample(sample: bytes, encoding: str, complete: bool) -> str:
    decoder = codecs.getincrementaldecoder(encoding)(errors=ESCAPE)
    return decoder.decode(sample, final=complete)


def looks_binary(text: str) -> bool:
    """NUL characters in the header line, or more than one in a thousand: binary data.

    A stray NUL inside one value (a bad export, a pasted cell) is not: that row is
    rejected for it (``base.repair_undecodable``) and the rest are imported.
    """
    nuls = text.count("\x00")
    if not nuls:
        return False
    end = text.find("\n")
    header = text if end < 0 else text[:end]
    return "\x00" in header or nuls > max(4, len(text) // 1000)


def check_is_text(sample: bytes, text: str, *, file: str, fmt: str) -> None:
    """Refuse what is clearly not a text file before it turns into thousands of bad rows."""
    what = describe_magic(sample)
    if what:
        raise InputError(f"this is {what}, not a .{fmt} text file", file=file)
    if looks_binary(text):
        raise InputError(
            "contains NUL bytes: this looks like binary data, not a text file", file=file
        )
    controls = len(_CONTROL.findall(text))
    if controls > max(4, len(text) // 100):
        raise InputError(
            "contains many control characters: this looks like binary data, not a text file "
            "(if it is text, pass --encoding)",
            file=file,
        )


@dataclass
class TextInput:
    """A byte stream whose encoding is settled, plus the decoded sample for sniffing."""

    stream: ByteStream
    encoding: str
    sample_text: str
    complete: bool  # the sample is the whole input

    def reader(self, newline: str | None) -> io.TextIOWrapper:
        buffered = io.BufferedReader(self.stream, buffer_size=SAMPLE_SIZE)
        return io.TextIOWrapper(buffered, encoding=self.encoding, errors=ESCAPE, newline=newline)


def open_text(
    sample: bytes,
    complete: bool,
    rest: BinaryIO | None,
    *,
    file: str,
    fmt: str,
    encoding: str | None,
) -> TextInput:
    """Settle the encoding of a text input from its first bytes (or the user's choice)."""
    if encoding is None:
        encoding = detect_encoding(sample, complete)
    elif is_utf8(encoding) and sample.startswith(codecs.BOM_UTF8):
        encoding = "utf-8-sig"  # "utf-8" was meant; don't turn the BOM into a header char
    else:
        encoding = byte_order(encoding, sample)
    try:
        text = decode_sample(sample, encoding, complete)
    except UnicodeError as exc:  # a codec that refuses outright rather than per byte
        raise InputError(f"cannot decode as {encoding}: {exc}", file=file) from None
    check_is_text(sample, text, file=file, fmt=fmt)
    return TextInput(ByteStream(sample, rest), encoding, text, complete)
