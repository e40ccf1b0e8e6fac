"""Private copies of stream inputs, and the fingerprint that tells imports apart.

stdin, a FIFO or ``/dev/fd/N`` (``<(zcat leads.gz)``) can be read only once,
but a run must fingerprint its input, read it, and perhaps resume it later: so
a stream is copied to ``STATE_DIR/stdin/<content hash>.bin`` first. The copy
is bounded (``SHANDY_MAX_STREAM_BYTES``), and a partial copy (``.part``) never
outlives the process that wrote it, however it stops (short of ``kill -9``,
which ``shandy runs --prune`` sweeps up). Other devices (``/dev/zero``, a tty,
a disk) are refused at once: they never end, or are no input at all.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import IO, Any

import orjson
from xxhash import xxh3_128

from shandy_cli._files import ensure_private_dir, open_private, replace_file
from shandy_cli.config import ENV_MAX_STREAM_BYTES
from shandy_cli.errors import InputError
from shandy_cli.journal import UNFINISHED, Journal

BLOCK = 1 << 20
SPOOL_DIR = "stdin"  # under the state dir; the name predates pipes and /dev/fd


def spool_dir(state_dir: Path) -> Path:
    return state_dir / SPOOL_DIR


def is_stream(path: str) -> bool:
    """True for a pipe, FIFO or socket (``/dev/fd/N``, ``/dev/stdin`` of a pipe): readable
    once, so copied aside first. A regular file or directory is not (``open_source`` reads
    or refuses it). Any other device is refused here: ``/dev/zero`` would fill the disk."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False  # open_source will say what is wrong with it
    if stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode):
        return True
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
        return False
    raise InputError(_device_text(mode), file=path)


def check_stdin(source: IO[bytes]) -> None:
    """``-`` read from a terminal or a device (``< /dev/zero``) is refused like the path."""
    try:
        mode = os.fstat(source.fileno()).st_mode
    except (OSError, AttributeError, ValueError):
        return  # an in-memory stream (a library caller's BytesIO): bounded by the cap
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        raise InputError(_device_text(mode), file="<stdin>")


def _device_text(mode: int) -> str:
    kind = "a terminal or character device" if stat.S_ISCHR(mode) else "a device"
    return (
        f"is {kind}, not a file or a pipe; nothing was sent "
        "(pipe the data in, e.g. `zcat leads.csv.gz | shandy import -`)"
    )


def refuse_devices(
    paths: Sequence[str], spools: dict[int, Path], stdin: IO[bytes] | None = None
) -> None:
    """Refuse device inputs before anything else, a dry run's included (which reads
    streams in place: ``/dev/urandom`` would be read for ever). An input a resume reads
    from its saved copy is not looked at: stdin is then the user's terminal."""
    for index, path in enumerate(paths):
        if index in spools:
            continue
        if path == "-":
            check_stdin(stdin or sys.stdin.buffer)
        else:
            is_stream(path)


def spool_streams(
    paths: Sequence[str],
    spools: dict[int, Path],
    state_dir: Path,
    limit: int,
    stdin: IO[bytes] | None = None,
) -> None:
    """Copy every stream input not yet in ``spools`` (a resume brings the first copies)."""
    for index, path in enumerate(paths):
        if index in spools:
            continue
        if path == "-":
            source = stdin or sys.stdin.buffer
            check_stdin(source)
            spools[index] = spool(source, state_dir, limit, "<stdin>")
        elif is_stream(path):
            with open(path, "rb") as fh:
                spools[index] = spool(fh, state_dir, limit, path)


def spool(source: IO[bytes], state_dir: Path, limit: int, name: str) -> Path:
    """Copy ``source`` to a private file named by its content; at most ``limit`` bytes."""

    def fill(out: HashingWriter) -> None:
        size = 0
        # One byte past the cap tells "exactly the cap" from "more than the cap".
        while block := source.read(min(BLOCK, limit + 1 - size)):
            size += len(block)
            if size > limit:
                raise InputError(_too_big_text(limit), file=name)
            out.write(block)

    return spool_copy(state_dir, fill)


class HashingWriter:
    """A file that hashes what is written to it, so the copy is named by its content."""

    def __init__(self, raw: IO[bytes]) -> None:
        self.raw = raw
        self.digest = xxh3_128()

    def write(self, data: bytes) -> int:
        self.digest.update(data)
        return self.raw.write(data)


def spool_copy(state_dir: Path, fill: Callable[[HashingWriter], None]) -> Path:
    """A private copy (0600, in the state dir's 0700 spool folder) of what ``fill`` writes,
    named by its content: the one way stdin, pipes and links are copied aside. Any error,
    Ctrl-C, SIGTERM or SIGHUP: a partial copy is never left behind."""
    folder = ensure_private_dir(spool_dir(state_dir))
    tmp = folder / f".{secrets.token_hex(8)}.part"
    try:
        with open_private(tmp, "wb") as raw:
            out = HashingWriter(raw)
            fill(out)
        target = folder / f"{out.digest.hexdigest()}.bin"
        if target.is_file():  # the same bytes, spooled before (and maybe open in a run)
            tmp.unlink()
        else:
            replace_file(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    return target


def _too_big_text(limit: int) -> str:
    return (
        f"more than {limit:,} bytes on this stream, the most shandy copies aside "
        f"({ENV_MAX_STREAM_BYTES}); nothing was sent. Raise {ENV_MAX_STREAM_BYTES} "
        "(e.g. 20GB) or import the file by its path"
    )


def fingerprint(
    paths: Sequence[str], spools: dict[int, Path], part: dict[str, Any]
) -> tuple[str, list[str | None]]:
    """The import's identity: ``part`` (target and options), then every input's bytes
    (a stream's copy in place of the stream); and, from the same read, each input's own
    content digest (``None`` where it cannot be read), which the journal keeps."""
    # XXH3-128: ~10 GB/s, so hashing a large export costs next to nothing; it
    # tells runs apart, it does not defend against a forger (who owns the files).
    h = xxh3_128()
    h.update(orjson.dumps(part, option=orjson.OPT_SORT_KEYS, default=str))
    digests: list[str | None] = []
    for index, path in enumerate(paths):
        h.update(b"\0file\0")
        target = spools.get(index, Path(path))
        own = xxh3_128()
        try:
            with open(target, "rb") as fh:
                while block := fh.read(BLOCK):
                    h.update(block)
                    own.update(block)
            digests.append(own.hexdigest())
        except OSError:
            h.update(path.encode())  # open_source will report the problem clearly
            digests.append(None)
    return h.hexdigest(), digests


def fingerprint_inputs(
    paths: Sequence[str], spools: dict[int, Path], part: dict[str, Any]
) -> tuple[str, list[dict[str, Any] | None]]:
    """The import's fingerprint (``fingerprint``) and, from the same read, each input as
    it was read (``input_identity``; None where it cannot be read: opening it will
    report the problem clearly), which the journal keeps for the failures file."""
    found, digests = fingerprint(paths, spools, part)
    inputs: list[dict[str, Any] | None] = []
    for index, (path, digest) in enumerate(zip(paths, digests, strict=True)):
        target = spools.get(index, Path(path))
        try:
            inputs.append(None if digest is None else input_identity(target, digest))
        except OSError:
            inputs.append(None)
    return found, inputs


def input_identity(path: Path, digest: str | None = None) -> dict[str, Any]:
    """What an input is, journalled when it is read: size and mtime (the cheap test) and
    its content's digest (the truth, for a copy made with ``cp -p``). ``digest``: one
    already taken from the same bytes (the fingerprint's read), so the file is read once."""
    info = path.stat()
    found = digest if digest is not None else digest_file(path)
    return {"size": info.st_size, "mtime_ns": info.st_mtime_ns, "digest": found}


def input_change(path: Path, identity: dict[str, Any]) -> str | None:
    """How ``path`` differs from the input a run read (``input_identity``), or None."""
    try:
        info = path.stat()
    except OSError:
        return "is gone"
    if (info.st_size, info.st_mtime_ns) != (identity.get("size"), identity.get("mtime_ns")):
        return "changed"
    try:
        return None if digest_file(path) == identity.get("digest") else "changed"
    except OSError:
        return "is unreadable"


def digest_file(path: Path) -> str:
    """A file's content digest: XXH3-128 (~10 GB/s); it only has to tell a re-prepared
    body (or input) from a different one."""
    h = xxh3_128()
    with path.open("rb") as fh:
        while block := fh.read(BLOCK):
            h.update(block)
    return h.hexdigest()


def stored_spools(stored: dict[str, Any]) -> dict[int, Path]:
    """The private copies of stdin and pipes a journalled run read, by input index."""
    return {int(i): Path(p) for i, p in (stored.get("spools") or {}).items()}


def releasable(journal: Journal, spools: Iterable[Path]) -> list[Path]:
    """The copies among ``spools`` no unfinished run may still read. Copies are named by
    content, so another run that read the same bytes (to another step, say) and has yet
    to finish holds the very same file: its resume needs it."""
    held = {
        path
        for run in journal.runs(limit=-1)  # every run: SQLite reads LIMIT -1 as no limit
        if run.outcome in UNFINISHED
        for path in stored_spools(run.options).values()
    }
    return [Path(p) for p in spools if Path(p) not in held]


def remove_spools(spools: Iterable[Path]) -> None:
    for path in spools:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
