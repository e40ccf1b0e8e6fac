"""The `shandy` command as users run it: in this process (``CliRunner``) with real HTTP
and real exit codes; a real subprocess for the README demo (cron: no TTY, no ANSI)."""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from incli import Ran, run_cli

from shandy_cli.sandbox import Sandbox

ROOT = Path(__file__).resolve().parent.parent
SECRET = "sk-live-VERYSECRETKEY-7f3a9c"


def shandy(
    *args: str,
    tmp_path: Path,
    env: dict[str, str] | None = None,
    stdin: bytes | None = None,
    cwd: Path | None = None,
) -> Ran:
    base = {"SHANDY_STATE_DIR": str(tmp_path / "state"), "SHANDY_SANDBOX_DELAY": "0.05"}
    return run_cli(*args, cwd=cwd or tmp_path, env={**base, **(env or {})}, stdin=stdin)


def shandy_process(*args: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """The real thing: ``python -m shandy_cli`` in a subprocess, stdin/stderr not a TTY."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SALESHANDY_", "SHANDY_"))}
    env.update({"SHANDY_STATE_DIR": str(tmp_path / "state"), "SHANDY_SANDBOX_DELAY": "0.05"})
    return subprocess.run(
        [sys.executable, "-m", "shandy_cli", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
    )


def at(sandbox: Sandbox) -> dict[str, str]:
    return {"SALESHANDY_BASE_URL": sandbox.url, "SALESHANDY_API_KEY": SECRET}


def write_leads(path: Path, n: int = 5, bad: int = 0) -> Path:
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["first_name", "E-mail", "Company Name"])
        for i in range(n):
            w.writerow([f"N{i}", f"p{i}@example.com", f"Co, {i}"])
        for i in range(bad):
            w.writerow([f"B{i}", f"broken{i}", "x"])
    return path


def no_traceback(result: Ran | subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout


def test_readme_demo_command(tmp_path: Path) -> None:
    """The quickstart: the example file into a sandbox step, waiting for completion."""
    (tmp_path / "examples").mkdir()
    example = tmp_path / "examples" / "leads.csv"
    example.write_bytes((ROOT / "examples" / "leads.csv").read_bytes())
    result = shandy_process(
        "import", "examples/leads.csv", "--step", "StepA1", "--sandbox", tmp_path=tmp_path
    )
    no_traceback(result)
    assert result.returncode == 1, result.stderr  # the example has bad and duplicate emails
    assert "completed" in result.stdout and "yes" in result.stdout
    rejects = tmp_path / "examples" / "leads.rejects.csv"
    assert rejects.exists() and "_reason" in rejects.read_text()
    assert "\x1b[" not in result.stderr  # not a TTY: plain lines, no ANSI


def test_json_document_has_contract_keys(sandbox: Sandbox, tmp_path: Path) -> None:
    src = write_leads(tmp_path / "l.csv", 4, bad=1)
    result = shandy(
        "import",
        str(src),
        "--step",
        "StepA1",
        "--json",
        "--poll-interval",
        "0.05",
        tmp_path=tmp_path,
        env=at(sandbox),
    )
    no_traceback(result)
    doc = json.loads(result.stdout)
    for key in (
        "run_id",
        "dry_run",
        "step_id",
        "files",
        "rows_read",
        "rows_submitted",
        "rows_rejected",
        "rows_skipped",
        "rejects_file",
        "failures_file",
        "chunks",
        "completed",
        "exit_code",
        "rows_failed",
        "rows_already_present",
        "rows_updated",
    ):
        assert key in doc
    assert doc["exit_code"] == result.returncode == 1
    assert doc["rows_read"] == 5 and doc["rows_submitted"] == 4 and doc["rows_rejected"] == 1
    chunk = doc["chunks"][0]
    assert set(chunk) >= {
        "index",
        "rows",
        "bytes",
        "request_id",
        "state",
        "report_url",
        "failed_rows",
        "already_present_rows",
    }
    assert chunk["state"] == "completed" and chunk["failed_rows"] == 0
    assert Path(doc["rejects_file"]).exists() and Path(doc["failures_file"]).exists()


def test_status_command_json(sandbox: Sandbox, tmp_path: Path) -> None:
    src = write_leads(tmp_path / "l.csv", 3)
    first = shandy(
        "import",
        str(src),
        "--step",
        "StepA1",
        "--no-wait",
        "--json",
        tmp_path=tmp_path,
        env=at(sandbox),
    )
    assert first.returncode == 0, first.stderr
    rid = json.loads(first.stdout)["chunks"][0]["request_id"]
    result = shandy(
        "status",
        rid,
        "--wait",
        "--json",
        "--poll-interval",
        "0.05",
        tmp_path=tmp_path,
        env=at(sandbox),
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == [
        {
            "request_id": rid,
            "completed": True,
            "report_url": None,
            "failed_rows": 0,
            "already_present_rows": 0,
            "report_file": None,
            "failures_file": None,
        }
    ]


def test_status_with_sandbox_flag_persists_across_processes(tmp_path: Path) -> None:
    src = write_leads(tmp_path / "l.csv", 2)
    first = shandy(
        "import",
        str(src),
        "--step",
        "StepA1",
        "--sandbox",
        "--no-wait",
        "--json",
        tmp_path=tmp_path,
    )
    rid = json.loads(first.stdout)["chunks"][0]["request_id"]
    result = shandy(
        "status", rid, "--sandbox", "--wait", "--json", "--poll-interval", "0.05", tmp_path=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)[0]["completed"] is True


def test_sequences_and_fields(sandbox: Sandbox, tmp_path: Path) -> None:
    seqs = shandy("sequences", "--json", tmp_path=tmp_path, env=at(sandbox))
    assert seqs.returncode == 0, seqs.stderr
    steps = {s["id"] for seq in json.loads(seqs.stdout) for s in seq["steps"]}
    assert {"StepA1", "StepA2", "StepW1", "StepE1"} <= steps
    fields = shandy("fields", "--json", tmp_path=tmp_path, env=at(sandbox))
    labels = {f["label"] for f in json.loads(fields.stdout)}
    assert {"Email", "First Name", "Company"} <= labels
    table = shandy("sequences", tmp_path=tmp_path, env=at(sandbox))
    assert "Outbound Q4" in table.stdout and "StepA1" in table.stdout


def test_preview_json(tmp_path: Path) -> None:
    src = write_leads(tmp_path / "l.csv", 2)
    result = shandy("preview", str(src), "--json", "--sandbox", tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["format"] == "csv" and doc["delimiter"] == ","
    assert doc["mapping"] == {
        "first_name": "First Name",
        "E-mail": "Email",
        "Company Name": "Company",
    }
    assert doc["rows"][0]["Company Name"] == "Co, 0"
    assert doc["prospects"][0] == {
        "First Name": "N0",
        "Email": "p0@example.com",
        "Company": "Co, 0",
    }


def test_stdin(sandbox: Sandbox, tmp_path: Path) -> None:
    data = b"Email,First Name\nin1@example.com,Ann\nin2@example.com,Bo\n"
    result = shandy(
        "import",
        "-",
        "--step",
        "StepA1",
        "--json",
        "--poll-interval",
        "0.05",
        tmp_path=tmp_path,
        env=at(sandbox),
        stdin=data,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["files"] == ["<stdin>"]


@pytest.mark.parametrize(
    ("make", "needle"),
    [
        (lambda p: p / "missing.csv", "missing.csv"),
        (lambda p: p, "directory"),
        (
            lambda p: (
                (p / "junk.csv").write_bytes(os.urandom(3000) + b"\0" * 100) and p / "junk.csv"
            ),
            "junk.csv",
        ),
        (
            lambda p: (
                (p / "pic.xlsx").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 64) and p / "pic.xlsx"
            ),
            "pic.xlsx",
        ),
        (
            lambda p: (
                (p / "dup.csv").write_text("Email,Email\na@example.com,b@example.com\n")
                and p / "dup.csv"
            ),
            "Email",
        ),
        (
            lambda p: (p / "noemail.csv").write_text("First Name\nAnn\n") and p / "noemail.csv",
            "Email",
        ),
    ],
)
def test_bad_input_is_one_line_exit_2(tmp_path: Path, make, needle: str) -> None:  # type: ignore[no-untyped-def]
    src = make(tmp_path)
    result = shandy("import", str(src), "--step", "StepA1", "--sandbox", tmp_path=tmp_path)
    no_traceback(result)
    assert result.returncode == 2, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("shandy: error:")]
    assert len(errors) == 1 and needle.lower() in errors[0].lower()


def test_unknown_sheet_is_exit_2(tmp_path: Path) -> None:
    openpyxl = pytest.importorskip("openpyxl")
    wb = openpyxl.Workbook()
    wb.active.title = "Leads"
    wb.active.append(["Email"])
    wb.active.append(["a@example.com"])
    wb.save(tmp_path / "w.xlsx")
    result = shandy(
        "import", str(tmp_path / "w.xlsx"), "--sheet", "Nope", "--dry-run", tmp_path=tmp_path
    )
    no_traceback(result)
    assert result.returncode == 2 and "Leads" in result.stderr


def test_bad_flags_exit_2(tmp_path: Path) -> None:
    src = write_leads(tmp_path / "l.csv", 1)
    for args in (
        ["--conflict", "bogus"],
        ["--max-rows", "0"],
        ["--max-bytes", "90000001"],
        ["--on-unknown-column", "explode"],
        ["--map", "NoEquals"],
    ):
        result = shandy(
            "import", str(src), "--step", "StepA1", "--dry-run", *args, tmp_path=tmp_path
        )
        no_traceback(result)
        assert result.returncode == 2, (args, result.stderr)


def test_missing_key_is_exit_3(tmp_path: Path) -> None:
    src = write_leads(tmp_path / "l.csv", 1)
    result = shandy(
        "import",
        str(src),
        "--step",
        "StepA1",
        tmp_path=tmp_path,
        env={"SALESHANDY_BASE_URL": "http://127.0.0.1:9"},
    )
    no_traceback(result)
    assert result.returncode == 3 and "SALESHANDY_API_KEY" in result.stderr


def test_wrong_key_is_exit_3_and_key_never_printed(tmp_path: Path) -> None:
    from shandy_cli.sandbox import SandboxConfig, start_sandbox

    with start_sandbox(SandboxConfig(state_dir=tmp_path / "sb", api_key="the-right-key")) as sb:
        src = write_leads(tmp_path / "l.csv", 1)
        result = shandy("-v", "import", str(src), "--step", "StepA1", tmp_path=tmp_path, env=at(sb))
    assert result.returncode == 3
    assert SECRET not in result.stdout + result.stderr


def test_plain_http_to_a_remote_host_is_refused(tmp_path: Path) -> None:
    result = shandy(
        "fields",
        tmp_path=tmp_path,
        env={"SALESHANDY_BASE_URL": "http://api.example.com", "SALESHANDY_API_KEY": "k"},
    )
    assert result.returncode == 2 and "https" in result.stderr


def test_api_key_flag_warns_about_ps(sandbox: Sandbox, tmp_path: Path) -> None:
    result = shandy("fields", "--api-key", SECRET, "--base-url", sandbox.url, tmp_path=tmp_path)
    assert result.returncode == 0
    assert "ps" in result.stderr and SECRET not in result.stderr + result.stdout


def test_help_has_examples(tmp_path: Path) -> None:
    for cmd in ("import", "status", "preview", "sequences", "fields", "sandbox"):
        result = shandy(cmd, "--help", tmp_path=tmp_path)
        assert result.returncode == 0 and "Examples" in result.stdout, cmd


def test_version(tmp_path: Path) -> None:
    from shandy_cli import __version__

    result = shandy("--version", tmp_path=tmp_path)
    assert result.stdout.strip() == f"shandy {__version__}"


def test_rejects_fall_back_to_state_dir_when_input_folder_is_not_writable(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    """`shandy import <(zcat leads.gz)`: the input is /dev/fd/N, where no file can be made."""
    read_fd, write_fd = os.pipe()
    os.write(write_fd, b"Email\nok@example.com\nnot-an-email\n")
    os.close(write_fd)
    result = shandy(
        "import",
        f"/dev/fd/{read_fd}",
        "--step",
        "StepA1",
        "--json",
        "--poll-interval",
        "0.05",
        tmp_path=tmp_path,
        env=at(sandbox),
    )
    os.close(read_fd)
    assert result.returncode == 1, result.stderr
    doc = json.loads(result.stdout)
    rejects = Path(doc["rejects_file"])
    assert rejects.is_relative_to(tmp_path / "state") and rejects.exists()
    assert "not-an-email" in rejects.read_text()


def world_readable_dotenv(folder: Path) -> None:
    """A ``.env`` others can read: every command warns about it (unless -q)."""
    dotenv = folder / ".env"
    dotenv.write_text("SHANDY_RATE_TOTAL=300\n")
    dotenv.chmod(0o644)


RETRY = re.compile(r"^shandy: \S.*; retry 1 in \d+\.\ds$", re.MULTILINE)
DOTENV_WARNING = "shandy: warning: .env is readable by group or others; run: chmod 600 .env"
NO_KEY_NOTICE = re.compile(
    r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d shandy: no API key: mapping against Saleshandy's "
    r"system field labels only \(set SALESHANDY_API_KEY",
    re.MULTILINE,
)

# command, the path a fault is injected on (its retry line is the proof), the key's
# source ("env", "flag" or none), what else the loud run says on stderr.
QUIET_CASES = {
    "import": (
        ["import", "{src}", "--step", "StepA1", "--force"],
        "/v1/sequences/prospects",
        "env",
        [],
    ),
    "import-dry-run-key": (["import", "{src}", "--dry-run"], "/v1/fields", "env", []),
    "import-dry-run-key-flag": (
        ["import", "{src}", "--dry-run"],
        "/v1/fields",
        "flag",
        ["`ps`"],
    ),
    "import-dry-run-no-key": (["import", "{src}", "--dry-run"], None, None, [NO_KEY_NOTICE]),
    "status": (["status", "{rid}", "--wait"], "/v1/prospects/import-status", "env", []),
    "preview": (["preview", "{src}"], "/v1/fields", "env", []),
    "preview-no-key": (
        ["preview", "{src}"],
        None,
        None,
        ["shandy: warning: no API key: mapping against Saleshandy's system field labels only"],
    ),
    "sequences": (["sequences"], "/v1/sequences", "env", []),
    "fields": (["fields", "--json"], "/v1/fields", "flag", ["`ps`"]),
    "runs": (["runs"], None, None, []),
}


@pytest.mark.parametrize("case", QUIET_CASES)
def test_quiet_is_silent_on_every_path(sandbox: Sandbox, tmp_path: Path, case: str) -> None:
    """-q: nothing on stderr (no progress, notice, retry line or warning), whatever the
    command and however it gets its client; the same run without -q says them all."""
    args, fault_path, key, said = QUIET_CASES[case]
    world_readable_dotenv(tmp_path)
    src = write_leads(tmp_path / "l.csv", 3)
    env = {"SALESHANDY_BASE_URL": sandbox.url}
    flags: list[str] = []
    if key == "env":
        env["SALESHANDY_API_KEY"] = SECRET
    elif key == "flag":
        flags = ["--api-key", SECRET]
    rid = ""
    if "{rid}" in args:
        first = shandy(
            "import",
            str(src),
            "--step",
            "StepA1",
            "--no-wait",
            "--json",
            tmp_path=tmp_path,
            env=at(sandbox),
        )
        rid = json.loads(first.stdout)["chunks"][0]["request_id"]
    argv = (
        [a.format(src=src, rid=rid) for a in args]
        + flags
        + ["--poll-interval", "0.05"] * (args[0] in ("import", "status"))
    )
    runs = {}
    for quiet in (False, True):
        if fault_path:
            sandbox.set_faults(["502"], match=fault_path)
        faulted = sum(r["fault"] == "502" for r in sandbox.requests())
        runs[quiet] = shandy(*(["-q"] if quiet else []), *argv, tmp_path=tmp_path, env=env)
        no_traceback(runs[quiet])
        # the fault was met (and retried), in the quiet run too
        assert sum(r["fault"] == "502" for r in sandbox.requests()) == faulted + bool(fault_path)
    loud, quiet_run = runs[False], runs[True]
    assert loud.returncode == quiet_run.returncode == 0, loud.stderr + quiet_run.stderr
    assert DOTENV_WARNING in loud.stderr.splitlines()
    assert bool(RETRY.search(loud.stderr)) == bool(fault_path), loud.stderr
    for words in said:
        found = words.search(loud.stderr) if isinstance(words, re.Pattern) else words in loud.stderr
        assert found, (words, loud.stderr)
    assert quiet_run.stderr == ""
    assert SECRET not in loud.stdout + loud.stderr + quiet_run.stdout
    if case != "import":  # the same document either way (a real import's run id differs)
        assert quiet_run.stdout == loud.stdout


def test_quiet_import_with_retries_prints_only_the_document(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    src = write_leads(tmp_path / "l.csv", 3, bad=1)
    sandbox.set_faults(["502"], match="/v1/sequences/prospects")
    result = shandy(
        "-q",
        "import",
        str(src),
        "--step",
        "StepA1",
        "--json",
        "--poll-interval",
        "0.05",
        tmp_path=tmp_path,
        env=at(sandbox),
    )
    assert result.returncode == 1, result.stderr
    assert result.stderr == ""  # no progress, no retry line, no warning
    assert json.loads(result.stdout)["rows_rejected"] == 1


def test_stderr_lines_off_a_terminal(sandbox: Sandbox, tmp_path: Path) -> None:
    """What cron mail shows: retries and warnings as ``shandy: ...`` lines, progress and a
    run's info notices timestamped, every library record once."""
    world_readable_dotenv(tmp_path)
    (tmp_path / "u.csv").write_text("Email,Foo\na@example.com,x\n")
    sandbox.set_faults(["502"], match="/v1/fields")
    result = shandy(
        "import",
        "u.csv",
        "--step",
        "StepA1",
        "--on-unknown-column",
        "ignore",
        "--poll-interval",
        "0.05",
        tmp_path=tmp_path,
        env=at(sandbox),
    )
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    assert lines[0] == DOTENV_WARNING
    assert RETRY.fullmatch(lines[1]) and lines[1].startswith("shandy: GET /v1/fields"), lines[1]
    assert lines[2] == "shandy: warning: u.csv: ignoring column(s) 'Foo'"
    stamped = [
        line for line in lines[3:] if re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d shandy: ", line)
    ]
    assert stamped == lines[3:] and len(stamped) == 7, lines  # reading ... reporting
    assert [line.split(" ", 2)[2] for line in stamped][:2] == [
        "reading",
        "read u.csv: 1 rows of 26 bytes",
    ]
    assert "\x1b[" not in result.stderr
