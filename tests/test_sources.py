"""Stage 1: opening lead files and streaming their rows (shandy_cli.pipeline.sources).

Fixtures are generated in tmp_path: CSV by hand or csv.writer, XLSX with openpyxl,
ODS as a hand-built zip. XLS is not generated (no writer is available); its checks
cover the signature test and an .xlsx renamed .xls.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import os
import threading
import zipfile
from pathlib import Path
from typing import Any

import openpyxl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shandy_cli.errors import InputError
from shandy_cli.pipeline.sources import Row, SourceInfo, open_source

SAMPLE = 64 * 1024
REPO = Path(__file__).resolve().parent.parent


# ---------------------------------------------------------------- helpers


def write(tmp_path: Path, name: str, data: bytes | str, encoding: str = "utf-8") -> str:
    path = tmp_path / name
    path.write_bytes(data.encode(encoding) if isinstance(data, str) else data)
    return str(path)


def read(path: str, **options: Any) -> tuple[SourceInfo, list[Row]]:
    with open_source(path, **options) as source:
        return source.info, list(source.rows())


def values(rows: list[Row]) -> list[list[str]]:
    return [r.values for r in rows]


def fails(path: str, *fragments: str, **options: Any) -> InputError:
    """Open and read ``path`` expecting an InputError that mentions every fragment."""
    with pytest.raises(InputError) as caught:
        read(path, **options)
    for fragment in fragments:
        assert fragment in str(caught.value)
    assert caught.value.exit_code == 2
    return caught.value


def xlsx(tmp_path: Path, name: str, sheets: dict[str, list[list[Any]]]) -> str:
    book = openpyxl.Workbook()
    book.remove(book.active)
    for title, rows in sheets.items():
        sheet = book.create_sheet(title)
        for row in rows:
            sheet.append(row)
    path = tmp_path / name
    book.save(path)
    return str(path)


def ods(tmp_path: Path, name: str, rows: list[list[tuple[str, str]]]) -> str:
    """A minimal OpenDocument spreadsheet; each cell is (value-type, value)."""

    def cell(kind: str, value: str) -> str:
        attrs = {
            "string": 'office:value-type="string"',
            "float": f'office:value-type="float" office:value="{value}"',
            "date": f'office:value-type="date" office:date-value="{value}"',
        }[kind]
        return f"<table:table-cell {attrs}><text:p>{value}</text:p></table:table-cell>"

    body = "".join(
        "<table:table-row>" + "".join(cell(*c) for c in row) + "</table:table-row>" for row in rows
    )
    content = (
        '<?xml version="1.0" encoding="UTF-8"?><office:document-content '
        'xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0" '
        'xmlns:table="urn:oasis:names:tc:opendocument:xmlns:table:1.0" '
        'xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0" office:version="1.2">'
        f'<office:body><office:spreadsheet><table:table table:name="Leads">{body}'
        "</table:table></office:spreadsheet></office:body></office:document-content>"
    )
    manifest = (
        '<?xml version="1.0" encoding="UTF-8"?><manifest:manifest '
        'xmlns:manifest="urn:oasis:names:tc:opendocument:xmlns:manifest:1.0" '
        'manifest:version="1.2"><manifest:file-entry manifest:full-path="/" '
        'manifest:media-type="application/vnd.oasis.opendocument.spreadsheet"/>'
        '<manifest:file-entry manifest:full-path="content.xml" manifest:media-type="text/xml"/>'
        "</manifest:manifest>"
    )
    path = tmp_path / name
    with zipfile.ZipFile(path, "w") as z:
        mimetype = "application/vnd.oasis.opendocument.spreadsheet"
        z.writestr("mimetype", mimetype, compress_type=zipfile.ZIP_STORED)
        z.writestr("META-INF/manifest.xml", manifest, compress_type=zipfile.ZIP_DEFLATED)
        z.writestr("content.xml", content, compress_type=zipfile.ZIP_DEFLATED)
    return str(path)


# ---------------------------------------------------------------- encodings


@pytest.mark.parametrize(
    ("encoding", "detected"),
    [
        ("utf-8", "utf-8"),
        ("utf-8-sig", "utf-8-sig"),
        ("utf-16", "utf-16"),  # Python's utf-16 writes a BOM
        ("utf-16-be-bom", "utf-16"),
        ("cp1252", "cp1252"),
    ],
)
def test_encodings_are_detected(tmp_path: Path, encoding: str, detected: str) -> None:
    text = "Name,City,Note\r\nJosé,Zürich,costs 5€ — “quoted”\r\nZoë,Łódź,ok\r\n"
    if encoding == "cp1252":
        text = text.replace("Łódź", "Lodz")  # not in cp1252
    if encoding == "utf-16-be-bom":
        data = b"\xfe\xff" + text.encode("utf-16-be")
    else:
        data = text.encode(encoding)
    info, rows = read(write(tmp_path, "leads.csv", data))
    assert info.encoding == detected
    assert info.columns == ["Name", "City", "Note"]  # no BOM left on "Name"
    expected = [r.split(",") for r in text.split("\r\n")[1:-1]]
    assert values(rows) == expected
    assert all(r.problem is None for r in rows)


def test_multibyte_character_across_the_sample_boundary(tmp_path: Path) -> None:
    # "é" is 2 bytes in UTF-8: put its first byte last in the 64 KB sample.
    head = b"Name,Notes\n"
    pad = b"a" * (SAMPLE - len(head) - len(b"x,") - 1)
    data = head + b"x," + pad + "é\nZoë,ok\n".encode()
    assert data[SAMPLE - 1 : SAMPLE + 1] == "é".encode()
    info, rows = read(write(tmp_path, "edge.csv", data))
    assert info.encoding == "utf-8"
    assert values(rows) == [["x", pad.decode() + "é"], ["Zoë", "ok"]]


def test_latin1_when_cp1252_cannot_decode(tmp_path: Path) -> None:
    # 0x81 is undefined in cp1252, so only latin-1 reads this sample.
    data = "Name,Note\nÅsa,x\x81y\n".encode("latin-1")
    info, rows = read(write(tmp_path, "l.csv", data))
    assert info.encoding == "latin-1"
    assert values(rows) == [["Åsa", "x\x81y"]]


def test_utf16_without_bom_is_recognised(tmp_path: Path) -> None:
    info, rows = read(write(tmp_path, "u.csv", "Email,Name\na@example.com,Zoë\n", "utf-16-le"))
    assert info.encoding == "utf-16-le"
    assert values(rows) == [["a@example.com", "Zoë"]]


def test_encoding_option_overrides_detection(tmp_path: Path) -> None:
    path = write(tmp_path, "l.csv", "Name\nJosé\n", "latin-1")
    info, rows = read(path, encoding="Latin-1")
    assert (info.encoding, values(rows)) == ("latin-1", [["José"]])
    # "utf-8" on a file with a BOM means utf-8-sig: the BOM must not join the header.
    info, _ = read(write(tmp_path, "b.csv", "Email\nx\n", "utf-8-sig"), encoding="utf-8")
    assert info.columns == ["Email"]


def test_invalid_utf8_mid_file_is_a_row_problem(tmp_path: Path) -> None:
    # The first 64 KB are clean UTF-8, so the file is read as UTF-8; the bad bytes come later.
    filler = "".join(f"Ana,ana{i}@example.com,fine\n" for i in range(3000))
    assert len(filler) > SAMPLE
    data = (
        b"Name,Email,Notes\n"
        + filler.encode()
        + b"Bob,bob@example.com,caf\xe9 \xff\n"
        + "Zoë,zoe@example.com,ok\n".encode()
    )
    _, rows = read(write(tmp_path, "bad.csv", data))
    assert len(rows) == 3002
    bad, after = rows[3000], rows[3001]
    assert bad.number == 3001
    assert bad.values == ["Bob", "bob@example.com", "caf\ufffd \ufffd"]
    assert bad.problem == "undecodable bytes in column 'Notes' (not valid utf-8)"
    assert after.values == ["Zoë", "zoe@example.com", "ok"] and after.problem is None


def test_undecodable_cp1252_byte_and_extra_column(tmp_path: Path) -> None:
    data = "Name,Email\nJosé,j@example.com\n".encode("cp1252") + b"x,y,z\x81\n"
    _, rows = read(write(tmp_path, "w.csv", data), encoding="cp1252")
    assert rows[1].problem == "undecodable bytes in column #3 (no header) (not valid cp1252)"


def test_wrong_forced_encoding_in_header_is_a_file_error(tmp_path: Path) -> None:
    path = write(tmp_path, "w.csv", "Näme\nx\n", "latin-1")
    fails(path, "header is not valid utf-8", "--encoding", encoding="utf-8")


def test_unknown_encoding_is_named(tmp_path: Path) -> None:
    path = write(tmp_path, "a.csv", "a\n1\n")
    fails(path, "unknown encoding 'klingon'", encoding="klingon")
    fails(path, "unknown encoding 'base64'", encoding="base64")  # a codec, not a text encoding


# ---------------------------------------------------------------- delimiters and quoting


@pytest.mark.parametrize("delimiter", [",", ";", "\t", "|"])
def test_delimiter_is_sniffed(tmp_path: Path, delimiter: str) -> None:
    rows = [["First Name", "Email", "Company"], ["Ana", "a@example.com", "Acme, Inc; Ltd"]]
    rows += [["Bo", "b@example.com", "Globex | Sons"], ["Cy", "c@example.com", ""]]
    buffer = io.StringIO()
    csv.writer(buffer, delimiter=delimiter).writerows(rows)
    info, got = read(write(tmp_path, "d.txt", buffer.getvalue()))
    assert info.delimiter == delimiter
    assert info.format == "txt"
    assert [info.columns, *values(got)] == rows


def test_single_column_defaults_to_comma(tmp_path: Path) -> None:
    info, rows = read(write(tmp_path, "e.csv", "Email\na@example.com\nb@example.com\n"))
    assert (info.delimiter, info.columns, values(rows)) == (
        ",",
        ["Email"],
        [["a@example.com"], ["b@example.com"]],
    )


def test_tsv_defaults_to_tab_and_delimiter_option(tmp_path: Path) -> None:
    info, rows = read(write(tmp_path, "a.tsv", "Email\tName, Full\nx\ty, z\n"))
    assert (info.delimiter, values(rows)) == ("\t", [["x", "y, z"]])
    info, rows = read(write(tmp_path, "b.csv", "a;b,c\n1;2,3\n"), delimiter=";")
    assert values(rows) == [["1", "2,3"]]
    info, _ = read(write(tmp_path, "c.csv", "a\tb\n1\t2\n"), delimiter="\\t")
    assert info.delimiter == "\t"


def test_excel_sep_hint_line(tmp_path: Path) -> None:
    info, rows = read(write(tmp_path, "s.csv", "sep=;\r\nName;Email\r\nAna;a@x.org\r\n"))
    assert (info.delimiter, info.columns, values(rows)) == (
        ";",
        ["Name", "Email"],
        [["Ana", "a@x.org"]],
    )


@pytest.mark.parametrize("bad", ["ab", "", '"', "\n"])
def test_bad_delimiter_option(tmp_path: Path, bad: str) -> None:
    fails(write(tmp_path, "a.csv", "a\n1\n"), "--delimiter must be one character", delimiter=bad)


@pytest.mark.parametrize("newline", ["\n", "\r\n", "\r"])
def test_quoted_newlines_quotes_and_row_numbers(tmp_path: Path, newline: str) -> None:
    text = newline.join(
        [
            "Name,Notes,Email",
            'Ana,"line one' + newline + 'line two, with ""quotes""",a@example.com',
            "Bo,plain,b@example.com",
            '"Cy","multi' + newline + newline + 'blank inside",c@example.com',
            "Di,last,d@example.com",
            "",
        ]
    )
    _, rows = read(write(tmp_path, "q.csv", text))
    assert [r.number for r in rows] == [1, 2, 3, 4]
    assert rows[0].values[1] == f'line one{newline}line two, with "quotes"'
    assert rows[2].values == ["Cy", f"multi{newline}{newline}blank inside", "c@example.com"]
    assert rows[3].values == ["Di", "last", "d@example.com"]


def test_blank_lines_are_skipped_and_not_counted(tmp_path: Path) -> None:
    text = "\n\nName,Email\n\nAna,a@x.org\n,\n  ,\nBo,b@x.org\n\n"
    info, rows = read(write(tmp_path, "b.csv", text))
    assert info.columns == ["Name", "Email"]
    # "," is all-empty (skipped); "  ," has a value (kept, for validation to judge).
    assert [(r.number, r.values) for r in rows] == [
        (1, ["Ana", "a@x.org"]),
        (2, ["  ", ""]),
        (3, ["Bo", "b@x.org"]),
    ]


def test_ragged_rows_are_passed_on_untrimmed(tmp_path: Path) -> None:
    text = "A,B,C\n1\n1,2,3,4\n1,2,3,,\n 1 , 2 ,\n"
    _, rows = read(write(tmp_path, "r.csv", text))
    # Short rows stay short, real extra values stay, empty extras are dropped.
    assert values(rows) == [["1"], ["1", "2", "3", "4"], ["1", "2", "3"], [" 1 ", " 2 ", ""]]


def test_unterminated_quote_at_end_is_an_error_with_row(tmp_path: Path) -> None:
    path = write(tmp_path, "u.csv", 'Name,Notes\nAna,ok\nBo,"never closed\nCy,x\n')
    with open_source(path) as source:
        rows = source.rows()
        assert next(rows).values == ["Ana", "ok"]
        with pytest.raises(InputError) as caught:
            next(rows)
    assert str(caught.value).startswith(f"{path}, row 2: a quoted value is never closed")


def test_closed_quote_at_end_without_newline_is_fine(tmp_path: Path) -> None:
    _, rows = read(write(tmp_path, "c.csv", 'Name,Notes\nAna,"a ""b"""'))
    assert values(rows) == [["Ana", 'a "b"']]


def test_20_mb_field_is_read(tmp_path: Path) -> None:
    big = "x" * (20 * 1024 * 1024)
    _, rows = read(write(tmp_path, "big.csv", f'Email,Notes\na@example.com,"{big}"\nb@x.org,y\n'))
    assert len(rows) == 2 and rows[0].values[1] == big and rows[1].number == 2


def test_field_over_the_cap_is_an_input_error(tmp_path: Path) -> None:
    path = tmp_path / "huge.csv"
    with path.open("w") as f:
        f.write('Email,Notes\na@x.org,"')
        chunk = "y" * (1024 * 1024)
        for _ in range(51):
            f.write(chunk)
    fails(str(path), "row 1", "longer than 50 MB")


# ---------------------------------------------------------------- empty and header-only


@pytest.mark.parametrize("name", ["e.csv", "e.tsv", "e.txt", "e.jsonl", "e.xlsx", "e.ods"])
def test_empty_file_is_not_an_error(tmp_path: Path, name: str) -> None:
    info, rows = read(write(tmp_path, name, b""))
    assert (info.columns, rows, info.size) == ([], [], 0)


@pytest.mark.parametrize("text", ["Name,Email", "Name,Email\n", "\ufeffName,Email\r\n\r\n"])
def test_header_only(tmp_path: Path, text: str) -> None:
    info, rows = read(write(tmp_path, "h.csv", text))
    assert (info.columns, rows) == (["Name", "Email"], [])


# ---------------------------------------------------------------- header problems


def test_duplicate_headers_are_named(tmp_path: Path) -> None:
    path = write(tmp_path, "d.csv", "Email,Name,Email,Phone,Name\nx,y,z,1,2\n")
    fails(path, "duplicate column names", "'Email' (columns 1, 3)", "'Name' (columns 2, 5)")


def test_empty_header_cell_is_named_but_trailing_ones_are_dropped(tmp_path: Path) -> None:
    fails(write(tmp_path, "e.csv", "Email,,Name\n1,2,3\n"), "column 2 (after 'Email') is empty")
    info, rows = read(write(tmp_path, "t.csv", "Email,Name,,\na,b,,\n"))
    assert (info.columns, values(rows)) == (["Email", "Name"], [["a", "b"]])


def test_header_original_spelling_is_kept(tmp_path: Path) -> None:
    info, _ = read(write(tmp_path, "s.csv", " First Name ,E-mail\n"))
    assert info.columns == [" First Name ", "E-mail"]


# ---------------------------------------------------------------- not text / not a workbook


def test_nul_bytes_in_a_csv(tmp_path: Path) -> None:
    fails(write(tmp_path, "g.csv", b"Name,Email\x00\x00\x01\x02garbage\x00\n"), "NUL bytes")


def test_a_nul_byte_in_one_value_marks_that_row_only(tmp_path: Path) -> None:
    """Within the sample the reader sniffs: one NUL in a value is not a binary file."""
    data = b"Email,Company\na@example.com,Ac\x00me\nb@example.com,Acme\n"
    _info, rows = read(write(tmp_path, "n.csv", data))
    assert values(rows) == [["a@example.com", "Ac\ufffdme"], ["b@example.com", "Acme"]]
    assert [r.problem for r in rows] == ["a NUL character in column 'Company' (binary data?)", None]


def test_many_nul_bytes_are_binary_data(tmp_path: Path) -> None:
    rows = b"".join(b"x%d@example.com,A\x00\x00B\n" % i for i in range(20))
    fails(write(tmp_path, "b.csv", b"Email,Company\n" + rows), "NUL bytes", "binary data")


def test_png_named_csv_and_xlsx(tmp_path: Path) -> None:
    png = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4
    fails(write(tmp_path, "pic.csv", png), "this is a PNG image, not a .csv")
    fails(write(tmp_path, "pic.xlsx", png), "this is a PNG image, not a .xlsx workbook")


def test_workbook_named_csv_says_so(tmp_path: Path) -> None:
    data = Path(xlsx(tmp_path, "w.xlsx", {"S": [["Email"]]})).read_bytes()
    fails(write(tmp_path, "w.csv", data), "zip archive (an .xlsx or .ods workbook?)")


def test_text_and_html_named_xls(tmp_path: Path) -> None:
    fails(
        write(tmp_path, "t.xls", "Email\tName\nx\ty\n"), "not a .xls workbook", "rename it to .csv"
    )
    fails(write(tmp_path, "h.xls", "<html><table><tr><td>x</td></tr></table></html>"), "HTML page")


def test_truncated_and_corrupt_xlsx(tmp_path: Path) -> None:
    data = Path(xlsx(tmp_path, "ok.xlsx", {"S": [["Email"], ["a@example.com"]] * 50})).read_bytes()
    fails(write(tmp_path, "cut.xlsx", data[: len(data) // 2]), "damaged or truncated")
    broken = tmp_path / "broken.xlsx"
    with zipfile.ZipFile(tmp_path / "ok.xlsx") as src, zipfile.ZipFile(broken, "w") as dst:
        for item in src.infolist():
            content = src.read(item.filename)
            if item.filename.startswith("xl/worksheets/"):
                content = content[: len(content) // 2]
            dst.writestr(item, content)
    fails(str(broken), "damaged or truncated")


def test_missing_file_directory_and_extension(tmp_path: Path) -> None:
    fails(str(tmp_path / "nope.csv"), "nope.csv: file not found")
    fails(str(tmp_path), "is a directory")
    pdf = write(tmp_path, "leads.pdf", b"%PDF-1.4")
    fails(pdf, "unsupported file type '.pdf'", ".csv, .tsv, .txt, .xlsx, .xls, .ods, .jsonl")
    fails(write(tmp_path, "noext", b"a\n"), "(no extension)")


@pytest.mark.skipif(os.geteuid() == 0, reason="root can read anything")
def test_permission_denied(tmp_path: Path) -> None:
    path = write(tmp_path, "secret.csv", "a\n")
    os.chmod(path, 0)
    fails(path, "permission denied")


def test_random_binary_is_refused(tmp_path: Path) -> None:
    data = bytes((i * 7919 + 13) % 256 for i in range(5000))
    fails(write(tmp_path, "r.csv", data), "binary data")


# ---------------------------------------------------------------- spreadsheets


def test_xlsx_values_are_text_as_a_person_sees_them(tmp_path: Path) -> None:
    path = xlsx(
        tmp_path,
        "v.xlsx",
        {
            "Leads": [
                ["Email", "Phone", "Joined", "Last seen", "Active", "Score", "Blank", "Big"],
                [
                    "a@example.com",
                    1234567890.0,
                    dt.date(2024, 3, 5),
                    dt.datetime(2024, 3, 5, 14, 30, 15),
                    True,
                    0.1,
                    None,
                    12345678901234.0,
                ],
                ["b@example.com", 42, dt.datetime(2024, 1, 2), None, False, 2.5, None, -3.0],
            ]
        },
    )
    info, rows = read(path)
    assert (info.format, info.encoding, info.delimiter) == ("xlsx", None, None)
    assert values(rows) == [
        [
            "a@example.com",
            "1234567890",
            "2024-03-05",
            "2024-03-05 14:30:15",
            "TRUE",
            "0.1",
            "",
            "12345678901234",
        ],
        ["b@example.com", "42", "2024-01-02", "", "FALSE", "2.5", "", "-3"],
    ]


def test_xlsx_sheets_and_grid_numbering(tmp_path: Path) -> None:
    path = xlsx(
        tmp_path,
        "s.xlsx",
        {
            "Summary": [["Total"], [3]],
            "Leads": [
                [None],
                ["Email", "Name"],
                ["a@x.org", "A"],
                [None, None],
                ["b@x.org"],
                [],
                [],
            ],
        },
    )
    info, rows = read(path)
    assert info.columns == ["Total"]  # the first sheet by default
    info, rows = read(path, sheet="Leads")
    assert info.columns == ["Email", "Name"]  # leading empty row skipped
    # Empty rows are skipped but keep their place: row 3 is sheet row 5 (header in row 2).
    assert [(r.number, r.values) for r in rows] == [(1, ["a@x.org", "A"]), (3, ["b@x.org", ""])]
    _, rows = read(path, sheet="leads")  # a unique case-insensitive match is accepted
    assert len(rows) == 2
    fails(path, "no sheet named 'Prospects'", "'Summary', 'Leads'", sheet="Prospects")


def test_xlsx_skips_hidden_first_sheet_and_checks_header(tmp_path: Path) -> None:
    book = openpyxl.Workbook()
    book.active.title = "Hidden"
    book.active.append(["Secret"])
    book.active.sheet_state = "hidden"
    book.create_sheet("Visible").append(["Email"])
    book.save(tmp_path / "h.xlsx")
    info, _ = read(str(tmp_path / "h.xlsx"))
    assert info.columns == ["Email"]
    dup = xlsx(tmp_path, "d.xlsx", {"S": [["Email", "email", "Email"], ["a", "b", "c"]]})
    fails(dup, "duplicate column names in the header: 'Email' (columns 1, 3)")


def test_xlsx_renamed_xls_and_stdin_workbook(tmp_path: Path) -> None:
    data = Path(xlsx(tmp_path, "w.xlsx", {"S": [["Email"], ["a@example.com"]]})).read_bytes()
    info, rows = read(write(tmp_path, "w.xls", data))
    assert (info.format, values(rows)) == ("xlsx", [["a@example.com"]])
    with open_source("-", stdin=io.BytesIO(data)) as source:
        assert (source.info.name, source.info.format) == ("<stdin>", "xlsx")
        assert source.bytes_read == 0
        assert values(list(source.rows())) == [["a@example.com"]]
        assert source.bytes_read == len(data)


def test_ods(tmp_path: Path) -> None:
    path = ods(
        tmp_path,
        "l.ods",
        [
            [("string", "Email"), ("string", "Phone"), ("string", "Since")],
            [("string", "a@example.com"), ("float", "1234567890"), ("date", "2024-03-05")],
        ],
    )
    info, rows = read(path)
    assert (info.format, info.columns) == ("ods", ["Email", "Phone", "Since"])
    assert values(rows) == [["a@example.com", "1234567890", "2024-03-05"]]


# ---------------------------------------------------------------- JSON Lines


def test_jsonl_values_and_keys(tmp_path: Path) -> None:
    lines = [
        '{"email": "a@example.com", "score": 1.50, "id": 12345678901234567890, "vip": true}',
        "",
        '{"email": "b@example.com", "phone": null, "tags": ["x", 1e3], "meta": {"k": "é"}}',
        "{broken",
        "[1, 2]",
        '{"email": "c@example.com", "surprise": 1, "also": 2}',
    ]
    info, rows = read(write(tmp_path, "l.jsonl", "\n".join(lines) + "\n"))
    assert info.format == "jsonl" and info.delimiter is None
    # Columns: every key of the first records, in first-seen order.
    assert info.columns == [
        "email",
        "score",
        "id",
        "vip",
        "phone",
        "tags",
        "meta",
        "surprise",
        "also",
    ]
    assert [r.number for r in rows] == [1, 2, 3, 4, 5]  # the blank line is not counted
    assert rows[0].values[:4] == ["a@example.com", "1.50", "12345678901234567890", "true"]
    assert rows[0].values[4:] == [""] * 5  # missing keys
    assert rows[1].values[4:7] == ["", '["x",1e3]', '{"k":"é"}']
    assert rows[2].values == [] and rows[2].problem.startswith("not a JSON object (invalid JSON")
    assert rows[3].problem == "not a JSON object (the line holds an array)"
    assert rows[4].problem is None  # its keys were seen in the sample


def test_jsonl_later_unknown_key_is_a_row_problem(tmp_path: Path) -> None:
    filler = "".join(json.dumps({"email": f"u{i}@example.com"}) + "\n" for i in range(3000))
    data = filler + '{"email": "late@example.com", "Nickname": "Z", "x": 1}\n'
    info, rows = read(write(tmp_path, "k.jsonl", data))
    assert info.columns == ["email"]
    assert rows[-1].values == ["late@example.com"]
    assert (
        rows[-1].problem
        == "unexpected keys 'Nickname', 'x' (not among the keys of the first records)"
    )


def test_jsonl_first_line_must_be_an_object(tmp_path: Path) -> None:
    fails(
        write(tmp_path, "a.jsonl", '[{"email": "x"}]\n'), "first line is not a JSON object", "array"
    )
    fails(write(tmp_path, "b.jsonl", "email,name\n"), "first line is not a JSON object")


def test_jsonl_crlf_bom_and_stdin(tmp_path: Path) -> None:
    data = '{"Email": "a@example.com"}\r\n{"Email": "b@example.com"}\r\n'.encode("utf-8-sig")
    _, rows = read(write(tmp_path, "c.jsonl", data))
    assert values(rows) == [["a@example.com"], ["b@example.com"]]
    with open_source("-", stdin=io.BytesIO(data)) as source:
        assert source.info.format == "jsonl"
        assert len(list(source.rows())) == 2


# ---------------------------------------------------------------- stdin and the Source object


def test_stdin_csv_is_sniffed(tmp_path: Path) -> None:
    data = "Email;Name\na@example.com;Zoë\n".encode("cp1252")
    with open_source("-", stdin=io.BytesIO(data)) as source:
        info = source.info
        assert (info.path, info.name, info.format, info.size) == ("-", "<stdin>", "csv", None)
        assert (info.encoding, info.delimiter) == ("cp1252", ";")
        rows = list(source.rows())
        assert rows[0].file == "<stdin>" and rows[0].values == ["a@example.com", "Zoë"]
        assert source.bytes_read == len(data)


def test_named_pipe_is_sniffed_like_stdin(tmp_path: Path) -> None:
    fifo = tmp_path / "leads"  # no extension, like bash's <(...) -> /dev/fd/63
    os.mkfifo(fifo)

    def feed() -> None:
        with fifo.open("wb") as f:
            f.write(b'{"Email": "a@example.com"}\n')

    writer = threading.Thread(target=feed)
    writer.start()
    try:
        info, rows = read(str(fifo))
    finally:
        writer.join()
    assert (info.format, info.size, values(rows)) == ("jsonl", None, [["a@example.com"]])


def test_bytes_read_grows_and_rows_is_single_pass(tmp_path: Path) -> None:
    text = "Email\n" + "".join(f"u{i}@example.com\n" for i in range(20000))
    path = write(tmp_path, "p.csv", text)
    with open_source(path) as source:
        assert source.info.size == len(text)
        seen = []
        for row in source.rows():
            if row.number % 5000 == 0:
                seen.append(source.bytes_read)
        assert seen == sorted(seen) and source.bytes_read == len(text)
        with pytest.raises(RuntimeError):
            source.rows()


def test_example_leads_file() -> None:
    info, rows = read(str(REPO / "examples" / "leads.csv"))
    assert (info.encoding, info.delimiter, len(info.columns)) == ("utf-8", ",", 10)
    assert "Phone" in info.columns and "Lead Source" in info.columns
    assert len(rows) == 200 and rows[-1].number == 200
    assert sum("\n" in v for r in rows for v in r.values) == 1
    emails = [r.values[2].lower() for r in rows]
    assert 3 <= len(emails) - len(set(emails)) <= 5
    assert all(r.problem is None and len(r.values) == 10 for r in rows)


# ---------------------------------------------------------------- properties

# Any text but surrogates and control characters (refused as binary by design), with
# the characters quoting is about made likely. Not a lone "\r": csv.writer leaves it
# unquoted under lineterminator="\n", so no reader could get it back.
_TEXT = st.lists(
    st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="\ufeff")
    | st.sampled_from(["\n", "\r\n", "\t", '"', ",", ";", "|", " "]),
    max_size=12,
).map("".join)
_DIALECT = st.fixed_dictionaries(
    {
        "delimiter": st.sampled_from([",", ";", "\t", "|"]),
        "lineterminator": st.sampled_from(["\n", "\r\n"]),
        "quoting": st.sampled_from([csv.QUOTE_MINIMAL, csv.QUOTE_ALL]),
    }
)


@st.composite
def tables(draw: st.DrawFn, text: st.SearchStrategy[str]) -> list[list[str]]:
    width = draw(st.integers(1, 5))
    header = draw(
        st.lists(text.filter(lambda s: s.strip()), min_size=width, max_size=width, unique=True)
    )
    body = draw(st.lists(st.lists(text, min_size=width, max_size=width), max_size=8))
    return [header, *body]


def _write_table(
    path: Path, table: list[list[str]], dialect: dict[str, Any], encoding: str
) -> None:
    buffer = io.StringIO()
    csv.writer(buffer, **dialect).writerows(table)
    path.write_bytes(buffer.getvalue().encode(encoding))


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    table=tables(_TEXT),
    dialect=_DIALECT,
    encoding=st.sampled_from(["utf-8", "utf-8-sig", "utf-16"]),
)
def test_round_trip(
    tmp_path: Path, table: list[list[str]], dialect: dict[str, Any], encoding: str
) -> None:
    path = tmp_path / "rt.csv"
    _write_table(path, table, dialect, encoding)
    info, rows = read(str(path), delimiter=dialect["delimiter"])
    assert info.columns == table[0]
    assert values(rows) == [r for r in table[1:] if any(r)]  # all-empty rows are skipped
    assert all(r.problem is None for r in rows)


# Sniffing needs an unambiguous file: values may contain the real delimiter (quoted by
# the writer), quotes and newlines, but not the other candidates.
_PLAIN = st.text(
    st.characters(
        blacklist_categories=("Cs", "Cc"), blacklist_characters="\ufeff,;|\t", max_codepoint=0x2FF
    )
    | st.sampled_from(["\n", '"', " "]),
    max_size=10,
)


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(table=tables(_PLAIN), dialect=_DIALECT, data=st.data())
def test_sniffed_round_trip(
    tmp_path: Path, table: list[list[str]], dialect: dict[str, Any], data: st.DataObject
) -> None:
    delimiter = dialect["delimiter"]
    with_delimiter = st.builds(lambda a, b: f"{a}{delimiter}{b}", _PLAIN, _PLAIN)
    extra = data.draw(st.lists(with_delimiter, max_size=len(table[0])))
    table = [table[0], *table[1:], extra + table[0][len(extra) :]] if len(table[0]) > 1 else table
    path = tmp_path / "sn.csv"
    _write_table(path, table, dialect, "utf-8")
    info, rows = read(str(path))
    if len(table[0]) > 1:
        assert info.delimiter == delimiter
    assert [info.columns, *values(rows)] == [table[0], *(r for r in table[1:] if any(r))]


# Random bytes mostly stop at the binary check, so also draw "nearly text": bytes that
# get past it into the csv and JSON parsers (quotes, newlines, invalid UTF-8, braces).
_NEARLY_TEXT = st.lists(st.sampled_from(list(b'ab ,;|\t"\n\r{}[]:1\xe9\xff\x81\xc3')), max_size=300)
_PREFIXES = [b"PK\x03\x04", b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff", b'{"a":', b"sep=;\n"]


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    data=st.binary(max_size=2000)
    | _NEARLY_TEXT.map(bytes)
    | st.builds(lambda p, b: p + bytes(b), st.sampled_from(_PREFIXES), _NEARLY_TEXT),
    name=st.sampled_from(["f.csv", "f.tsv", "f.jsonl", "f.xlsx", "f.ods", "f.xls"]),
)
def test_fuzz_only_input_errors(tmp_path: Path, data: bytes, name: str) -> None:
    path = tmp_path / name
    path.write_bytes(data)
    try:
        with open_source(str(path)) as source:
            for row in source.rows():
                assert isinstance(row.values, list)
                assert all(isinstance(v, str) for v in row.values)
                assert not any("\ud800" <= c <= "\udfff" for v in row.values for c in v)
    except InputError:
        pass
