"""Compressed inputs (.gz, .bz2, .xz, .zst, .zip) and the same leads in every format.

The done-when of issue 16 for inputs: the same leads as .csv, .csv.gz, .csv.zst,
.zip, .parquet, .feather and .json import to the same prospects and counts, over
real HTTP to the sandbox, on both reading paths where they apply. Then the
attacks: bombs, truncation, crafted names, nesting, misnaming -- each one clear
line, exit 2, nothing sent.
"""

from __future__ import annotations

import bz2
import csv
import gzip
import io
import json
import lzma
import secrets
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import zstandard
from incli import Ran, run_cli

from shandy_cli.client import SaleshandyClient
from shandy_cli.pipeline import prepare as prepare_mod
from shandy_cli.pipeline._readers import compressed
from shandy_cli.pipeline.columnar import framing
from shandy_cli.pipeline.events import ReadProgress
from shandy_cli.pipeline.prepare import PrepareContext, Prepared, fetch_rows, prepare
from shandy_cli.pipeline.results import ImportOptions
from shandy_cli.pipeline.sources import open_source
from shandy_cli.pipeline.spool import input_identity
from shandy_cli.sandbox import Sandbox

HEADER = ["Email", "First Name", "Company", "Phone Number"]


def lead_rows(n: int = 40) -> list[list[str]]:
    rows = []
    for i in range(n):
        email = f"person{i}@example.com"
        if i % 13 == 5:
            email = "not-an-address"  # rejected
        if i % 17 == 9:
            email = "PERSON1@example.com"  # a repeat of row 2, rejected
        rows.append([email, f"Ann {i}", f"Acme, Inc. {i % 4}", str(5550000000 + i)])
    return rows


def csv_bytes(rows: list[list[str]] | None = None) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(HEADER)
    writer.writerows(rows if rows is not None else lead_rows())
    return out.getvalue().encode()


def frame(rows: list[list[str]] | None = None) -> pl.DataFrame:
    """The leads typed as a warehouse would type them: the phone a 64-bit integer."""
    got = rows if rows is not None else lead_rows()
    data = {h: [r[i] for r in got] for i, h in enumerate(HEADER)}
    return pl.DataFrame(data).with_columns(pl.col("Phone Number").cast(pl.Int64))


def zipped(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buf.getvalue()


def _write_columnar(path: Path, how: str) -> None:
    if how == "parquet":
        frame().write_parquet(path, row_group_size=7)  # several row groups
    elif how == "feather":
        frame().write_ipc(path)
    else:
        path.write_bytes(json.dumps(frame().to_dicts()).encode())


MAKERS: dict[str, Callable[[Path], Path]] = {}


def maker(name: str) -> Callable[[Callable[[Path], bytes]], None]:
    def register(build: Callable[[Path], bytes]) -> None:
        def write(folder: Path) -> Path:
            path = folder / name
            path.write_bytes(build(path))
            return path

        MAKERS[name] = write

    return register


maker("leads.csv")(lambda _p: csv_bytes())
maker("leads.csv.gz")(lambda _p: gzip.compress(csv_bytes(), 6))
maker("leads.csv.bz2")(lambda _p: bz2.compress(csv_bytes()))
maker("leads.csv.xz")(lambda _p: lzma.compress(csv_bytes()))
maker("leads.csv.zst")(lambda _p: zstandard.ZstdCompressor(level=3).compress(csv_bytes()))
maker("leads.zip")(lambda _p: zipped({"__MACOSX/._leads.csv": b"junk", "leads.csv": csv_bytes()}))
for _fmt, _ext in (("parquet", "parquet"), ("feather", "feather"), ("json", "json")):

    def _columnar(path: Path, how: str = _fmt) -> bytes:
        _write_columnar(path, how)
        return path.read_bytes()

    maker(f"leads.{_ext}")(_columnar)


def shandy(tmp_path: Path, *args: str, env: dict[str, str] | None = None, **kw: bytes) -> Ran:
    base = {"SHANDY_STATE_DIR": str(tmp_path / "state"), "SHANDY_SANDBOX_DELAY": "0.05"}
    return run_cli(*args, cwd=tmp_path, env={**base, **(env or {})}, **kw)


def read_csv(path: str) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def posts(sandbox: Sandbox) -> list[dict]:
    return [r for r in sandbox.requests() if r["method"] == "POST"]


def landed(sandbox: Sandbox) -> list[tuple[str, ...]]:
    """Every prospect the sandbox holds: email and the fields sent, sorted."""
    found = []
    with SaleshandyClient(sandbox.url, "k") as client:
        page = 1
        while batch := client.list_prospects(page=page):
            found.extend(batch)
            page += 1
    return sorted(json.dumps(p, sort_keys=True) for p in found)  # type: ignore[misc]


EXPECTED_COUNTS = {"rows_read": 40, "rows_submitted": 35, "rows_rejected": 5, "rows_skipped": 0}


@pytest.mark.parametrize("way", ["never", "always"])
@pytest.mark.parametrize("name", sorted(MAKERS))
def test_every_format_imports_the_same_prospects_and_counts(
    sandbox: Sandbox, tmp_path: Path, name: str, way: str
) -> None:
    """One set of leads, every packing: the same counts, the same prospects read back."""
    ref_dir, dir_ = tmp_path / "ref", tmp_path / "given"
    ref_dir.mkdir()
    dir_.mkdir()
    env = {"SALESHANDY_BASE_URL": sandbox.url, "SALESHANDY_API_KEY": "k", "SHANDY_COLUMNAR": way}
    path = MAKERS[name](dir_)
    ran = shandy(dir_, "import", str(path), "--step", "StepA1", "--json", env=env)
    assert ran.returncode == 1, ran.stderr  # the five rejects
    doc = json.loads(ran.stdout)
    assert {k: doc[k] for k in EXPECTED_COUNTS} == EXPECTED_COUNTS
    assert doc["completed"] and doc["rows_failed"] == 0
    got = landed(sandbox)
    assert len(got) == 35
    # the same leads as a plain CSV, into a sandbox of their own
    with _fresh(tmp_path / "sb2") as other:
        env2 = {**env, "SALESHANDY_BASE_URL": other.url}
        ref = MAKERS["leads.csv"](ref_dir)
        again = shandy(ref_dir, "import", str(ref), "--step", "StepA1", "--json", env=env2)
        assert again.returncode == 1, again.stderr
        assert {k: json.loads(again.stdout)[k] for k in EXPECTED_COUNTS} == EXPECTED_COUNTS
        assert landed(other) == got
    rejects = read_csv(doc["rejects_file"])
    shown = f"{path}:leads.csv" if name == "leads.zip" else str(path)
    assert {r["_file"] for r in rejects} == {shown}
    assert [int(r["_row"]) for r in rejects] == [6, 10, 19, 27, 32]
    # the rejects hold the original values as the contract spells them (no ".0")
    assert rejects[0]["Phone Number"] == "5550000005"


def _fresh(state: Path) -> Any:  # a second sandbox, as a context manager
    from shandy_cli.sandbox import SandboxConfig, start_sandbox

    return start_sandbox(SandboxConfig(state_dir=state, delay_base=0.05, delay_per_row=0.0))


def test_rejects_name_the_archive_and_member(tmp_path: Path) -> None:
    (tmp_path / "leads.zip").write_bytes(zipped({"in/leads.csv": csv_bytes()}))
    (tmp_path / "leads.csv.gz").write_bytes(gzip.compress(csv_bytes()))
    for name, shown in (("leads.zip", "leads.zip:in/leads.csv"), ("leads.csv.gz", "leads.csv.gz")):
        ran = shandy(tmp_path, "import", name, "--sandbox", "--step", "StepA1", "--json")
        assert ran.returncode == 1, ran.stderr
        doc = json.loads(ran.stdout)
        rejects = read_csv(doc["rejects_file"])
        assert {r["_file"] for r in rejects} == {shown}
        assert doc["files"] == [shown]


def test_stdin_is_recognised_by_magic_bytes(tmp_path: Path) -> None:
    """gzip, zstd, a zip and Parquet piped in, with no name: each read for what it is."""
    pq = io.BytesIO()
    frame().write_parquet(pq)
    packed = {
        "gzip": gzip.compress(csv_bytes()),
        "zstd": zstandard.ZstdCompressor().compress(csv_bytes()),
        "bzip2": bz2.compress(csv_bytes()),
        "xz": lzma.compress(csv_bytes()),
        "zip": zipped({"leads.csv": csv_bytes()}),
        "parquet": pq.getvalue(),
    }
    for kind, data in packed.items():
        ran = shandy(tmp_path, "import", "-", "--sandbox", "--step", "StepA1", "--json", stdin=data)
        assert ran.returncode == 1, (kind, ran.stderr)
        doc = json.loads(ran.stdout)
        assert {k: doc[k] for k in EXPECTED_COUNTS} == EXPECTED_COUNTS, kind


def test_a_zip_with_several_lead_files_needs_member(tmp_path: Path) -> None:
    archive = tmp_path / "export.zip"
    other = csv_bytes(lead_rows(3))
    archive.write_bytes(
        zipped(
            {
                "a/leads.csv": csv_bytes(),
                "b/other.csv": other,
                ".hidden.csv": b"x",
                "__MACOSX/a/._leads.csv": b"x",
                "notes.pdf": b"%PDF",
            }
        )
    )
    ran = shandy(tmp_path, "import", "export.zip", "--sandbox", "--step", "StepA1", "--dry-run")
    assert ran.returncode == 2
    assert "'a/leads.csv', 'b/other.csv'; pick one with --member NAME" in ran.stderr
    assert "hidden" not in ran.stderr and "MACOSX" not in ran.stderr
    assert "Traceback" not in ran.stderr and len(ran.stderr.strip().splitlines()) == 1
    for member in ("b/other.csv", "other.csv"):
        ran = shandy(
            tmp_path,
            "import",
            "export.zip",
            "--member",
            member,
            "--sandbox",
            "--step",
            "StepA1",
            "--dry-run",
            "--json",
        )
        assert ran.returncode == 0, ran.stderr
        assert json.loads(ran.stdout)["rows_read"] == 3
    ran = shandy(
        tmp_path,
        "import",
        "export.zip",
        "--member",
        "nope.csv",
        "--sandbox",
        "--step",
        "StepA1",
        "--dry-run",
    )
    assert ran.returncode == 2 and "no member 'nope.csv' in the zip" in ran.stderr
    ran = shandy(tmp_path, "preview", "export.zip", "--member", "other.csv", "--json")
    assert ran.returncode == 0, ran.stderr
    assert json.loads(ran.stdout)["file"] == "export.zip:b/other.csv"


def test_member_is_part_of_the_fingerprint() -> None:
    a = ImportOptions(member="a.csv").fingerprint_part()
    b = ImportOptions(member="b.csv").fingerprint_part()
    assert a != b


# -- the columnar reader on compressed files -----------------------------------------------


def _prepare(
    paths: list[Path],
    out: Path,
    way: str,
    listener: Callable[[object], None] = lambda e: None,
    **options: object,
) -> tuple[Prepared, Path]:
    run_dir = out / "run"
    run_dir.mkdir(parents=True)
    ctx = PrepareContext(
        paths=[str(p) for p in paths],
        opts=ImportOptions(step_id="S1", columnar=way, **options),  # type: ignore[arg-type]
        labels=HEADER,
        step_id="S1",
        run_dir=run_dir,
        rejects_path=out / "rejects.csv",
        listener=listener,
        notice=lambda text, level: None,
    )
    return prepare(ctx), run_dir


def _snap(result: Prepared) -> dict[str, object]:
    return {
        "counts": (result.rows_read, result.rows_submitted, result.rows_rejected),
        "plan": [(c.index, c.rows, c.bytes) for c in result.chunks],
        "chunks": [c.path.read_bytes() if c.path else None for c in result.chunks],
        "keys": [result.keys_path(c).read_bytes() for c in result.chunks if c.path],
        "rejects": result.rejects_file.read_bytes() if result.rejects_file else None,
    }


@pytest.mark.parametrize("name", ["leads.csv.gz", "leads.csv.zst", "leads.zip", "leads.csv.xz"])
def test_columnar_reader_reads_compressed_csv_byte_for_byte(
    tmp_path: Path, name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(framing, "BLOCK", 1 << 10)  # many blocks
    rows = lead_rows(2000)
    plain = tmp_path / "leads.csv"
    plain.write_bytes(csv_bytes(rows))
    packed = {
        "leads.csv.gz": lambda d: gzip.compress(d),
        "leads.csv.zst": lambda d: zstandard.ZstdCompressor().compress(d),
        "leads.csv.xz": lambda d: lzma.compress(d),
        "leads.zip": lambda d: zipped({"leads.csv": d}),
    }[name](plain.read_bytes())
    path = tmp_path / name
    path.write_bytes(packed)
    fast, _ = _prepare([path], tmp_path / "fast", "always")
    slow, _ = _prepare([path], tmp_path / "slow", "never")
    ref, _ = _prepare([plain], tmp_path / "ref", "always")
    assert fast.rows_columnar == 2000 and slow.rows_columnar == 0
    want = _snap(ref)
    for got in (_snap(fast), _snap(slow)):
        for key in ("counts", "plan", "chunks", "keys"):
            assert got[key] == want[key], key
    # the rejects name the archive, not the plain file
    assert fast.rejects_file is not None and slow.rejects_file is not None
    assert fast.rejects_file.read_bytes() == slow.rejects_file.read_bytes()
    assert str(path).encode() in fast.rejects_file.read_bytes()


@pytest.mark.parametrize("way", ["never", "always"])
@pytest.mark.parametrize("name", ["leads.csv.gz", "leads.csv.zst", "leads.zip", "leads.csv.bz2"])
def test_a_compressed_inputs_progress_runs_to_100_percent_of_the_archive(
    tmp_path: Path, name: str, way: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Progress of a compressed input is counted in the archive's bytes, as ``ls`` shows
    its size: it rises, stays within the total, ends at it, and passes through the middle
    (the unpacked bytes would run to ~2x past 100%, the ETA with them)."""
    monkeypatch.setattr(framing, "BLOCK", 64 << 10)  # many blocks on the columnar path
    monkeypatch.setattr(compressed, "READ_BUFFER", 64 << 10)  # the archive read in steps
    rows = [[f"p{i}@example.com", "Ann", secrets.token_hex(24), ""] for i in range(40_000)]
    data = csv_bytes(rows)
    packed = {
        "leads.csv.gz": lambda d: gzip.compress(d, 1),
        "leads.csv.zst": lambda d: zstandard.ZstdCompressor(level=1).compress(d),
        "leads.csv.bz2": lambda d: bz2.compress(d, 1),
        "leads.zip": lambda d: zipped({"leads.csv": d}),
    }[name](data)
    path = tmp_path / name
    path.write_bytes(packed)
    events: list[ReadProgress] = []
    got, _ = _prepare([path], tmp_path / "out", way, lambda e: _keep(events, e))
    assert got.rows_read == 40_000 and got.rows_columnar == (40_000 if way == "always" else 0)
    total = len(packed)
    assert {e.bytes_total for e in events} == {total}
    seen = [e.bytes_read for e in events]
    assert seen == sorted(seen) and seen[-1] == total and events[-1].done
    assert any(0.1 * total < n < 0.9 * total for n in seen), seen


def _keep(events: list[ReadProgress], event: object) -> None:
    if isinstance(event, ReadProgress):
        events.append(event)


def test_auto_takes_a_compressed_csv_by_its_guessed_size(tmp_path: Path) -> None:
    info = open_source(str(MAKERS["leads.csv.gz"](tmp_path))).info
    assert info.compression == "gzip"
    big = tmp_path / "big.csv.gz"
    big.write_bytes(b"\0" * (prepare_mod.COLUMNAR_MIN_SIZE // prepare_mod.PACKED_RATIO + 1))
    assert not prepare_mod._cheap_no(info, str(big), "auto")
    assert prepare_mod._cheap_no(info, str(tmp_path / "leads.csv.gz"), "auto")


def test_no_decompressed_copy_is_left_on_disk(sandbox: Sandbox, tmp_path: Path) -> None:
    env = {"SALESHANDY_BASE_URL": sandbox.url, "SALESHANDY_API_KEY": "k"}
    MAKERS["leads.csv.gz"](tmp_path)
    ran = shandy(tmp_path, "import", "leads.csv.gz", "--step", "StepA1", "--json", env=env)
    assert ran.returncode == 1, ran.stderr
    plain = csv_bytes()
    header = plain.split(b"\n", 1)[0]
    for path in tmp_path.rglob("*"):
        if path.is_file() and path.name != "leads.csv.gz":
            data = path.read_bytes()
            assert plain[len(header) :] not in data, path  # no copy of the decompressed file


def test_failures_join_reads_archives_again(tmp_path: Path) -> None:
    """fetch_rows (the failures file's join) and input_change work on archives."""
    for name in ("leads.csv.gz", "leads.zip", "leads.parquet", "leads.csv.zst"):
        path = MAKERS[name](tmp_path)
        identity = [input_identity(path)]
        found = fetch_rows([str(path)], ImportOptions(), {}, {0: {3, 40}}, identity)
        assert found[(0, 3)][0] == "person2@example.com", name
        assert found[(0, 40)][3] == "5550000039", name
        path.write_bytes(path.read_bytes()[:-1] + b"\0")  # changed since the run read it
        warned: list[str] = []
        assert fetch_rows([str(path)], ImportOptions(), {}, {0: {3}}, identity, warned.append) == {}
        assert warned and "changed since the run read it" in warned[0]


# -- attacks: one clear line, exit 2, nothing sent ------------------------------------------


def _bomb_zip(path: Path, size: int) -> None:
    with (
        zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive,
        archive.open("leads.csv", "w", force_zip64=True) as fh,
    ):
        fh.write(b"Email\n")
        block = b"a@b.test\n" * (1 << 17)
        for _ in range(size // len(block) + 1):
            fh.write(block)


def _gzip_bomb(path: Path, size: int) -> None:
    """A few hundred kB that inflate to ``size``: long rows, so reading is quick."""
    row = b"a@b.test," + b"x" * 8000 + b"\n"
    one = gzip.compress(b"Email,Company\n" + row * 1024, 9)  # ~8 MB inflated
    body = gzip.compress(row * 1024, 9)
    path.write_bytes(one + body * (size // (8 << 20) + 1))  # concatenated members


def _truncated_gzip(path: Path) -> None:
    data = gzip.compress(csv_bytes(lead_rows(5000)))
    path.write_bytes(data[: len(data) // 2])


def _traversal_zip(path: Path) -> None:
    path.write_bytes(zipped({"../../etc/leads.csv": csv_bytes()}))


def _zip_of_zip(path: Path) -> None:
    path.write_bytes(zipped({"inner.zip": zipped({"leads.csv": csv_bytes()})}))


def _gzip_named_csv(path: Path) -> None:
    path.write_bytes(gzip.compress(csv_bytes()))


def _csv_named_gz(path: Path) -> None:
    path.write_bytes(csv_bytes())


def _corrupt_parquet(path: Path) -> None:
    buf = io.BytesIO()
    frame(lead_rows(500)).write_parquet(buf)
    data = bytearray(buf.getvalue())
    data[100:400] = b"\xff" * 300  # a damaged column chunk, footer intact
    path.write_bytes(bytes(data))


def _truncated_parquet(path: Path) -> None:
    buf = io.BytesIO()
    frame().write_parquet(buf)
    path.write_bytes(buf.getvalue()[:-30])


def _struct_parquet(path: Path) -> None:
    pl.DataFrame(
        {"Email": ["a@b.test"], "Address": [{"city": "Oslo", "zip": "0150"}]}
    ).write_parquet(path)


def _gzipped_gzip(path: Path) -> None:
    path.write_bytes(gzip.compress(gzip.compress(csv_bytes())))


def _encrypted_zip_flag(path: Path) -> None:
    data = bytearray(zipped({"leads.csv": csv_bytes()}))
    central = data.rfind(b"PK\x01\x02")
    data[central + 8] |= 1  # the central directory's "encrypted" flag
    path.write_bytes(bytes(data))


ATTACKS: dict[str, tuple[str, Callable[[Path], None], str]] = {
    "zip bomb": ("bomb.zip", lambda p: _bomb_zip(p, 120 << 20), "a zip bomb?"),
    "gzip bomb": ("bomb.csv.gz", lambda p: _gzip_bomb(p, 40 << 20), "inflates to more than"),
    "truncated gzip": ("cut.csv.gz", _truncated_gzip, "damaged or truncated"),
    "zip with ../": ("evil.zip", _traversal_zip, "outside the archive"),
    "zip of a zip": ("nested.zip", _zip_of_zip, "an archive inside an archive"),
    "gzip named .csv": ("leads.csv", _gzip_named_csv, "name it leads.csv.gz"),
    "csv named .gz": ("leads.csv.gz", _csv_named_gz, "is not gzip-compressed data"),
    "gzip twice": ("twice.gz", _gzipped_gzip, "compressed twice"),
    "corrupt parquet": ("bad.parquet", _corrupt_parquet, "cannot read the Parquet file"),
    "truncated parquet": ("cut.parquet", _truncated_parquet, "cannot read the Parquet file"),
    "struct column": ("nested.parquet", _struct_parquet, "'Address' holds nested values"),
    "encrypted zip": ("locked.zip", _encrypted_zip_flag, "password-protected"),
}


@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_attacks_are_one_clear_line_exit_2_nothing_sent(
    sandbox: Sandbox, tmp_path: Path, attack: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    name, build, said = ATTACKS[attack]
    build(tmp_path / name)
    # the inflate bound lowered for the gzip bomb (4 GB by default) by its setting
    env = {
        "SALESHANDY_BASE_URL": sandbox.url,
        "SALESHANDY_API_KEY": "k",
        "SHANDY_MAX_STREAM_BYTES": "4MB",
    }
    for way in ("never", "always"):
        ran = shandy(
            tmp_path,
            "import",
            name,
            "--step",
            "StepA1",
            "--json",
            env={**env, "SHANDY_COLUMNAR": way, "SHANDY_STATE_DIR": str(tmp_path / way)},
        )
        assert ran.returncode == 2, (attack, way, ran.stdout, ran.stderr)
        assert said in ran.stderr, (attack, ran.stderr)
        assert "Traceback" not in ran.stderr
        errors = [line for line in ran.stderr.splitlines() if "error" in line]
        assert len(errors) == 1 and errors[0].startswith("shandy: error: "), ran.stderr
        assert json.loads(ran.stdout)["error"]
    assert posts(sandbox) == []


def test_a_gzip_bomb_stops_on_the_columnar_path_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The columnar reader reads its own decompressed stream: bounded the same way."""
    monkeypatch.setattr(compressed, "MAX_INFLATED", 12 << 20)
    path = tmp_path / "bomb.csv.gz"
    _gzip_bomb(path, 40 << 20)
    with pytest.raises(Exception, match="inflates to more than"):
        _prepare([path], tmp_path / "fast", "always")


def test_wrong_compressed_kind_names_what_it_is(tmp_path: Path) -> None:
    path = tmp_path / "leads.csv.gz"
    path.write_bytes(zstandard.ZstdCompressor().compress(csv_bytes()))
    ran = shandy(tmp_path, "preview", str(path))
    assert ran.returncode == 2
    assert "named .gz, but this is zstd data" in ran.stderr


@pytest.mark.parametrize("fifo_name", ["pipe", "leads.zip", "leads.csv.gz"])
def test_pipes_of_archives_are_read(tmp_path: Path, fifo_name: str) -> None:
    """A FIFO (what ``<(cat leads.zip)`` is): spooled, then read for what it holds."""
    import os
    import threading

    data = zipped({"leads.csv": csv_bytes()}) if "zip" in fifo_name else gzip.compress(csv_bytes())
    for dry in (True, False):
        fifo = tmp_path / fifo_name
        os.mkfifo(fifo)

        def feed(target: Path = fifo) -> None:
            with open(target, "wb") as fh:
                fh.write(data)

        writer = threading.Thread(target=feed)
        writer.start()
        args = ["--dry-run"] if dry else []
        ran = shandy(
            tmp_path, "import", str(fifo), "--sandbox", "--step", "StepA1", "--json", *args
        )
        writer.join()
        fifo.unlink()
        assert ran.returncode == 1, (dry, ran.stderr)
        assert {k: json.loads(ran.stdout)[k] for k in EXPECTED_COUNTS} == EXPECTED_COUNTS


def test_a_compressed_workbook_is_read_in_memory(tmp_path: Path) -> None:
    import openpyxl

    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(HEADER)
    for row in lead_rows(10):
        sheet.append([*row[:3], int(row[3])])
    buf = io.BytesIO()
    book.save(buf)
    (tmp_path / "leads.xlsx.gz").write_bytes(gzip.compress(buf.getvalue()))
    (tmp_path / "book.zip").write_bytes(zipped({"leads.xlsx": buf.getvalue()}))
    for name in ("leads.xlsx.gz", "book.zip"):
        rows = [r.values for r in open_source(str(tmp_path / name)).rows()]
        assert rows[1] == ["person1@example.com", "Ann 1", "Acme, Inc. 1", "5550000001"]


@pytest.mark.parametrize(
    ("name", "way"),
    [
        ("leads.csv.gz", "auto"),
        ("leads.zip", "auto"),
        ("leads.parquet", "auto"),
        ("leads.parquet", "always"),  # read by the columnar reader, batch by batch
    ],
)
def test_kill_9_mid_run_on_an_archive_then_resume(
    sandbox: Sandbox, tmp_path: Path, name: str, way: str
) -> None:
    """A killed run of an archive resumes from the archive itself: nothing sent twice,
    every row lands, no unpacked copy was needed."""
    import os
    import signal
    import subprocess
    import sys
    import time

    path = MAKERS[name](tmp_path)
    step_path = "/v1/sequences/prospects/import-with-field-name"
    sandbox.set_faults(["slow:0.3"] * 10, match=step_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SALESHANDY_", "SHANDY_"))}
    env.update(SALESHANDY_BASE_URL=sandbox.url, SALESHANDY_API_KEY="k",
               SHANDY_STATE_DIR=str(tmp_path / "state"), SHANDY_COLUMNAR=way)  # fmt: skip
    args = [sys.executable, "-m", "shandy_cli", "import", str(path), "--step", "StepA1",
            "--max-rows", "5", "--json", "--poll-interval", "0.05"]  # fmt: skip

    def accepted() -> int:
        return sum(1 for r in sandbox.requests() if r["path"] == step_path and r["status"] == 201)

    proc = subprocess.Popen(args, env=env, cwd=tmp_path, stdout=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while accepted() < 2:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    sandbox.set_faults()
    done = subprocess.run(args, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stderr  # the five rejects
    doc = json.loads(done.stdout)
    assert doc["resumed"] is True and doc["completed"] is True
    assert 7 <= accepted() <= 8  # 35 rows in chunks of 5; the one in flight at most once more
    assert len(landed(sandbox)) == 35


def test_member_leaves_older_fingerprints_as_they_were() -> None:
    assert "member" not in ImportOptions().fingerprint_part()
    assert ImportOptions.from_json(ImportOptions(member="a.csv").to_json()).member == "a.csv"
