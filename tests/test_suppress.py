"""Suppression lists (``--suppress FILE``, ``SHANDY_SUPPRESS``): over real files, through
the library and the CLI, to the sandbox; the columnar path against the per-row one."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import pytest
from incli import run_cli

from shandy_cli import SaleshandyClient
from shandy_cli.config import resolve_settings
from shandy_cli.errors import InputError
from shandy_cli.pipeline.columnar import framing
from shandy_cli.pipeline.results import ImportOptions
from shandy_cli.pipeline.suppression import load_suppression
from shandy_cli.sandbox import Sandbox
from tests.test_fastpath import BASE, HEADER, compare, csv_bytes
from tests.test_fastsheet import compare_sheet, workbook
from tests.test_import import posts, run, write_csv  # the same import against the sandbox

LEAD_HEADER = ["First Name", "Last Name", "Email", "Company"]


def leads(tmp_path: Path) -> Path:
    """Ten leads: two at competitor.com, one at rival.io, the rest at example.com."""
    rows = [
        ["Ann", "A", "ann@example.com", "Co"],
        ["Bob", "B", "Bob@Competitor.COM", "Co"],
        ["Cat", "C", "cat@example.com", "Co"],
        ["Dan", "D", "dan@competitor.com", "Co"],
        ["Eve", "E", "EVE@EXAMPLE.COM", "Co"],  # suppressed by address, case aside
        ["Fay", "F", "fay@rival.io", "Co"],
        ["Gus", "G", "gus@example.com", "Co"],
        ["Hal", "H", "hal@example.com", "Co"],
        ["Ivy", "I", "eve@example.com", "Co"],  # the same address again: suppressed too
        ["Jo", "J", "jo@sub.competitor.com", "Co"],  # a subdomain is another domain
    ]
    return write_csv(tmp_path / "leads.csv", LEAD_HEADER, rows)


def landed(sandbox: Sandbox) -> set[str]:
    """Every address the sandbox holds (GET /v1/prospects, page by page)."""
    found: set[str] = set()
    with SaleshandyClient(sandbox.url, "test-key") as client:
        page = 1
        while batch := client.list_prospects(page=page):
            found |= {p["email"].lower() for p in batch}
            page += 1
    return found


def cli_env(sandbox: Sandbox, tmp_path: Path) -> dict[str, str]:
    return {
        "SALESHANDY_API_KEY": "test-key",
        "SALESHANDY_BASE_URL": sandbox.url,
        "SHANDY_STATE_DIR": str(tmp_path / "state"),
    }


def read_rows(path: str | Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def test_addresses_domains_case_and_comments(sandbox: Sandbox, tmp_path: Path) -> None:
    dnc = tmp_path / "dnc.txt"
    dnc.write_text("# our do-not-contact list\n\n  Eve@Example.com  \n@COMPETITOR.com\n# end\n")
    rival = tmp_path / "rival.txt"
    rival.write_text("*@rival.io\n")
    result = run(sandbox, tmp_path, [str(leads(tmp_path))], step_id="StepA1", suppress=[dnc, rival])
    assert result.exit_code == 0, result
    assert (result.rows_read, result.rows_submitted, result.rows_skipped) == (10, 5, 5)
    assert result.rows_rejected == 0
    assert result.rows_read == result.rows_submitted + result.rows_rejected + result.rows_skipped
    assert landed(sandbox) == {
        "ann@example.com",
        "cat@example.com",
        "gus@example.com",
        "hal@example.com",
        "jo@sub.competitor.com",
    }
    assert result.rejects_file is not None
    rejected = {r["Email"]: r["_reason"] for r in read_rows(result.rejects_file)}
    assert rejected == {
        "Bob@Competitor.COM": f"suppressed by {dnc} (line 4: @COMPETITOR.com)",
        "dan@competitor.com": f"suppressed by {dnc} (line 4: @COMPETITOR.com)",
        "EVE@EXAMPLE.COM": f"suppressed by {dnc} (line 3: Eve@Example.com)",
        "eve@example.com": f"suppressed by {dnc} (line 3: Eve@Example.com)",
        "fay@rival.io": f"suppressed by {rival} (line 1: *@rival.io)",
    }
    assert [r["_row"] for r in read_rows(result.rejects_file)] == ["2", "4", "5", "6", "9"]


def test_a_suppressed_row_is_not_a_duplicate(sandbox: Sandbox, tmp_path: Path) -> None:
    """Checked before dedupe: the first row is suppressed, the second still is, and a
    third address's duplicate is a duplicate of the first that was sent."""
    src = write_csv(
        tmp_path / "a.csv",
        LEAD_HEADER,
        [
            ["A", "", "x@no.test", ""],
            ["B", "", "X@NO.TEST", ""],
            ["C", "", "y@ok.test", ""],
            ["D", "", "Y@ok.test", ""],
        ],
    )
    dnc = tmp_path / "dnc.txt"
    dnc.write_text("x@no.test\n")
    result = run(sandbox, tmp_path, [str(src)], step_id="StepA1", suppress=[dnc])
    assert (result.rows_submitted, result.rows_rejected, result.rows_skipped) == (1, 1, 2)
    assert result.rejects_file is not None
    reasons = [r["_reason"] for r in read_rows(result.rejects_file)]
    assert reasons == [
        f"suppressed by {dnc} (line 1: x@no.test)",
        f"suppressed by {dnc} (line 1: x@no.test)",
        f"duplicate email 'Y@ok.test' (first seen in {src} row 3)",
    ]
    assert landed(sandbox) == {"y@ok.test"}


def test_a_csv_list_with_an_email_column(sandbox: Sandbox, tmp_path: Path) -> None:
    crm = tmp_path / "unsubscribed.csv"
    crm.write_text(
        'Name,E-mail Address,Note\n"Cat, C",cat@example.com,asked\nNo One,,\n'
        '# a comment row\n"Multi\nline",HAL@example.com,x\n'
    )
    result = run(sandbox, tmp_path, [str(leads(tmp_path))], step_id="StepA1", suppress=[crm])
    # eve@example.com is a duplicate of EVE@EXAMPLE.COM here: rejected
    assert (result.rows_submitted, result.rows_rejected, result.rows_skipped) == (7, 1, 2)
    assert result.rejects_file is not None
    rejected = {r["Email"]: r["_reason"] for r in read_rows(result.rejects_file)}
    del rejected["eve@example.com"]
    assert rejected == {
        "cat@example.com": f"suppressed by {crm} (line 2: cat@example.com)",
        "hal@example.com": f"suppressed by {crm} (line 5: HAL@example.com)",
    }
    assert landed(sandbox).isdisjoint({"cat@example.com", "hal@example.com"})


def test_csv_header_detection_reuses_the_email_label_matching(tmp_path: Path) -> None:
    for header in ("Email", "e-mail", "Email Address", "work_email", "EMAIL ID"):
        path = tmp_path / "l.csv"
        path.write_text(f"id;{header}\n1;a@b.test\n")
        found = load_suppression([path])
        assert found is not None and found.entries == [(str(path), 2, "a@b.test")], header
    one = tmp_path / "one.txt"
    one.write_text("email\nA@B.test\n@c.test\n")
    found = load_suppression([one])
    assert found is not None and [e[1:] for e in found.entries] == [(2, "A@B.test"), (3, "@c.test")]


@pytest.mark.parametrize(
    ("text", "line", "shown"),
    [
        ("a@b.test\nnot an address\n", 2, "not an address"),
        ("# c\n\n@\n", 3, "@"),
        ("*@no_dots\n", 1, "*@no_dots"),
        ("a@b.test, c@d.test\n", 1, "a@b.test, c@d.test"),
    ],
)
def test_a_bad_line_stops_before_anything_is_sent(
    sandbox: Sandbox, tmp_path: Path, text: str, line: int, shown: str
) -> None:
    dnc = tmp_path / "dnc.txt"
    dnc.write_text(text)
    with pytest.raises(InputError) as caught:
        run(sandbox, tmp_path, [str(leads(tmp_path))], step_id="StepA1", suppress=[dnc])
    assert caught.value.exit_code == 2
    assert caught.value.file == str(dnc)
    assert f"line {line}: {shown!r} is not an address" in str(caught.value)
    assert posts(sandbox) == []


def test_cli_bad_line_exit_2_and_no_post(sandbox: Sandbox, tmp_path: Path) -> None:
    leads(tmp_path)
    (tmp_path / "dnc.txt").write_text("ok@example.com\nnope\n")
    env = cli_env(sandbox, tmp_path)
    ran = run_cli(
        "import", "leads.csv", "--step", "StepA1", "--suppress", "dnc.txt", cwd=tmp_path, env=env
    )
    assert ran.returncode == 2, ran
    assert "dnc.txt" in ran.stderr and "line 2" in ran.stderr and "'nope'" in ran.stderr
    assert len(ran.stderr.strip().splitlines()) == 1, ran.stderr
    assert posts(sandbox) == []


def test_cli_missing_list_exit_2(sandbox: Sandbox, tmp_path: Path) -> None:
    leads(tmp_path)
    env = cli_env(sandbox, tmp_path)
    ran = run_cli(
        "import", "leads.csv", "--step", "StepA1", "--suppress", "gone.txt", cwd=tmp_path, env=env
    )
    assert ran.returncode == 2, ran
    assert "gone.txt" in ran.stderr and "cannot read suppression list" in ran.stderr
    assert posts(sandbox) == []


def test_setting_from_dotenv_and_flag_add_up(sandbox: Sandbox, tmp_path: Path) -> None:
    """SHANDY_SUPPRESS (from .env, os.pathsep between files) always applies; --suppress
    adds to it. The CLI's --json counts them; nothing suppressed landed."""
    leads(tmp_path)
    (tmp_path / "team.txt").write_text("@competitor.com\n")
    (tmp_path / "team2.txt").write_text("fay@rival.io\n")
    (tmp_path / "job.txt").write_text("gus@example.com\n")
    dotenv = tmp_path / ".env"
    dotenv.write_text(f"SHANDY_SUPPRESS=team.txt{os.pathsep}team2.txt\n")
    dotenv.chmod(0o600)
    env = cli_env(sandbox, tmp_path)
    args = ("import", "leads.csv", "--step", "StepA1", "--poll-interval", "0.05", "--json")
    ran = run_cli(*args, "--suppress", "job.txt", cwd=tmp_path, env=env)
    assert ran.returncode == 1, ran  # eve@example.com is a duplicate: rejected
    doc = json.loads(ran.stdout)
    counts = [doc[k] for k in ("rows_read", "rows_submitted", "rows_rejected", "rows_skipped")]
    assert counts == [10, 5, 1, 4]
    assert "4 row(s) skipped: suppressed" in ran.stderr
    assert "already imported" not in ran.stderr
    got = landed(sandbox)
    assert len(got) == 5
    assert got.isdisjoint(
        {"bob@competitor.com", "dan@competitor.com", "fay@rival.io", "gus@example.com"}
    )
    assert "jo@sub.competitor.com" in got


def test_setting_resolves_to_a_tuple(tmp_path: Path) -> None:
    dotenv = tmp_path / ".env"
    dotenv.write_text(f"SHANDY_SUPPRESS= a.txt {os.pathsep}{os.pathsep}~/b.txt\n")
    settings = resolve_settings(environ={}, dotenv_path=dotenv)
    assert settings.suppress == (Path("a.txt"), Path("~/b.txt").expanduser())
    env = resolve_settings(environ={"SHANDY_SUPPRESS": "c.txt"}, dotenv_path=dotenv)
    assert env.suppress == (Path("c.txt"),)
    assert resolve_settings(environ={}, dotenv_path=tmp_path / "none").suppress == ()


def test_the_lists_content_is_in_the_fingerprint(tmp_path: Path) -> None:
    dnc = tmp_path / "dnc.txt"
    dnc.write_text("a@b.test\n")
    before = ImportOptions(suppress=[dnc]).fingerprint_part()
    assert ImportOptions(suppress=[dnc]).fingerprint_part() == before
    dnc.write_text("a@b.test\nc@d.test\n")
    assert ImportOptions(suppress=[dnc]).fingerprint_part() != before
    assert "suppress" not in ImportOptions().fingerprint_part()  # older runs' fingerprints
    stored = ImportOptions.from_json(ImportOptions(suppress=[dnc]).to_json())
    assert stored.suppress == (dnc.resolve(),)


def test_a_list_change_makes_another_import(sandbox: Sandbox, tmp_path: Path) -> None:
    """The same file with the same list completes once; with a shorter list it is
    another import and sends the row the list no longer holds."""
    src = leads(tmp_path)
    dnc = tmp_path / "dnc.txt"
    dnc.write_text("@competitor.com\n@rival.io\neve@example.com\n")
    first = run(sandbox, tmp_path, [str(src)], step_id="StepA1", suppress=[dnc])
    assert first.rows_submitted == 5
    again = run(sandbox, tmp_path, [str(src)], step_id="StepA1", suppress=[dnc])
    assert again.rows_submitted == 0 or again.already_imported  # nothing sent twice
    assert len(posts(sandbox)) == 1
    dnc.write_text("@competitor.com\neve@example.com\n")
    third = run(sandbox, tmp_path, [str(src)], step_id="StepA1", suppress=[dnc], only_new=True)
    assert (third.rows_submitted, third.rows_skipped) == (1, 9)
    assert "fay@rival.io" in landed(sandbox)


# -- the columnar path against the per-row one (tests/test_fastpath.py's compare)


def test_columnar_twin_gives_the_same_bytes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(framing, "BLOCK", 1 << 12)  # many blocks
    path = tmp_path / "a.csv"
    path.write_bytes(csv_bytes(HEADER, BASE, lineterminator="\n"))
    dnc = tmp_path / "dnc.txt"
    lines = ["# every seventh user, one domain, a non-ASCII one"]
    lines += [f"USER{i}@example.TEST" for i in range(0, 3000, 7)]
    lines += ["@exämple.test", "*@nowhere.test"]
    dnc.write_text("\n".join(lines) + "\n")
    got = compare([path], tmp_path, monkeypatch, 3000, suppress=[dnc], max_bytes=5_000)
    read, submitted, rejected, skipped = got["counts"]  # type: ignore[misc]
    assert read == 3000 and read == submitted + rejected + skipped
    reasons = got["reasons"]
    assert isinstance(reasons, dict)
    suppressed = {k: v for k, v in reasons.items() if k.startswith("suppressed by")}
    assert sum(suppressed.values()) == skipped
    assert suppressed == {f"suppressed by {dnc}": SUPPRESSED_IN_BASE}  # grouped by list
    assert skipped == SUPPRESSED_IN_BASE


def test_columnar_sheet_twin_gives_the_same_bytes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from shandy_cli.pipeline.columnar import sheet as columnar_sheet

    monkeypatch.setattr(columnar_sheet, "SHEET_BLOCK", 257)  # many blocks
    path = workbook(tmp_path / "a.xlsx", [HEADER, *BASE[:2000]])
    dnc = tmp_path / "dnc.csv"
    dnc.write_text("Email,Why\n" + "".join(f"user{i}@example.test,x\n" for i in range(0, 2000, 5)))
    odd = tmp_path / "d'nc (team).txt"  # quotes and parentheses: reason_kind reads them
    odd.write_text("@EXÄMPLE.test\n")
    compare_sheet(path, tmp_path, monkeypatch, 2000, suppress=[dnc, odd])
    prepared = snapshot_counts(path, tmp_path / "again", monkeypatch, [dnc, odd])
    listed = {f"user{i}@example.test" for i in range(0, 2000, 5)}
    simple = sum(
        1
        for row in BASE[:2000]
        if row[2].strip().lower() in listed or row[2].strip().endswith("@exämple.test")
    )
    assert prepared == simple == 392


def snapshot_counts(
    path: Path, out: Path, monkeypatch: pytest.MonkeyPatch, lists: list[Path]
) -> int:
    from tests.test_fastpath import run as prepare_run

    prepared, _ = prepare_run([path], out, "1", monkeypatch, fastexcel=True, suppress=lists)
    assert prepared.rows_columnar == 2000
    return prepared.rows_skipped


# 421 rows at the 429 listed addresses (some listed users' rows hold a bad address, others
# repeat a listed one in another case)
# and the 12 rows at the IDN domain: pinned, and counted again here the simple way
SUPPRESSED_IN_BASE = 433


def test_the_pinned_count_is_the_simple_count() -> None:
    listed = {f"user{i}@example.test" for i in range(0, 3000, 7)}
    simple = sum(
        1
        for row in BASE
        if row[2].strip().lower() in listed or row[2].strip().endswith("@exämple.test")
    )
    assert simple == SUPPRESSED_IN_BASE


@pytest.mark.parametrize("kind", ["device", "directory", "pipe"])
def test_a_list_that_is_not_a_file_is_refused_before_anything_is_read(
    sandbox: Sandbox, tmp_path: Path, kind: str
) -> None:
    """/dev/zero would be read for ever; a pipe could not be read again (fingerprint,
    matching, resume): both stop with exit 2 naming the list, and nothing is sent."""
    if kind == "device":
        listed = Path("/dev/zero")
    elif kind == "directory":
        listed = tmp_path / "lists"
        listed.mkdir()
    else:
        listed = tmp_path / "fifo"
        os.mkfifo(listed)
    with pytest.raises(InputError) as caught:
        run(sandbox, tmp_path, [str(leads(tmp_path))], step_id="StepA1", suppress=[listed])
    assert caught.value.exit_code == 2
    assert f"the suppression list is a {kind}, not a file" in str(caught.value)
    assert posts(sandbox) == []


def test_a_list_larger_than_the_bound_is_refused(
    sandbox: Sandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from shandy_cli.pipeline import suppression

    monkeypatch.setattr(suppression, "MAX_LIST_BYTES", 100)
    dnc = tmp_path / "dnc.txt"
    dnc.write_text("".join(f"a{i}@example.test\n" for i in range(10)))  # 160 bytes
    with pytest.raises(InputError) as caught:
        run(sandbox, tmp_path, [str(leads(tmp_path))], step_id="StepA1", suppress=[dnc])
    assert "larger than" in str(caught.value)
    assert posts(sandbox) == []
