"""Issue 6.1: a corpus of malformed and hostile inputs, each run through the real CLI.

Every case is built here (nothing binary is checked in), written to a temp dir and
imported with `shandy import ... --json` in a subprocess against a loopback sandbox.
The rules every case must keep:

* no traceback, and no API key anywhere in stdout or stderr;
* a problem with a file as a whole, or a bad flag: exit 2, exactly one
  ``shandy: error:`` line naming the problem (short, however big the input), and
  nothing accepted by the API;
* row-level problems: exit 0/1 as the contract says, one reject per bad row with a
  ``_reason``, and ``rows_read == rows_submitted + rows_rejected + rows_skipped``.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import os
import random
import resource
import subprocess
import sys
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import openpyxl
import pytest

from shandy_cli.sandbox import Sandbox

SECRET = "sk-live-HOSTILE-corpus-key-9f2e"
IMPORT_PATHS = (
    "/v1/sequences/prospects/import-with-field-name",
    "/v1/prospects/import-with-field-name",
)


# -- building inputs ------------------------------------------------------------------------


def emails(tag: str, n: int) -> list[str]:
    """Addresses no other case uses (each test has its own sandbox, but keep them apart)."""
    return [f"{tag}{i}@example.com" for i in range(n)]


def csv_bytes(rows: list[list[str]], encoding: str = "utf-8") -> bytes:
    out = io.StringIO(newline="")
    csv.writer(out).writerows(rows)
    return out.getvalue().encode(encoding)


def good_csv(tag: str, n: int = 3) -> bytes:
    return csv_bytes([["Email", "First Name"], *([e, "Ann"] for e in emails(tag, n))])


def xlsx_bytes(rows: list[list[object]]) -> bytes:
    book = openpyxl.Workbook()
    book.active.title = "Leads"
    for row in rows:
        book.active.append(row)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def bomb_xlsx() -> bytes:
    """A workbook whose sheet really inflates ~1000x, to 150 MB of zeros."""
    real = xlsx_bytes([["Email"], ["a@example.com"]])
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(real)) as src, zipfile.ZipFile(out, "w") as dst:
        for item in src.infolist():
            if item.filename != "xl/worksheets/sheet1.xml":
                dst.writestr(item, src.read(item.filename))
        info = zipfile.ZipInfo("xl/worksheets/sheet1.xml")
        info.compress_type = zipfile.ZIP_DEFLATED
        with dst.open(info, "w", force_zip64=True) as sheet:
            zeros = bytes(1 << 20)
            for _ in range(150):  # ~150 KB deflated, written in ~0.2 s
                sheet.write(zeros)
    return out.getvalue()


def forged(data: bytes, declared: int) -> bytes:
    """``data`` (a zip) with its last member's declared uncompressed size set to
    ``declared`` in the central directory, as a hand-made bomb does; nothing else changes."""
    out = bytearray(data)
    at = out.rfind(b"PK\x01\x02")  # the last central-directory entry
    out[at + 24 : at + 28] = declared.to_bytes(4, "little")
    return bytes(out)


def liar_xlsx() -> bytes:
    """A small, real workbook whose central directory claims a member of ~4 GB."""
    return forged(xlsx_bytes([["Email"], ["a@example.com"]]), 0xFFFFFFF0)


def forged_ods() -> bytes:
    """An .ods whose content.xml declares 3.9 GB but holds a few hundred bytes."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("mimetype", "application/vnd.oasis.opendocument.spreadsheet")
        z.writestr("content.xml", "<x/>" * 100)
    return forged(out.getvalue(), 0xF0000000)


PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(200)


# -- the corpus -----------------------------------------------------------------------------

Make = Callable[[Path], list[str]]  # writes its inputs into the dir; returns the CLI arguments


def file(name: str, data: bytes | Callable[[], bytes]) -> Make:
    def make(d: Path) -> list[str]:
        (d / name).write_bytes(data() if callable(data) else data)
        return [str(d / name)]

    return make


def with_args(make: Make, *args: str) -> Make:
    return lambda d: [*make(d), *args]


@dataclass
class Refused:
    """A file-level problem or a bad flag: exit 2, one error line holding ``needle``."""

    make: Make
    needle: str
    stdin: bytes | Callable[[], bytes] | None = None
    code: int = 2


@dataclass
class Imported:
    """Row-level problems at most: the rows are accounted for, as (read, sent, rejected)."""

    make: Make
    counts: tuple[int, int, int]
    reason: str | None = None  # a fragment one reject's _reason holds
    stdin: bytes | Callable[[], bytes] | None = None


def _bad_utf8_mid() -> bytes:
    # Past the 64 KB sample, so the file is detected as UTF-8 and only this row is bad.
    head = [["Email", "Company"], *([e, "Acme"] for e in emails("u8-", 3000))]
    return csv_bytes(head) + b"u8-bad@example.com,Caf\xe9 \xff\n" + good_csv("u8-tail")[19:]


def _nul_mid() -> bytes:
    head = csv_bytes([["Email", "Company"], *([e, "Acme"] for e in emails("nul-", 3000))])
    return head + b"nul-bad@example.com,Ac\x00me\n" + b"nul-last@example.com,Acme\n"


def _ragged() -> bytes:
    return (
        b"Email,First Name,Company\n"
        b"rag0@example.com\n"  # short: fine, the rest reads as empty
        b"rag1@example.com,Bo,Co,EXTRA\n"  # a value with no column: rejected
        b"rag2@example.com,Cy,Co,,,\n"  # trailing empty values: fine
    )


def _unterminated_late() -> bytes:
    rows = csv_bytes([["Email"], *([e] for e in emails("late-", 5000))])
    return rows + b'"late-x@example.com,never closed\nlate-y@example.com\n'


def _jsonl_broken() -> bytes:
    good = [json.dumps({"Email": e, "First Name": "J"}) for e in emails("jl-", 3)]
    return "\n".join(
        [good[0], '{"Email": "jl-x@example.com", ', good[1], "[1, 2]", "null", good[2], "{}"]
    ).encode()


def _jsonl_deep() -> bytes:
    return (
        json.dumps({"Email": "deep0@example.com"}).encode()
        + b"\n"
        + b'{"Email": "deep1@example.com", "x": '
        + b"[" * 100_000
        + b"]" * 100_000
        + b"}\n"
    )


def _wide(n: int, tag: str) -> bytes:
    header = [f"col{i}" for i in range(n)] + ["Email"]
    return csv_bytes([header, [*["v"] * n, f"{tag}@example.com"]])


def _bom_spaced() -> bytes:
    return (
        codecs.BOM_UTF8
        + b"  Email  ,\tFirst Name \r\nbom0@example.com,Ann\r\nbom1@example.com,Bo\r\n"
    )


def _two_files(d: Path) -> list[str]:
    (d / "good.csv").write_bytes(good_csv("two-"))
    (d / "bad.csv").write_bytes(b'Email\n"two-x@example.com\n')
    return [str(d / "good.csv"), str(d / "bad.csv")]


def _directory(d: Path) -> list[str]:
    (d / "folder.csv").mkdir()
    return [str(d / "folder.csv")]


def _truncated_xlsx() -> bytes:
    data = xlsx_bytes([["Email"], *([e] for e in emails("tr-", 200))])
    return data[: len(data) // 2]


def _zip_not_workbook() -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        z.writestr("readme.txt", "not a workbook")
    return out.getvalue()


def _xlsx_nul() -> bytes:
    return xlsx_bytes(
        [["Email", "Company"], ["xn0@example.com", "Ok"], ["xn1@example.com", "A_x0000_B"]]
    )


def _random(n: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(n)


# fmt: off
CASES: dict[str, Refused | Imported] = {
    # -- whole-file problems: exit 2, nothing sent
    "random-bytes-named-csv": Refused(file("junk.csv", _random(4096, 1)), "binary data"),
    "png-named-xlsx": Refused(file("photo.xlsx", PNG), "PNG image"),
    "pdf-named-csv": Refused(file("doc.csv", b"%PDF-1.7\n" + _random(500, 2)), "PDF"),
    "gzip-named-csv": Refused(file("leads.csv", b"\x1f\x8b\x08" + _random(300, 3)), "gzip"),
    "html-named-xls": Refused(file("export.xls", b"<html><table><tr><td>Email</td></tr></table></html>"), "HTML page"),
    "truncated-xlsx": Refused(file("cut.xlsx", _truncated_xlsx), "damaged or truncated"),
    "zip-that-is-no-workbook": Refused(file("z.xlsx", _zip_not_workbook), "workbook"),
    "zip-bomb-xlsx-ratio": Refused(file("bomb.xlsx", bomb_xlsx), "zip bomb"),
    "zip-bomb-xlsx-declared": Refused(file("liar.xlsx", liar_xlsx), "zip bomb"),
    "zip-bomb-ods-declared": Refused(file("liar.ods", forged_ods), "zip bomb"),
    "zip-bomb-on-stdin": Refused(lambda d: ["-"], "zip bomb", stdin=bomb_xlsx),
    "nul-bytes-in-header": Refused(file("nul.csv", b"Em\x00ail\nx@example.com\n"), "NUL"),
    "unterminated-quote-after-5000-rows": Refused(file("late.csv", _unterminated_late), "never closed"),
    "field-over-50mb": Refused(file("huge.csv", lambda: b'Email,Industry\nh@example.com,"' + b"x" * (51 << 20) + b'"\n'), "longer than 50 MB"),
    "10000-columns-unknown": Refused(file("wide.csv", lambda: _wide(10_000, "wide")), "10,000 column(s) match no field"),
    "10000-columns-create": Refused(with_args(file("wide.csv", lambda: _wide(10_000, "wc")), "--on-unknown-column", "create"), "at most 100"),
    "duplicate-headers": Refused(file("dup.csv", b"Email,Name,Email\na@example.com,A,b@example.com\n"), "duplicate column names"),
    "empty-header-cell": Refused(file("gap.csv", b"Email,,Company\na@example.com,x,y\n"), "is empty"),
    "no-email-column": Refused(file("noemail.csv", b"First Name,Company\nAnn,Acme\n"), "no column maps to Email"),
    "megabyte-header-name": Refused(file("longname.csv", lambda: b"Email," + b"N" * (1 << 20) + b"\nx@example.com,1\n"), "match no field"),
    "jsonl-first-line-broken": Refused(file("b.jsonl", b'{"Email": \n{"Email": "a@example.com"}\n'), "first line"),
    "json-array-named-jsonl": Refused(file("a.jsonl", b'[{"Email": "a@example.com"}]\n'), "array"),
    "missing-file": Refused(lambda d: [str(d / "nowhere.csv")], "file not found"),
    "a-directory": Refused(_directory, "directory"),
    "unsupported-extension": Refused(file("leads.pdf", b"%PDF-1.4"), "unsupported file type"),
    "unknown-sheet": Refused(with_args(file("w.xlsx", lambda: xlsx_bytes([["Email"], ["s@example.com"]])), "--sheet", "Nope"), "no sheet named 'Nope'"),
    "good-file-then-bad-file": Refused(_two_files, "bad.csv"),
    "max-rows-0": Refused(with_args(file("l.csv", good_csv("mr-")), "--max-rows", "0"), "--max-rows"),
    "max-bytes-above-api-limit": Refused(with_args(file("l.csv", good_csv("mb-")), "--max-bytes", "90000001"), "--max-bytes"),
    "max-bytes-0": Refused(with_args(file("l.csv", good_csv("m0-")), "--max-bytes", "0"), "--max-bytes"),
    "bogus-conflict": Refused(with_args(file("l.csv", good_csv("bc-")), "--conflict", "explode"), "--conflict"),
    "bogus-encoding": Refused(with_args(file("l.csv", good_csv("be-")), "--encoding", "klingon"), "unknown encoding"),
    "unknown-step": Refused(with_args(file("l.csv", good_csv("us-")), "--step", "NoSuchStep"), "NoSuchStep"),
    "terminal-escapes-in-file-name": Refused(lambda d: [str(d / "\x1b]0;owned\x07\x1b[2J.csv")], "file not found"),
    "png-on-stdin": Refused(lambda d: ["-"], "PNG image", stdin=PNG),
    # -- row-level problems (or none): every row accounted for
    "empty-file": Imported(file("empty.csv", b""), (0, 0, 0)),
    "header-only": Imported(file("hdr.csv", b"Email,First Name\r\n"), (0, 0, 0)),
    "invalid-utf8-mid-file": Imported(file("u8.csv", _bad_utf8_mid), (3004, 3003, 1), "undecodable"),
    "nul-byte-in-a-value": Imported(file("nulv.csv", _nul_mid), (3002, 3001, 1), "NUL"),
    "nul-byte-in-a-value-of-a-small-file": Imported(file("nuls.csv", b"Email,Company\nnul0@example.com,Ac\x00me\nnul1@example.com,Acme\n"), (2, 1, 1), "NUL"),
    "nul-escape-in-xlsx-cell": Imported(file("xn.xlsx", _xlsx_nul), (2, 1, 1), "NUL"),
    "ragged-rows": Imported(file("rag.csv", _ragged), (3, 2, 1), "header has 3 columns"),
    "20mb-field": Imported(file("big.csv", lambda: b"Email,Industry\nbig0@example.com," + b"y" * (20 << 20) + b"\nbig1@example.com,ok\n"), (2, 2, 0)),
    "10000-columns-ignored": Imported(with_args(file("wide.csv", lambda: _wide(10_000, "wi")), "--on-unknown-column", "ignore"), (1, 1, 0)),
    "bom-and-spaced-headers": Imported(file("bom.csv", _bom_spaced), (2, 2, 0)),
    "jsonl-broken-lines": Imported(file("b.jsonl", _jsonl_broken), (7, 3, 4)),
    "jsonl-nested-too-deep": Imported(file("d.jsonl", _jsonl_deep), (2, 1, 1), "nested too deeply"),
    "invalid-and-duplicate-emails": Imported(file("e.csv", b"Email\nok0@example.com\nnot-an-email\nOK0@example.com\n\n,\n"), (3, 1, 2)),
    "utf16-with-bom": Imported(file("u16.csv", "Email,City\nu16@example.com,Zürich\n".encode("utf-16")), (1, 1, 0)),
    "forced-utf16-without-bom": Imported(with_args(file("u16le.csv", "Email,City\nle@example.com,Zürich\n".encode("utf-16-le")), "--encoding", "utf-16"), (1, 1, 0)),
    "cp1252": Imported(file("w.csv", "Email,City\ncp@example.com,Malmö \u2013 \u201cx\u201d\n".encode("cp1252")), (1, 1, 0)),
    "quoted-newlines-and-mixed-line-ends": Imported(file("q.csv", b'Email,Company\r\nq0@example.com,"A\r\nB"\nq1@example.com,"say ""hi"""\r'), (2, 2, 0)),
    "csv-on-stdin": Imported(lambda d: ["-"], (3, 3, 0), stdin=good_csv("stdin-")),
}
# fmt: on


def stdin_for(case: Refused | Imported) -> bytes | None:
    return case.stdin() if callable(case.stdin) else case.stdin


# -- running a case -------------------------------------------------------------------------


def run_cli(args: list[str], cwd: Path, env: dict[str, str], stdin: bytes | None):  # type: ignore[no-untyped-def]
    return subprocess.run(
        [sys.executable, "-m", "shandy_cli", *args],
        input=stdin,
        capture_output=True,
        env=env,
        cwd=cwd,
        timeout=60,
    )


def accepted(sandbox: Sandbox) -> int:
    return sum(1 for r in sandbox.requests() if r["path"] in IMPORT_PATHS and r["status"] == 201)


def test_the_corpus_is_big_enough() -> None:
    assert len(CASES) >= 30
    assert sum(isinstance(c, Refused) for c in CASES.values()) >= 20


@pytest.mark.parametrize("name", list(CASES))
def test_hostile_input(name: str, sandbox: Sandbox, tmp_path: Path) -> None:
    case = CASES[name]
    inputs = tmp_path / "in"
    inputs.mkdir()
    args = case.make(inputs)
    if "--step" not in args:
        args += ["--step", "StepA1"]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SALESHANDY_", "SHANDY_"))}
    env.update(
        SALESHANDY_BASE_URL=sandbox.url,
        SALESHANDY_API_KEY=SECRET,
        SHANDY_STATE_DIR=str(tmp_path / "state"),
    )
    # CPU time of the child, not wall time: under xdist four workers share two cores, and a
    # pathological case (quadratic, a hang) shows in its own CPU or in run_cli's 60 s timeout.
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    result = run_cli(
        ["import", *args, "--json", "--poll-interval", "0.05"], tmp_path, env, stdin_for(case)
    )
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    elapsed = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    out = result.stdout.decode("utf-8", "replace")
    err = result.stderr.decode("utf-8", "replace")
    assert "Traceback" not in out + err, err
    assert SECRET not in out + err
    assert "\x1b" not in err and "\x07" not in err  # nothing from the input drives the terminal
    assert elapsed < 20, f"{name} took {elapsed:.1f} CPU seconds"
    if isinstance(case, Refused):
        assert result.returncode == case.code, err
        errors = [line for line in err.splitlines() if line.startswith("shandy: error:")]
        assert len(errors) == 1, err
        assert case.needle.lower() in errors[0].lower(), errors[0]
        assert len(err) < 4000, f"stderr is {len(err)} characters"
        doc = json.loads(out)  # the contract: --json prints one document on every exit
        assert doc["error"] and doc["exit_code"] == case.code
        assert accepted(sandbox) == 0, "a refused input must send nothing"
        return
    assert result.returncode in (0, 1), err
    doc = json.loads(out)
    read, sent, rejected = case.counts
    assert (doc["rows_read"], doc["rows_submitted"], doc["rows_rejected"]) == (read, sent, rejected)
    assert doc["rows_read"] == doc["rows_submitted"] + doc["rows_rejected"] + doc["rows_skipped"]
    assert doc["exit_code"] == result.returncode == (1 if rejected else 0)
    assert (accepted(sandbox) > 0) == (sent > 0)
    if rejected:
        with open(doc["rejects_file"], newline="", encoding="utf-8") as fh:
            rejects = list(csv.DictReader(fh))
        assert len(rejects) == rejected
        assert all(r["_reason"] and r["_row"] for r in rejects)
        if case.reason:
            assert any(case.reason in r["_reason"] for r in rejects), rejects
        assert SECRET not in Path(doc["rejects_file"]).read_text(encoding="utf-8")
    else:
        assert doc["rejects_file"] is None


# -- known gaps in files this issue could not touch (strict: they flip when fixed) ----------


def _import(
    sandbox: Sandbox, tmp_path: Path, src: Path, *extra: str
) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SALESHANDY_", "SHANDY_"))}
    env.update(
        SALESHANDY_BASE_URL=sandbox.url,
        SALESHANDY_API_KEY=SECRET,
        SHANDY_STATE_DIR=str(tmp_path / "state"),
    )
    args = ["import", str(src), "--step", "StepA1", "--poll-interval", "0.05", *extra]
    return run_cli(args, tmp_path, env, None)


def test_markup_in_a_path_does_not_break_the_summary(sandbox: Sandbox, tmp_path: Path) -> None:
    folder = tmp_path / "d[" / "b]x"
    folder.mkdir(parents=True)
    src = folder / "leads.csv"
    src.write_bytes(b"Email\nmk@example.com\nnot-an-email\n")
    result = _import(sandbox, tmp_path, src)
    assert b"internal error" not in result.stderr, result.stderr
    assert result.returncode == 1


def test_ten_thousand_ignored_columns_make_a_short_warning(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    src = tmp_path / "wide.csv"
    src.write_bytes(_wide(10_000, "short"))
    result = _import(sandbox, tmp_path, src, "--on-unknown-column", "ignore")
    assert result.returncode == 0, result.stderr
    assert len(result.stderr) < 4000, len(result.stderr)


def test_markup_in_a_value_does_not_break_preview(tmp_path: Path) -> None:
    src = tmp_path / "pv.csv"
    src.write_bytes(b"Email,Company\npv@example.com,see acme.example[/url]\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SALESHANDY_", "SHANDY_"))}
    env["SHANDY_STATE_DIR"] = str(tmp_path / "state")
    result = run_cli(["preview", str(src)], tmp_path, env, None)
    assert b"internal error" not in result.stderr, result.stderr
    assert result.returncode == 0
