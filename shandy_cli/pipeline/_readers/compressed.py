"""Compressed inputs: gzip, bzip2, xz, zstd streams and zip archives, read as they stream.

Nothing is decompressed to disk: a ``.csv.gz`` is decoded block by block as the
reader asks for bytes, so a resume (or the failures file's join) simply reads the
archive again. What decompresses is bounded: a stream's output is counted as it is
read (``Inflating``) and stops with an ``InputError`` past ``limit`` bytes (a gzip
bomb is a few kilobytes that inflate without end); a zip member's declared sizes are
checked before a byte is inflated, as for workbooks (``spreadsheet.check_zip``).
Damaged or truncated data is one ``InputError`` line too, whenever it is found.
"""

from __future__ import annotations

import bz2
import contextlib
import gzip
import io
import lzma
import os
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, Any, BinaryIO

from shandy_cli.config import DEFAULT_MAX_STREAM_BYTES
from shandy_cli.errors import InputError

from .spreadsheet import MEMORY_MAX_BYTES, ZIP_MAX_MEMBERS, ZIP_MAX_RATIO, ZIP_RATIO_FLOOR
from .text import ByteStream

# The extension of each compression, and the bytes every such stream starts with.
COMPRESSIONS: dict[str, str] = {
    ".gz": "gzip",
    ".gzip": "gzip",
    ".bz2": "bzip2",
    ".xz": "xz",
    ".zst": "zstd",
    ".zstd": "zstd",
    ".zip": "zip",
}
MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\x1f\x8b", "gzip"),
    (b"\xfd7zXZ\x00", "xz"),
    (b"\x28\xb5\x2f\xfd", "zstd"),
    (b"PK\x03\x04", "zip"),
    (b"PK\x05\x06", "zip"),  # an empty archive
)
_BZIP2_BLOCK = b"\x31\x41\x59\x26\x53\x59"  # after "BZh" and the block-size digit
HEAD = 16  # bytes enough to tell every signature above
# The most a compressed input may inflate to: the bound on a stream copied aside
# (``Settings.max_stream_bytes``' default), so an input is never refused for being
# compressed that would be taken piped in plain.
MAX_INFLATED = DEFAULT_MAX_STREAM_BYTES
READ_BUFFER = 1 << 20
# A CSV compresses ~4-8x with gzip or zstd: the guess at a packed file's size unpacked,
# where a decision needs it before reading (the columnar path's size floor, its first
# block's row-count guess).
PACKED_RATIO = 5
# Member names a zip tool adds that are never the lead file (macOS resource forks,
# Finder and Explorer metadata).
_JUNK = frozenset({"__MACOSX", ".DS_Store", "Thumbs.db", "desktop.ini"})


def kind_of(head: bytes) -> str | None:
    """The compression the first bytes announce (``COMPRESSIONS``' values), if any."""
    for magic, kind in MAGIC:
        if head.startswith(magic):
            return kind
    if head[:3] == b"BZh" and head[3:4].isdigit() and head[4:10] in (_BZIP2_BLOCK, b""):
        return "bzip2"
    return None


def kind_by_name(name: str) -> str | None:
    return COMPRESSIONS.get(os.path.splitext(name)[1].lower())


def inner_name(name: str) -> str:
    """``leads.csv.gz`` -> ``leads.csv``: the name the decompressed bytes would have."""
    return os.path.splitext(name)[0]


class Inflating(io.RawIOBase):
    """A decompressed stream that counts what it hands on and turns every decoder error
    into one ``InputError`` line. ``close`` closes everything under it (``owned``)."""

    def __init__(
        self,
        stream: IO[bytes],
        *,
        kind: str,
        name: str,
        limit: int,
        owned: tuple[Any, ...] = (),
        archive: IO[bytes] | None = None,
    ) -> None:
        super().__init__()
        self._stream = stream
        self._archive = archive  # the packed bytes' file, whose position is the progress
        self._kind = kind
        self._name = name
        self._limit = limit
        self._owned = owned
        self.count = 0

    def readable(self) -> bool:
        return True

    def packed_read(self) -> int | None:
        """How far into the archive the decoder has read (its bytes, not the unpacked
        ones): a compressed input's progress. None where that is unknown (a pipe)."""
        if self._archive is None:
            return None
        try:
            return self._archive.tell()
        except (OSError, ValueError):  # not seekable, or closed at the end
            return None

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        try:
            data = self._stream.read(len(view))
        except InputError:
            raise
        except (
            OSError,
            EOFError,
            ValueError,
            zlib.error,
            lzma.LZMAError,
            zipfile.BadZipFile,
        ) as exc:
            raise InputError(_damaged(self._kind, exc), file=self._name) from None
        except Exception as exc:  # zstandard.ZstdError, and whatever a decoder adds later
            raise InputError(_damaged(self._kind, exc), file=self._name) from None
        n = len(data)
        self.count += n
        if self.count > self._limit:
            raise InputError(_too_big(self._kind, self._limit), file=self._name)
        view[:n] = data
        return n

    def close(self) -> None:
        if self.closed:
            return
        super().close()
        for thing in (self._stream, *self._owned):
            with contextlib.suppress(Exception):
                thing.close()


def _damaged(kind: str, exc: BaseException) -> str:
    detail = str(exc).strip() or type(exc).__name__
    what = "zip member" if kind == "zip" else f"{kind} data"
    return f"the {what} is damaged or truncated ({detail[:200]}); nothing was sent"


def _too_big(kind: str, limit: int) -> str:
    return (
        f"refusing to read on: the {kind} data inflates to more than {limit:,} bytes "
        "(a decompression bomb, or a file to unpack first); nothing was sent"
    )


def decompressor(kind: str, raw: BinaryIO) -> Any:
    """A reader of ``raw``'s decompressed bytes (gzip, bzip2, xz or zstd)."""
    if kind == "gzip":
        return gzip.GzipFile(fileobj=raw, mode="rb")  # concatenated members too
    if kind == "bzip2":
        return bz2.BZ2File(raw, "rb")
    if kind == "xz":
        return lzma.LZMAFile(raw, "rb")
    if kind == "zstd":
        import zstandard  # only a .zst input needs it

        return zstandard.ZstdDecompressor().stream_reader(
            raw, read_size=READ_BUFFER, read_across_frames=True
        )
    raise ValueError(f"not a stream compression: {kind}")


def inflate(
    raw: BinaryIO, kind: str, *, name: str, limit: int | None = None, owns: bool = True
) -> io.BufferedReader:
    """``raw`` (gzip, bzip2, xz or zstd) decompressed as it is read, bounded by ``limit``.

    Buffered: ``read(n)`` returns ``n`` bytes unless the stream ends, as a file's does,
    which the readers' sampling and the columnar reader's blocks rely on.
    """
    limit = MAX_INFLATED if limit is None else limit
    inner = decompressor(kind, raw)
    owned = (raw,) if owns else ()  # never the caller's stdin
    wrapped = Inflating(inner, kind=kind, name=name, limit=limit, owned=owned, archive=raw)
    return io.BufferedReader(wrapped, READ_BUFFER)


def packed_read(stream: object) -> int | None:
    """The archive bytes read so far under a stream ``inflate``, ``open_member`` or
    ``reopen`` gave (None for any other stream, or where unknown)."""
    inner = getattr(stream, "raw", None)
    return inner.packed_read() if isinstance(inner, Inflating) else None


def replay(head: bytes, rest: BinaryIO) -> io.BufferedReader:
    """A stream that cannot seek back (stdin, a pipe) with its sniffed head put back."""
    return io.BufferedReader(ByteStream(head, rest), READ_BUFFER)


# -- zip archives ---------------------------------------------------------------------------


@dataclass
class Member:
    """The lead file chosen inside a zip archive, opened for streaming."""

    name: str  # its name in the archive
    stream: io.BufferedReader
    size: int  # declared uncompressed bytes


def open_member(
    f: BinaryIO,
    *,
    name: str,
    member: str | None,
    seekable: bool,
    limit: int | None = None,
    known: Callable[[str], bool] = lambda _n: True,
    owns: bool = True,
) -> Member:
    """The one lead file in the zip archive ``f`` (or ``member``), checked, opened.

    ``known`` says whether a member's name is a lead file's (by extension); other
    files (a README.pdf) are not candidates. Hidden files and ``__MACOSX`` are never
    candidates. Several candidates and no ``member``: an ``InputError`` listing them.
    A zip read from a stream must be held in memory (zip's directory is at its end):
    at most ``spreadsheet.MEMORY_MAX_BYTES``. ``owns``: closing the member closes ``f``.
    """
    limit = MAX_INFLATED if limit is None else limit
    location: BinaryIO = f if seekable else in_memory(f, name)
    try:
        archive = zipfile.ZipFile(location)
        infos = archive.infolist()
    except Exception as exc:  # BadZipFile, but a hostile directory can raise others
        detail = str(exc).strip() or type(exc).__name__
        raise InputError(f"the zip archive is damaged or truncated ({detail})", file=name) from None
    try:
        chosen = _choose(infos, member, name, known)
        _check_member(chosen, name, limit, len(infos))
        try:
            stream = archive.open(chosen)
        except Exception as exc:  # an unsupported method (deflate64), a bad local header
            detail = str(exc).strip() or type(exc).__name__
            raise InputError(
                f"cannot read {chosen.filename!r} in the zip ({detail})", file=name
            ) from None
        shown = f"{name}:{chosen.filename}"
        owned = (archive, location) if owns or location is not f else (archive,)
        wrapped = Inflating(
            stream, kind="zip", name=shown, limit=limit, owned=owned, archive=location
        )
        return Member(chosen.filename, io.BufferedReader(wrapped, READ_BUFFER), chosen.file_size)
    except BaseException:
        archive.close()
        raise


def in_memory(f: BinaryIO, name: str) -> BinaryIO:
    """A zip from a stream, held in memory (bounded) so its directory can be read."""
    data = f.read(MEMORY_MAX_BYTES + 1)
    if len(data) > MEMORY_MAX_BYTES:
        raise InputError(
            f"a zip archive read from a pipe may be at most {MEMORY_MAX_BYTES // 1024**2} MB "
            "(its directory is at its end); import it by its path",
            file=name,
        )
    return io.BytesIO(data)


def _is_junk(filename: str) -> bool:
    parts = filename.replace("\\", "/").split("/")
    return any(p in _JUNK for p in parts) or parts[-1].startswith(".")


def _unsafe(filename: str) -> bool:
    """A member name that climbs out of the archive or is absolute: a crafted archive."""
    parts = filename.replace("\\", "/").split("/")
    drive = len(filename) > 1 and filename[1] == ":"
    return filename.startswith(("/", "\\")) or drive or ".." in parts or "\x00" in filename


def _choose(
    infos: list[zipfile.ZipInfo], member: str | None, name: str, known: Callable[[str], bool]
) -> zipfile.ZipInfo:
    if len(infos) > ZIP_MAX_MEMBERS:
        raise InputError(
            f"refusing to open: the zip holds {len(infos):,} files (the limit is "
            f"{ZIP_MAX_MEMBERS:,})",
            file=name,
        )
    unsafe = [i.filename for i in infos if _unsafe(i.filename)]
    if unsafe:
        raise InputError(
            f"refusing to open: the zip has a member named {unsafe[0][:80]!r}, outside the "
            "archive (a crafted archive?); nothing was read",
            file=name,
        )
    files = [i for i in infos if not i.is_dir() and not _is_junk(i.filename)]
    if member is not None:
        return _named(files, member, name)
    candidates = [i for i in files if known(i.filename)]
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        listed = _listing([i.filename for i in files]) or "nothing but folders or hidden files"
        raise InputError(f"the zip holds no lead file ({listed})", file=name)
    raise InputError(
        f"the zip holds {len(candidates)} lead files: {_listing([i.filename for i in candidates])};"
        " pick one with --member NAME",
        file=name,
    )


def _named(files: list[zipfile.ZipInfo], member: str, name: str) -> zipfile.ZipInfo:
    """``--member``: the exact name, else the one member with that base name."""
    exact = [i for i in files if i.filename == member]
    if exact:
        return exact[0]
    base = [i for i in files if os.path.basename(i.filename.rstrip("/")) == member]
    if len(base) == 1:
        return base[0]
    listed = _listing([i.filename for i in files]) or "no files"
    raise InputError(f"no member {member!r} in the zip (it holds {listed})", file=name)


def _listing(names: list[str], limit: int = 10) -> str:
    shown = ", ".join(repr(n[:80]) for n in names[:limit])
    return shown + (f", and {len(names) - limit:,} more" if len(names) > limit else "")


def _check_member(info: zipfile.ZipInfo, name: str, limit: int, count: int) -> None:
    """The zip-bomb and protection checks, from the directory's declared numbers."""
    if info.flag_bits & 0x1:
        raise InputError(
            f"{info.filename!r} in the zip is password-protected; unzip it first", file=name
        )
    ratio = info.file_size / max(info.compress_size, 1)
    if info.file_size > ZIP_RATIO_FLOOR and ratio > ZIP_MAX_RATIO:
        raise InputError(
            f"refusing to open: {info.filename[:80]!r} in the zip would inflate {ratio:,.0f}x "
            f"to {info.file_size:,} bytes (a zip bomb?); nothing was read",
            file=name,
        )
    if info.file_size > limit:
        raise InputError(
            f"refusing to open: {info.filename[:80]!r} in the zip would inflate to "
            f"{info.file_size:,} bytes, over the {limit:,}-byte limit; nothing was read",
            file=name,
        )


def reopen(
    path: str, kind: str, member: str | None, *, name: str, limit: int | None = None
) -> io.BufferedReader:
    """The decompressed bytes of the file at ``path`` again (``SourceInfo.compression``,
    ``.member``): what the columnar reader reads in blocks, without a copy on disk.
    (Decompressing ahead on a thread of its own was tried: no gain measured on two
    cores, where the parsing workers already keep both busy.)"""
    raw = open(path, "rb")  # noqa: SIM115 -- the returned stream owns and closes it
    try:
        if kind == "zip":
            inner = open_member(raw, name=name, member=member, seekable=True, limit=limit).stream
        else:
            inner = inflate(raw, kind, name=name, limit=limit)
    except BaseException:
        raw.close()
        raise
    return inner
