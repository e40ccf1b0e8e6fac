"""Named jobs (``shandy run JOB``, ``shandy jobs``): a ``shandy.toml`` over real files,
run through the CLI against the sandbox over real HTTP, compared with the ``shandy import``
line it stands for; every bad job stops with exit 2 before any request."""

from __future__ import annotations

import fnmatch
import json
import os
import re
import tempfile
import time
from pathlib import Path
from typing import Any

import openpyxl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from incli import run_cli

from shandy_cli import InputError, SaleshandyClient, load_jobs, run_job
from shandy_cli.jobs import JOB_KEYS, expand_files
from shandy_cli.journal import Journal
from shandy_cli.sandbox import Sandbox
from tests.test_import import HEADER, leads, posts, write_csv

# What differs between two equal runs: ids, times, and paths under each run's own dirs.
VOLATILE = {"run_id", "request_id", "report_url", "report_file"}


def cli_env(sandbox: Sandbox, state: Path, **more: str) -> dict[str, str]:
    return {
        "SALESHANDY_API_KEY": "test-key",
        "SALESHANDY_BASE_URL": sandbox.url,
        "SHANDY_STATE_DIR": str(state),
        **more,
    }


def stable(doc: Any, folder: Path) -> Any:
    """A ``--json`` document without what two equal runs cannot share, its paths
    relative to ``folder`` (a job's are absolute, the import line's as typed)."""
    if isinstance(doc, dict):
        return {k: stable(v, folder) for k, v in doc.items() if k not in VOLATILE}
    if isinstance(doc, list):
        return [stable(v, folder) for v in doc]
    if isinstance(doc, str):
        return doc.replace(f"{folder}{os.sep}", "")
    return doc


def prospects(sandbox: Sandbox) -> list[dict[str, Any]]:
    """Every prospect the sandbox holds, without its id, in address order."""
    found: list[dict[str, Any]] = []
    with SaleshandyClient(sandbox.url, "test-key") as client:
        page = 1
        while batch := client.list_prospects(page=page):
            found += [{k: v for k, v in p.items() if k != "id"} for p in batch]
            page += 1
    return sorted(found, key=lambda p: p["email"])


def one_error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.startswith("shandy: error:")]
    assert len(lines) == 1, stderr
    return lines[0]


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A job folder: two exports, a mapping file, a suppression list."""
    root = tmp_path / "leads"
    (root / "exports").mkdir(parents=True)
    header = ["Given", "Surname", "Mail", "Org", "Score", "Notes"]
    rows = [[f"F{i}", f"L{i}", f"p{i}@example.com", f"Co{i}", str(i), "x"] for i in range(6)]
    rows.append(["Bad", "Row", "not-an-email", "Co", "1", "x"])  # rejected here
    write_csv(root / "exports" / "a.csv", header, rows[:4])
    write_csv(root / "exports" / "b.csv", header, rows[4:])
    (root / "crm.toml").write_text('[columns]\nGiven = "First Name"\nSurname = "Last Name"\n')
    (root / "dnc.txt").write_text("p1@example.com\n")
    return root


EVERY_OPTION = """\
[defaults]
tags = ["from-defaults"]
step = "StepE1"          # dropped: the job names a sequence

[jobs.nightly]
files = ["exports/*.csv", "exports/a.csv"]   # a glob and a repeat
sequence = "Outbound Q4"
step-number = 2                              # the flag's spelling works too
mapping = "crm.toml"
map = { Mail = "Email", Org = "Company", Score = "Deal Size" }
set = { "Lead Source" = "CRM", "State" = 7 }
tags = ["nightly", "crm"]
conflict = "overwrite"
verify = true
on_unknown_column = "ignore"
only_changed = true
update_existing = true
suppress = ["dnc.txt"]
profile = "acme"
timeout = 30
wait = true
max_rows = 2
max_bytes = 50000
rejects = "out/nightly.rejects.csv"
report_dir = "reports"
encoding = "utf-8"
delimiter = ","
notify = ["NOTIFY_URL"]
notify_on = "failure"
force = false
dry_run = false
"""

EQUIVALENT_LINE = [
    *("import", "exports/a.csv", "exports/b.csv", "--sequence", "Outbound Q4"),
    *("--step-number", "2", "--mapping", "crm.toml", "--map", "Mail=Email"),
    *("--map", "Org=Company", "--map", "Score=Deal Size", "--set", "Lead Source=CRM"),
    *("--set", "State=7", "--tag", "nightly", "--tag", "crm", "--conflict", "overwrite"),
    *("--verify", "--on-unknown-column", "ignore", "--only-changed", "--update-existing"),
    *("--suppress", "dnc.txt", "--profile", "acme", "--timeout", "30", "--wait"),
    *("--max-rows", "2", "--max-bytes", "50000", "--rejects", "out/nightly.rejects.csv"),
    *("--report-dir", "reports", "--encoding", "utf-8", "--delimiter", ","),
    *("--notify", "NOTIFY_URL", "--notify-on", "failure"),
]


def test_a_job_with_every_kind_of_option_lands_as_its_import_line_does(
    sandbox_factory: Any, project: Path, tmp_path: Path, recorder: Any
) -> None:
    hook = f"{recorder[1]}/hook"  # a live receiver: both runs tell it the same (exit 1)
    (project / "shandy.toml").write_text(EVERY_OPTION.replace("NOTIFY_URL", hook))
    by_job = sandbox_factory(state_dir=tmp_path / "sb-job")
    by_line = sandbox_factory(state_dir=tmp_path / "sb-line")
    elsewhere = tmp_path / "cron-home"  # cron runs from $HOME: paths are the toml's
    elsewhere.mkdir()
    job_env = cli_env(by_job, tmp_path / "state-job", SHANDY_CONFIG=str(project / "shandy.toml"))
    ran = run_cli("run", "nightly", "--json", "--poll-interval", "0.05", cwd=elsewhere, env=job_env)
    line_env = cli_env(by_line, tmp_path / "state-line")
    equivalent = [hook if a == "NOTIFY_URL" else a for a in EQUIVALENT_LINE]
    line = run_cli(*equivalent, "--json", "--poll-interval", "0.05", cwd=project, env=line_env)

    assert ran.returncode == line.returncode == 1, (ran, line)  # the bad address is rejected
    job_doc, line_doc = json.loads(ran.stdout), json.loads(line.stdout)
    assert job_doc["files"] == [str(project / "exports" / n) for n in ("a.csv", "b.csv")]
    assert stable(job_doc, project) == stable(line_doc, project)
    assert job_doc["step_id"] == "StepA2" and len(job_doc["chunks"]) == 3  # 5 rows, 2 a chunk
    assert job_doc["rows_skipped"] == 1  # suppressed
    assert job_doc["rejects_file"] == str((project / "out" / "nightly.rejects.csv").resolve())
    landed = prospects(by_job)
    assert landed == prospects(by_line) and len(landed) == 5
    first = next(p for p in landed if p["email"] == "p0@example.com")
    attributes = {a["key"]: a["value"] for a in first["attributes"]}
    assert attributes["First Name"] == "F0" and attributes["Company"] == "Co0"
    assert attributes["Lead Source"] == "CRM" and attributes["State"] == "7"
    assert attributes["Deal Size"] == "0" and "Notes" not in attributes
    assert sorted(first["tags"]) == ["crm", "nightly"]  # the job's tags replace the defaults'
    with Journal(tmp_path / "state-job") as journal:
        assert journal.runs(1)[0].options["profile"] == "acme"


def test_flags_on_the_line_win_over_the_job(
    sandbox: Sandbox, project: Path, tmp_path: Path
) -> None:
    (project / "shandy.toml").write_text(
        '[jobs.nightly]\nfiles = ["exports/a.csv"]\nstep = "StepA1"\ntags = ["job"]\n'
        'map = { Mail = "Email", Org = "Company" }\non_unknown_column = "ignore"\n'
        'only_new = true\nset = { "Lead Source" = "job" }\n'
    )
    env = cli_env(sandbox, tmp_path / "state")
    args = ("run", "nightly", "--json", "--poll-interval", "0.05", "--timeout", "30")
    more = ("--sequence", "Outbound Q4 EMEA", "--tag", "line", "--only-changed")
    ran = run_cli(
        *args, *more, "--set", "Lead Source=line", "--map", "Org=Job Title", cwd=project, env=env
    )
    assert ran.returncode == 0, ran
    doc = json.loads(ran.stdout)
    assert (
        doc["step_id"] == "StepE1"
    )  # --sequence dropped the job's step, --only-changed its only_new
    landed = prospects(sandbox)
    assert {tuple(p["tags"]) for p in landed} == {("line",)}
    attributes = {a["key"]: a["value"] for a in landed[0]["attributes"]}
    assert attributes["Lead Source"] == "line" and attributes["Job Title"] == "Co0"
    assert "Company" not in attributes  # --map wins per column; Mail=Email stays the job's


def test_the_profile_line_over_job_over_environment(sandbox: Sandbox, tmp_path: Path) -> None:
    """--profile wins over the job's ``profile``, which wins over SHANDY_PROFILE (a job
    that names its account keeps it whatever the shell exports); the journal says which."""
    write_csv(tmp_path / "a.csv", HEADER, leads(1))
    (tmp_path / "shandy.toml").write_text(
        '[jobs.acme]\nfiles = ["a.csv"]\nprofile = "acme"\n[jobs.any]\nfiles = ["a.csv"]\n'
    )
    state = tmp_path / "state"
    env = cli_env(sandbox, state, SHANDY_PROFILE="from-env")
    seen = []
    for args in (["acme"], ["acme", "--profile", "line"], ["any"]):
        ran = run_cli("run", *args, "--force", "--poll-interval", "0.05", cwd=tmp_path, env=env)
        assert ran.returncode == 0, ran
        with Journal(state) as journal:
            seen.append(journal.runs(1)[0].options["profile"])
    assert seen == ["acme", "line", "from-env"]


def test_a_workbook_job_reads_its_sheet(sandbox: Sandbox, tmp_path: Path) -> None:
    book = openpyxl.Workbook()
    book.active.title = "Other"
    book.active.append(["Nothing"])
    leads_sheet = book.create_sheet("Leads")
    leads_sheet.append(HEADER)
    for row in leads(3):
        leads_sheet.append(row)
    book.save(tmp_path / "crm.xlsx")
    (tmp_path / "shandy.toml").write_text(
        '[jobs.x]\nfiles = ["*.xlsx"]\nsheet = "Leads"\nstep = "StepA1"\n'
    )
    ran = run_cli(
        "run",
        "x",
        "--json",
        "--poll-interval",
        "0.05",
        cwd=tmp_path,
        env=cli_env(sandbox, tmp_path / "state"),
    )
    assert ran.returncode == 0, ran
    assert json.loads(ran.stdout)["rows_submitted"] == 3


def test_dry_run_on_the_line_sends_nothing(sandbox: Sandbox, project: Path, tmp_path: Path) -> None:
    (project / "shandy.toml").write_text(
        '[jobs.n]\nfiles = ["exports/*.csv"]\nstep = "StepA1"\non_unknown_column = "ignore"\n'
        'map = { Mail = "Email" }\n'
    )
    ran = run_cli("run", "n", "--dry-run", "--json", cwd=project, env=cli_env(sandbox, tmp_path))
    assert ran.returncode == 1, ran  # the one bad address would be rejected
    doc = json.loads(ran.stdout)
    assert doc["dry_run"] is True and doc["rows_read"] == 7
    assert posts(sandbox) == []


def test_globs_sort_deduplicate_and_skip_shandys_own_outputs(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    root = tmp_path / "p"
    (root / "in" / "sub").mkdir(parents=True)
    for name, start in (("b.csv", 0), ("a.csv", 3), ("sub/c.csv", 6)):
        write_csv(root / "in" / name, HEADER, leads(start + 3, start))
    (root / "shandy.toml").write_text(
        '[jobs.n]\nfiles = ["in/**/*.csv", "in/b.csv", "in/*.csv"]\nstep = "StepA1"\n'
    )
    env = cli_env(sandbox, tmp_path / "state")
    listed = run_cli("jobs", "--json", cwd=root, env=env)
    assert listed.returncode == 0, listed
    files = json.loads(listed.stdout)["jobs"][0]["files"]
    assert files == [str(root / "in" / n) for n in ("a.csv", "b.csv", "sub/c.csv")]
    ran = run_cli("run", "n", "--poll-interval", "0.05", cwd=root, env=env)
    assert ran.returncode == 0, ran
    # Night one left its rejects and failures files beside the export: night two's glob
    # must not take them as input (the import would refuse to overwrite them, exit 2).
    (root / "in" / "a.rejects.csv").write_text("Email,_reason\nx,y\n")
    (root / "in" / "a.failures.csv").write_text("Email,_reason\nx,y\n")
    again = run_cli("jobs", "--json", cwd=root, env=env)
    assert json.loads(again.stdout)["jobs"][0]["files"] == files


def test_defaults_are_merged_under_every_job(tmp_path: Path) -> None:
    write_csv(tmp_path / "a.csv", HEADER, leads(2))
    (tmp_path / "shandy.toml").write_text(
        '[defaults]\nfiles = ["a.csv"]\nstep = "StepA1"\ntags = ["all"]\ntimeout = 60\n'
        "only_new = true\n\n"
        "[jobs.plain]\n\n"
        '[jobs.other]\nsequence = "Outbound Q4"\ntags = ["mine"]\nonly_changed = true\n'
    )
    jobs = load_jobs(tmp_path / "shandy.toml")
    plain, other = jobs.job("plain"), jobs.job("other")
    assert (plain.options.step_id, plain.options.tags, plain.options.timeout) == (
        "StepA1",
        ("all",),
        60.0,
    )
    assert plain.options.only_new and not plain.options.only_changed
    assert (other.options.step_id, other.options.sequence) == (None, "Outbound Q4")
    assert other.options.tags == ("mine",) and other.options.timeout == 60.0
    assert other.options.only_changed and not other.options.only_new
    assert plain.files == other.files == (str(tmp_path / "a.csv"),)


# -- every bad job: exit 2, one line naming the file, the job and the key, nothing sent --

BAD_JOBS = [
    ('conflit = "overwrite"', ["'conflit'", "did you mean 'conflict'"]),
    ('timeout = "soon"', ["'timeout'", "number of seconds", "'soon'"]),
    ("timeout = -5", ["'timeout'", "zero or more"]),
    ("timeout = inf", ["'timeout'", "finite"]),
    ('conflict = "clobber"', ["conflict must be one of", "'clobber'"]),
    ('on_unknown_column = "drop"', ["on_unknown_column must be one of"]),
    ('notify_on = "never"', ["notify_on must be one of"]),
    ("tags = [1, 2]", ["'tags'", "non-empty string"]),
    ('tags = [" "]', ["'tags'", "non-empty string"]),
    ("verify = 1", ["'verify'", "true or false"]),
    ("max_rows = 100001", ["max_rows must be between 1 and 100000"]),
    ("max_rows = 0", ["'max_rows'", "1 or more"]),
    ("max_bytes = 1.5", ["'max_bytes'", "whole number"]),
    ("step_number = 0", ["'step_number'", "1 or more"]),
    ('sequence = "Outbound Q4"', ["'step' or 'sequence', not both"]),
    ("only_new = true\nonly_changed = true", ["give only_new or only_changed, not both"]),
    ("update_existing = true\nwait = false", ["update_existing", "no_wait"]),
    ('mapping = "nope.toml"', ["'mapping'", "nope.toml: no such file"]),
    ('mapping = "exports"', ["'mapping'", "is a directory"]),
    ('suppress = ["dnc.txt", "gone.txt"]', ["'suppress'", "gone.txt: no such file"]),
    ("map = { Mail = 3 }", ["'map'", "'Mail' must map to a field label"]),
    ('set = { "Lead Source" = true }', ["'set'", "a string, a number or a date"]),
    ('set = { "Lead Source" = nan }', ["'set'", "finite"]),
    ('set = "Lead Source=x"', ["'set'", "must be a table"]),
    ('set = { " " = "x" }', ["'set'", "blank field label"]),
    ('map = { "" = "Email" }', ["'map'", "blank column name"]),
    ('encoding = "klingon-8"', ["'encoding'", "unknown encoding 'klingon-8'"]),
    ('delimiter = "ab"', ["'delimiter'", "delimiter must be one character"]),
    ('rejects = "exports"', ["'rejects'", "is a directory"]),
    ('report_dir = "dnc.txt"', ["'report_dir'", "is a file"]),
    ('profile = ""', ["'profile'", "non-empty string"]),
    ("only-new = true\nonly_new = false", ["'only_new' is given twice"]),
    ("nonsense = 1", ["'nonsense'", "valid keys: files, profile, step"]),
]


@pytest.mark.parametrize(("extra", "words"), BAD_JOBS, ids=[b[0][:24] for b in BAD_JOBS])
def test_a_bad_job_stops_before_anything_is_sent(
    sandbox: Sandbox, project: Path, tmp_path: Path, extra: str, words: list[str]
) -> None:
    (project / "shandy.toml").write_text(
        f'[jobs.nightly]\nfiles = ["exports/*.csv"]\nstep = "StepA1"\n{extra}\n'
    )
    env = cli_env(sandbox, tmp_path / "state")
    for command in (["run", "nightly"], ["jobs"], ["run", "nightly", "--dry-run"]):
        ran = run_cli(*command, cwd=project, env=env)
        assert ran.returncode == 2, (command, ran)
        line = one_error_line(ran.stderr)
        assert str(project / "shandy.toml") in line and "job 'nightly'" in line, line
        for word in words:
            assert word in line, (word, line)
        assert "Traceback" not in ran.stderr
    assert sandbox.requests() == []  # not even a GET: the job is checked before the API


BAD_FILES = [
    ('files = ["exports/*.tsv"]', ["'files'", "'exports/*.tsv' matches no file"]),
    ('files = ["exports/*.csv", "missing/*.csv"]', ["'missing/*.csv' matches no file"]),
    ('files = ["exports/zz.csv"]', ["'files'", "zz.csv: no such file"]),
    ('files = ["exports"]', ["'files'", "is a directory, not a file"]),
    ('files = ["*"]', ["'files'"]),  # only directories and the toml? the toml is a file
    ("files = []", ["'files'", "is empty"]),
    ("files = 3", ["'files'", "list of strings"]),
    ("", ["'files'", "is missing"]),
]


@pytest.mark.parametrize(("files", "words"), BAD_FILES, ids=[b[0][:24] for b in BAD_FILES])
def test_files_that_match_nothing_stop_the_job(
    sandbox: Sandbox, project: Path, tmp_path: Path, files: str, words: list[str]
) -> None:
    if files == 'files = ["*"]':  # the folder holds only directories once the toml is aside
        (project / "crm.toml").unlink()
        (project / "dnc.txt").unlink()
        config = tmp_path / "jobs.toml"
        files = 'files = ["' + str(project) + '/*"]'
    else:
        config = project / "shandy.toml"
    config.write_text(f'[jobs.nightly]\n{files}\nstep = "StepA1"\n')
    ran = run_cli(
        "run",
        "nightly",
        "--config",
        str(config),
        cwd=project,
        env=cli_env(sandbox, tmp_path / "state"),
    )
    assert ran.returncode == 2, ran
    line = one_error_line(ran.stderr)
    assert "job 'nightly'" in line and all(w in line for w in words), line
    assert sandbox.requests() == []


def test_an_unknown_job_lists_the_jobs(sandbox: Sandbox, project: Path, tmp_path: Path) -> None:
    (project / "shandy.toml").write_text(
        '[jobs.nightly]\nfiles = ["exports/a.csv"]\n[jobs.weekly]\nfiles = ["exports/b.csv"]\n'
    )
    ran = run_cli("run", "nigthly", "--json", cwd=project, env=cli_env(sandbox, tmp_path))
    assert ran.returncode == 2
    line = one_error_line(ran.stderr)
    assert "no job 'nigthly' (did you mean 'nightly'?)" in line
    assert "the jobs are: 'nightly', 'weekly'" in line
    assert json.loads(ran.stdout)["error"]  # --json: one document on every exit
    assert sandbox.requests() == []


@pytest.mark.parametrize(
    ("content", "words"),
    [
        ('[jobs.nightly]\nfiles = ["a.csv"\nstep = "x"\n', ["not valid TOML", "line 3"]),
        (b'[jobs.n]\nfiles = ["\xff.csv"]\n', ["not UTF-8"]),
        ('[jobs.n]\nfiles = ["a.csv"]\n[job.typo]\n', ["unknown table 'job'", "'jobs'"]),
        ('jobs = ["nightly"]\n', ["'jobs' must be a table"]),
        ('[jobs]\nnightly = "a.csv"\n', ["job 'nightly' must be a [jobs.NAME] table"]),
        ("defaults = 3\n", ["'defaults' must be a table"]),
        ('[jobs.n]\nfiles = ["a.csv"]\n[defaults]\nstpe = "x"\n', ["[defaults]", "'stpe'"]),
    ],
)
def test_a_damaged_jobs_file_is_one_line_with_where(
    sandbox: Sandbox, tmp_path: Path, content: str | bytes, words: list[str]
) -> None:
    config = tmp_path / "shandy.toml"
    if isinstance(content, bytes):
        config.write_bytes(content)
    else:
        config.write_text(content)
    write_csv(tmp_path / "a.csv", HEADER, leads(1))
    for command in (["run", "n"], ["jobs"]):
        ran = run_cli(*command, cwd=tmp_path, env=cli_env(sandbox, tmp_path / "state"))
        assert ran.returncode == 2, ran
        line = one_error_line(ran.stderr)
        assert str(config) in line and all(w in line for w in words), line
    assert sandbox.requests() == []


def test_a_missing_or_directory_jobs_file(tmp_path: Path) -> None:
    ran = run_cli("jobs", cwd=tmp_path, env={"SHANDY_STATE_DIR": str(tmp_path / "s")})
    assert ran.returncode == 2
    assert "shandy.toml: no such jobs file (give --config FILE or SHANDY_CONFIG" in ran.stderr
    (tmp_path / "dir.toml").mkdir()
    ran = run_cli("run", "x", "--config", "dir.toml", cwd=tmp_path, env={})
    assert ran.returncode == 2 and "dir.toml: is a directory" in one_error_line(ran.stderr)


# -- shandy jobs, --config, SHANDY_CONFIG ----------------------------------------------------


def test_jobs_lists_every_job_with_target_files_and_options(project: Path, tmp_path: Path) -> None:
    (project / "shandy.toml").write_text(EVERY_OPTION.replace("NOTIFY_URL", "https://h.example/x"))
    env = {"SHANDY_STATE_DIR": str(tmp_path / "state")}
    ran = run_cli("jobs", "--json", cwd=project, env=env)
    assert ran.returncode == 0, ran
    doc = json.loads(ran.stdout)
    assert doc["config"] == str(project / "shandy.toml")
    (job,) = doc["jobs"]
    assert job["name"] == "nightly" and job["target"] == "sequence 'Outbound Q4', step 2"
    assert job["profile"] == "acme" and len(job["files"]) == 2
    assert job["options"]["mapping"] == str(project / "crm.toml")
    assert job["options"]["set"] == {"Lead Source": "CRM", "State": "7"}
    assert "step" not in job["options"]  # the defaults' step gave way to the sequence
    text = run_cli("jobs", cwd=project, env=env)  # off a terminal: tab-separated lines
    assert text.returncode == 0
    header, row = text.stdout.splitlines()
    assert header.split("\t") == ["job", "target", "files", "profile", "options"]
    assert row.split("\t")[:2] == ["nightly", "sequence 'Outbound Q4', step 2"]
    assert "conflict=overwrite" in row


def test_an_empty_jobs_file_lists_nothing(tmp_path: Path) -> None:
    (tmp_path / "shandy.toml").write_text("# no jobs yet\n")
    ran = run_cli("jobs", cwd=tmp_path, env={})
    assert ran.returncode == 0 and ran.stdout == "" and "no jobs in" in ran.stderr
    assert json.loads(run_cli("jobs", "--json", cwd=tmp_path, env={}).stdout)["jobs"] == []


def test_config_flag_environment_and_dotenv_pick_the_jobs_file(tmp_path: Path) -> None:
    def jobs_file(folder: str, job: str) -> Path:
        (tmp_path / folder).mkdir()
        write_csv(tmp_path / folder / "a.csv", HEADER, leads(1))
        path = tmp_path / folder / "jobs.toml"
        path.write_text(f'[jobs.{job}]\nfiles = ["a.csv"]\n')
        return path

    by_flag, by_env, by_dotenv = (
        jobs_file(f, j) for f, j in (("f", "j1"), ("e", "j2"), ("d", "j3"))
    )
    here = tmp_path / "here"
    here.mkdir()
    (here / ".env").write_text(f"SHANDY_CONFIG={by_dotenv}\n")
    os.chmod(here / ".env", 0o600)

    def names(*args: str, **env: str) -> list[str]:
        ran = run_cli("jobs", "--json", *args, cwd=here, env=env)
        assert ran.returncode == 0, ran
        return [j["name"] for j in json.loads(ran.stdout)["jobs"]]

    assert names() == ["j3"]
    assert names(SHANDY_CONFIG=str(by_env)) == ["j2"]
    assert names("--config", str(by_flag), SHANDY_CONFIG=str(by_env)) == ["j1"]


# -- hostile names and values -----------------------------------------------------------------


def test_a_job_name_with_spaces_runs(sandbox: Sandbox, tmp_path: Path) -> None:
    write_csv(tmp_path / "a.csv", HEADER, leads(2))
    (tmp_path / "shandy.toml").write_text('[jobs."night ly"]\nfiles = ["a.csv"]\nstep = "StepA1"\n')
    env = cli_env(sandbox, tmp_path / "state")
    ran = run_cli("run", "night ly", "--poll-interval", "0.05", cwd=tmp_path, env=env)
    assert ran.returncode == 0, ran
    assert len(posts(sandbox)) == 1


@pytest.mark.parametrize("name", ["night\nly", "x\x1b[31mred", "\t", "a\rb"])
def test_a_job_name_with_control_characters_is_refused_escaped(
    sandbox: Sandbox, tmp_path: Path, name: str
) -> None:
    key = json.dumps(name)  # a TOML basic string: the same escapes
    (tmp_path / "shandy.toml").write_text(f'[jobs.{key}]\nfiles = ["a.csv"]\n')
    ran = run_cli("run", name, cwd=tmp_path, env=cli_env(sandbox, tmp_path / "s"))
    assert ran.returncode == 2
    line = one_error_line(ran.stderr)
    assert "must be printable" in line and "\x1b" not in ran.stderr and "\r" not in ran.stderr
    assert len(ran.stderr.strip().splitlines()) == 1
    assert sandbox.requests() == []


def test_paths_are_the_toml_folders_even_when_they_climb_out(tmp_path: Path) -> None:
    """``../../etc/*`` is the jobs file's ``../../etc``, not the working directory's (a
    jobs file is its author's: it may name any file they can read, as a cron line may)."""
    config_dir = tmp_path / "a" / "b"
    config_dir.mkdir(parents=True)
    (tmp_path / "etc").mkdir()
    write_csv(tmp_path / "etc" / "leads.csv", HEADER, leads(1))
    (config_dir / "shandy.toml").write_text('[jobs.n]\nfiles = ["../../etc/*"]\n')
    job = load_jobs(config_dir / "shandy.toml").job("n")
    assert [os.path.realpath(f) for f in job.files] == [str(tmp_path / "etc" / "leads.csv")]
    (config_dir / "shandy.toml").write_text('[jobs.n]\nfiles = ["../../nowhere/*"]\n')
    with pytest.raises(InputError, match="matches no file"):
        load_jobs(config_dir / "shandy.toml").job("n")


def test_a_glob_in_a_folder_whose_name_has_glob_characters(tmp_path: Path) -> None:
    odd = tmp_path / "exports [2026]*?"
    odd.mkdir()
    write_csv(odd / "a.csv", HEADER, leads(1))
    (odd / "shandy.toml").write_text('[jobs.n]\nfiles = ["*.csv"]\n')
    assert load_jobs(odd / "shandy.toml").job("n").files == (str(odd / "a.csv"),)


# -- the library --------------------------------------------------------------------------


def test_run_job_is_the_library_call(sandbox: Sandbox, tmp_path: Path) -> None:
    write_csv(tmp_path / "a.csv", HEADER, leads(3))
    config = tmp_path / "shandy.toml"
    config.write_text('[jobs.n]\nfiles = ["a.csv"]\nstep = "StepA1"\ntags = ["lib"]\n')
    with SaleshandyClient(sandbox.url, "test-key") as client:
        result = run_job(
            "n",
            config=config,
            overrides={"poll_interval": 0.05, "timeout": 30.0},
            client=client,
            state_dir=tmp_path / "state",
        )
    assert result.exit_code == 0 and result.rows_submitted == 3
    assert {tuple(p["tags"]) for p in prospects(sandbox)} == {("lib",)}


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=20).filter(
        lambda k: k.replace("-", "_") not in JOB_KEYS
    )
)
def test_any_unknown_key_is_an_input_error_naming_it(tmp_path: Path, key: str) -> None:
    config = tmp_path / "shandy.toml"
    config.write_text(f'[jobs.n]\nfiles = ["x"]\n{json.dumps(key, ensure_ascii=False)} = 1\n')
    if key.replace("-", "_") in ("tag", "step_id", "mapping_file"):  # aliases
        return
    with pytest.raises(InputError) as caught:
        load_jobs(config).job("n")
    assert repr(key.replace("-", "_")) in caught.value.message or repr(key) in caught.value.message


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    names=st.sets(st.sampled_from(["a.csv", "b.csv", "c.txt", "d.csv", "e.tsv"]), min_size=1),
    patterns=st.lists(st.sampled_from(["*.csv", "*.txt", "a.csv", "*", "?.tsv"]), min_size=1),
)
def test_expanded_files_are_matches_without_repeats(
    tmp_path: Path, names: set[str], patterns: list[str]
) -> None:
    folder = Path(tempfile.mkdtemp(dir=tmp_path))
    for name in names:
        (folder / name).write_text("Email\nx@example.com\n")
    from shandy_cli.jobs import _Ctx

    # What the rule says, worked out apart: each pattern's matches sorted, in pattern
    # order, the first sighting of a file kept; a pattern matching none is an error.
    per_pattern = [sorted(n for n in names if fnmatch.fnmatchcase(n, p)) for p in patterns]
    if not all(per_pattern):
        with pytest.raises(InputError, match=r"matches no file|no such file"):
            load_pattern_job(folder, patterns)
        return
    expected = list(dict.fromkeys(str(folder / n) for group in per_pattern for n in group))
    assert list(expand_files(patterns, _Ctx(folder))) == expected
    assert load_pattern_job(folder, patterns).files == tuple(expected)


def load_pattern_job(folder: Path, patterns: list[str]) -> Any:
    config = folder / ".jobs.toml"  # hidden: no "*" matches it
    config.write_text(f"[jobs.n]\nfiles = {json.dumps(patterns)}\n")
    return load_jobs(config).job("n")


def test_the_readme_job_is_a_valid_job(tmp_path: Path) -> None:
    """The README's example shandy.toml checks clean, and its error line is the real one."""
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    section = readme.split("### Named jobs", 1)[1].split("\n### ", 1)[0]
    example = re.search(r"```toml\n(.+?)```", section, re.S)
    assert example is not None
    (tmp_path / "exports").mkdir()
    write_csv(tmp_path / "exports" / "a.csv", HEADER, leads(1))
    (tmp_path / "crm.toml").write_text('[columns]\nMail = "Email"\n')
    (tmp_path / "dnc.txt").write_text("nobody@example.com\n")
    (tmp_path / "shandy.toml").write_text(example.group(1))
    ran = run_cli("jobs", "--json", cwd=tmp_path, env={})
    assert ran.returncode == 0, ran
    (job,) = json.loads(ran.stdout)["jobs"]
    assert job["name"] == "nightly" and job["profile"] == "acme"
    (tmp_path / "shandy.toml").write_text(example.group(1).replace("tags =", "conflit = 1\ntags ="))
    line = one_error_line(run_cli("jobs", cwd=tmp_path, env={}).stderr)
    said = re.search(r"shandy: error: /srv/leads/shandy.toml: (.+)", section)
    assert said is not None
    assert line == f"shandy: error: {tmp_path / 'shandy.toml'}: {said.group(1)}"


@pytest.mark.timeout(60)
def test_a_symlink_loop_under_a_double_star_glob_ends(tmp_path: Path) -> None:
    """Two links back up (``a/up -> ..``, ``a/up2 -> ../..``): glob.glob's ``**`` walks
    them until the kernel's symlink limit, 2**40 paths; the job's glob does not follow."""
    (tmp_path / "in" / "a").mkdir(parents=True)
    (tmp_path / "in" / "a" / "up").symlink_to("..")
    (tmp_path / "in" / "a" / "up2").symlink_to("../..")
    write_csv(tmp_path / "in" / "a" / "x.csv", HEADER, leads(1))
    (tmp_path / "shandy.toml").write_text('[jobs.n]\nfiles = ["in/**/*.csv"]\n')
    started = time.monotonic()
    job = load_jobs(tmp_path / "shandy.toml").job("n")
    assert job.files == (str(tmp_path / "in" / "a" / "x.csv"),)
    assert time.monotonic() - started < 5


def test_hidden_files_match_only_a_pattern_naming_them(tmp_path: Path) -> None:
    (tmp_path / "in" / ".old").mkdir(parents=True)
    for name in ("a.csv", ".b.csv", ".old/c.csv"):
        write_csv(tmp_path / "in" / name, HEADER, leads(1))
    (tmp_path / "shandy.toml").write_text(
        '[jobs.n]\nfiles = ["in/**/*.csv"]\n[jobs.h]\nfiles = ["in/.*.csv"]\n'
    )
    jobs = load_jobs(tmp_path / "shandy.toml")
    assert jobs.job("n").files == (str(tmp_path / "in" / "a.csv"),)
    assert jobs.job("h").files == (str(tmp_path / "in" / ".b.csv"),)


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (lambda p: p.write_text("[jobs.n]\nfiles = " + "[" * 5000 + "]" * 5000), "too deeply"),
        (lambda p: p.write_bytes(b"#" * 10_000_001), "larger than 10,000,000 bytes"),
    ],
    ids=["nested", "huge"],
)
def test_a_hostile_jobs_file_is_refused_in_one_line(tmp_path: Path, make: Any, words: str) -> None:
    make(tmp_path / "shandy.toml")
    ran = run_cli("jobs", cwd=tmp_path, env={})
    assert ran.returncode == 2 and words in one_error_line(ran.stderr), ran
    assert "Traceback" not in ran.stderr and "internal error" not in ran.stderr


def test_an_endless_config_is_read_only_to_the_cap(tmp_path: Path) -> None:
    started = time.monotonic()
    ran = run_cli("jobs", "--config", "/dev/zero", cwd=tmp_path, env={})
    assert ran.returncode == 2 and "larger than" in ran.stderr
    assert time.monotonic() - started < 10


def test_shandy_jobs_masks_webhook_urls(tmp_path: Path) -> None:
    """A Slack URL's path is its token: `shandy jobs` never shows it."""
    (tmp_path / "a.csv").write_text("Email\na@example.com\n")
    (tmp_path / "shandy.toml").write_text(
        '[jobs.n]\nfiles = ["a.csv"]\nstep = "S1"\n'
        'notify = ["https://hooks.slack.com/services/T0/B0/SECRETTOKEN42"]\n'
    )
    env = {"SHANDY_STATE_DIR": str(tmp_path / "s")}
    for args in (["jobs"], ["jobs", "--json"]):
        listed = run_cli(*args, cwd=tmp_path, env=env)
        assert listed.returncode == 0, listed.stderr
        assert "SECRETTOKEN42" not in listed.stdout + listed.stderr
        assert "hooks.slack.com" in listed.stdout


def _flags(name: str) -> set[str]:
    from shandy_cli.cli import load_command

    params = load_command(name).params
    return {opt for param in params for opt in param.opts if opt.startswith("--")}


def test_run_takes_every_flag_import_takes_and_a_job_every_key() -> None:
    """`shandy run` and a job are `shandy import` by another name: a flag added to import
    (as --member was) and not to them would be a file a job cannot read."""
    from shandy_cli.jobs import ALIASES

    ours = {"--config"}  # run's own; import's FILES argument is a job's `files`
    assert _flags("run") - ours == _flags("import")
    connection = {"--json", "--api-key", "--base-url", "--state-dir", "--sandbox", "--profile"}
    hidden = {"--poll-interval"}  # for tests, not for jobs
    keys = {ALIASES.get(f[2:].replace("-", "_"), f[2:].replace("-", "_"))
            for f in _flags("import") - connection - hidden}  # fmt: skip
    assert keys <= set(JOB_KEYS), keys - set(JOB_KEYS)
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    listed = re.search(r"A job's keys are .*?\n((?:.*\n){1,8}?)Relative paths", readme)
    assert listed is not None
    assert set(re.findall(r"`([a-z_]+)`", listed.group(1))) >= set(JOB_KEYS)


def test_a_job_reads_a_member_of_a_zip(sandbox: Sandbox, tmp_path: Path) -> None:
    """`member` in a job (and --member on the line) picks the lead file inside a .zip."""
    import zipfile

    with zipfile.ZipFile(tmp_path / "leads.zip", "w") as zf:
        zf.writestr("a.csv", "email,first_name\na@example.com,Ann\n")
        zf.writestr("b.csv", "email,first_name\nb@example.com,Bob\nc@example.com,Cy\n")
    (tmp_path / "shandy.toml").write_text(
        '[jobs.z]\nfiles = ["leads.zip"]\nstep = "StepA1"\nmember = "b.csv"\n', encoding="utf-8"
    )
    env = {"SALESHANDY_BASE_URL": sandbox.url, "SALESHANDY_API_KEY": "test-key"}
    ran = run_cli("run", "z", "--json", cwd=tmp_path, env=env)
    assert ran.returncode == 0, ran.stderr
    assert json.loads(ran.stdout)["rows_submitted"] == 2
    again = run_cli("run", "z", "--member", "a.csv", "--json", cwd=tmp_path, env=env)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["rows_submitted"] == 1
