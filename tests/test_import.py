"""The import pipeline end to end, through the library API, over real HTTP to the sandbox."""

from __future__ import annotations

import csv
import stat
from pathlib import Path

import pytest

from shandy_cli import ImportResult, SaleshandyClient, import_files
from shandy_cli.errors import ApiValidationError, InputError
from shandy_cli.sandbox import Sandbox

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def write_csv(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def leads(n: int, start: int = 0) -> list[list[str]]:
    return [[f"First{i}", f"Last{i}", f"person{i}@example.com", f"Co {i}"] for i in range(start, n)]


HEADER = ["First Name", "Last Name", "Email", "Company"]


def run(sandbox: Sandbox, tmp_path: Path, files: list[str], **options: object) -> ImportResult:
    options.setdefault("poll_interval", 0.05)
    options.setdefault("timeout", 30)
    with SaleshandyClient(sandbox.url, "test-key") as client:
        return import_files(files, client=client, state_dir=tmp_path / "state", **options)


def posts(sandbox: Sandbox) -> list[dict]:
    return [r for r in sandbox.requests() if r["method"] == "POST"]


def read_rows(path: str | Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def assert_accounted(result: ImportResult) -> None:
    assert result.rows_read == result.rows_submitted + result.rows_rejected + result.rows_skipped


def test_example_file_imports_and_accounts_for_every_row(sandbox: Sandbox, tmp_path: Path) -> None:
    rejects = tmp_path / "leads.rejects.csv"
    result = run(
        sandbox, tmp_path, [str(EXAMPLES / "leads.csv")], step_id="StepA1", rejects=rejects
    )
    assert result.completed
    assert_accounted(result)
    assert result.rows_read == 200
    assert result.rows_rejected == 8  # the example holds invalid and duplicate emails
    assert result.exit_code == 1
    rows = read_rows(rejects)
    assert len(rows) == result.rows_rejected
    assert all(r["_reason"] and r["_row"].isdigit() and r["_file"] for r in rows)
    assert stat.S_IMODE(rejects.stat().st_mode) == 0o600
    assert [c.state for c in result.chunks] == ["completed"]


def test_clean_file_exits_zero_and_lands(sandbox: Sandbox, tmp_path: Path) -> None:
    src = write_csv(tmp_path / "clean.csv", HEADER, leads(25))
    result = run(sandbox, tmp_path, [str(src)], step_id="StepA2", tags=["t1"])
    assert result.exit_code == 0, result
    assert result.rows_submitted == 25 and result.rejects_file is None
    assert result.failures_file is None
    with SaleshandyClient(sandbox.url, "test-key") as client:
        found = client.list_prospects(search="person7@example.com")
    emails = [p["email"] for p in found]
    assert "person7@example.com" in emails


def test_chunks_hold_limits_and_order(sandbox: Sandbox, tmp_path: Path) -> None:
    src = write_csv(tmp_path / "many.csv", HEADER, leads(50))
    result = run(sandbox, tmp_path, [str(src)], step_id="StepA1", max_rows=7)
    assert [c.rows for c in result.chunks] == [7] * 7 + [1]
    assert all(c.state == "completed" for c in result.chunks)
    assert len({c.request_id for c in result.chunks}) == 8
    assert len(posts(sandbox)) == 8
    assert result.exit_code == 0


def test_max_bytes_splits_by_size(sandbox: Sandbox, tmp_path: Path) -> None:
    src = write_csv(tmp_path / "many.csv", HEADER, leads(40))
    result = run(sandbox, tmp_path, [str(src)], step_id="StepA1", max_bytes=1000)
    assert [c.rows for c in result.chunks] == [9, 9, 9, 9, 4]
    assert all(c.bytes <= 1000 for c in result.chunks)
    assert sum(c.rows for c in result.chunks) == 40
    sent = [r["bytes"] for r in posts(sandbox)]
    assert sent == [c.bytes for c in result.chunks]  # our accounting is the bytes on the wire


def test_server_failures_join_back_to_source_rows(sandbox: Sandbox, tmp_path: Path) -> None:
    first = write_csv(tmp_path / "first.csv", HEADER, leads(5))
    assert run(sandbox, tmp_path, [str(first)], step_id="StepA1").exit_code == 0
    # The second file repeats two of those people: Saleshandy reports them as already in the
    # step, and under overwrite (their update did not happen) they are listed as failures.
    second = write_csv(
        tmp_path / "second.csv", ["Email", "Company"],
        [["person1@example.com", "Again"], ["new@example.com", "New"],
         ["PERSON3@example.com", "Again"]],
    )  # fmt: skip
    result = run(sandbox, tmp_path, [str(second)], step_id="StepA1", conflict="overwrite")
    assert result.completed and result.exit_code == 1
    assert result.rows_already_present == 2 and result.chunks[0].already_present_rows == 2
    assert result.rows_failed == 0 and result.chunks[0].failed_rows == 0
    assert result.failures_file is not None
    rows = read_rows(result.failures_file)
    assert sorted(r["_row"] for r in rows) == ["1", "3"]
    assert {r["Company"] for r in rows} == {"Again"}
    assert all(r["_reason"].startswith("Saleshandy:") for r in rows)
    assert all(r["_file"].endswith("second.csv") for r in rows)
    assert any("Saleshandy" in reason for reason, _ in result.reasons)


def test_failures_file_combines_local_rejects_and_server_failures(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    run(sandbox, tmp_path, [str(write_csv(tmp_path / "a.csv", HEADER, leads(3)))], step_id="StepA1")
    src = write_csv(
        tmp_path / "b.csv", HEADER,
        [["X", "Y", "not-an-email", "Z"], ["A", "B", "person0@example.com", "C"]],
    )  # fmt: skip
    result = run(sandbox, tmp_path, [str(src)], step_id="StepA1", conflict="addMissingFields")
    assert result.rows_rejected == 1 and result.rows_already_present == 1
    rows = read_rows(result.failures_file or "")
    assert [r["_row"] for r in rows] == ["1", "2"]
    assert "email" in rows[0]["_reason"].lower()


def test_prospect_list_without_step(sandbox: Sandbox, tmp_path: Path) -> None:
    src = write_csv(tmp_path / "list.csv", HEADER, leads(3))
    result = run(sandbox, tmp_path, [str(src)])
    assert result.exit_code == 0 and result.step_id is None
    assert [r["path"] for r in posts(sandbox)] == ["/v1/prospects/import-with-field-name"]


def test_sequence_name_resolves_to_first_step(sandbox: Sandbox, tmp_path: Path) -> None:
    src = write_csv(tmp_path / "s.csv", HEADER, leads(2))
    result = run(sandbox, tmp_path, [str(src)], sequence="webinar follow-up")
    assert result.step_id == "StepW1" and result.exit_code == 0
    result = run(sandbox, tmp_path, [str(src)], sequence="seqOutQ4", step_number=2)
    assert result.step_id == "StepA2"


def test_ambiguous_sequence_lists_candidates_and_sends_nothing(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    src = write_csv(tmp_path / "s.csv", HEADER, leads(2))
    with pytest.raises(InputError) as info:
        run(sandbox, tmp_path, [str(src)], sequence="Outbound")
    assert "seqOutQ4" in str(info.value) and "seqOutQ4E" in str(info.value)
    assert posts(sandbox) == []


def test_exact_title_beats_substring(sandbox: Sandbox, tmp_path: Path) -> None:
    src = write_csv(tmp_path / "s.csv", HEADER, leads(2))
    assert run(sandbox, tmp_path, [str(src)], sequence="Outbound Q4").step_id == "StepA1"


def test_unknown_step_is_a_validation_error_with_server_message(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    src = write_csv(tmp_path / "s.csv", HEADER, leads(2))
    with pytest.raises(ApiValidationError) as info:
        run(sandbox, tmp_path, [str(src)], step_id="NoSuchStep")
    assert info.value.exit_code == 2
    assert "NoSuchStep" in str(info.value)


def test_unknown_column_stops_before_sending(sandbox: Sandbox, tmp_path: Path) -> None:
    src = write_csv(tmp_path / "u.csv", [*HEADER, "Compnay Size"], [[*leads(1)[0], "10"]])
    with pytest.raises(InputError) as info:
        run(sandbox, tmp_path, [str(src)], step_id="StepA1")
    assert "Compnay Size" in str(info.value)
    assert posts(sandbox) == []


def test_unknown_column_ignore_and_create(sandbox: Sandbox, tmp_path: Path) -> None:
    src = write_csv(tmp_path / "u.csv", [*HEADER, "Favourite Colour"], [[*leads(1)[0], "teal"]])
    result = run(sandbox, tmp_path, [str(src)], step_id="StepA1", on_unknown_column="ignore")
    assert result.exit_code == 0 and any("Favourite Colour" in w for w in result.warnings)
    result = run(sandbox, tmp_path, [str(src)], step_id="StepA2", on_unknown_column="create")
    assert result.exit_code == 0
    with SaleshandyClient(sandbox.url, "k") as client:
        labels = {f["label"] for f in client.list_fields()}
    assert "Favourite Colour" in labels


def test_map_and_set(sandbox: Sandbox, tmp_path: Path) -> None:
    src = write_csv(tmp_path / "m.csv", ["Mail", "Org"], [["m1@example.com", "Acme"]])
    result = run(
        sandbox, tmp_path, [str(src)], step_id="StepA1",
        column_map={"Mail": "Email", "Org": "Company"}, constants={"Lead Source": "Webinar"},
    )  # fmt: skip
    assert result.exit_code == 0
    with SaleshandyClient(sandbox.url, "test-key") as client:
        found = client.list_prospects(search="m1@example.com")[0]
    attrs = {a["key"]: a["value"] for a in found["attributes"]}
    assert attrs["Lead Source"] == "Webinar" and attrs["Company"] == "Acme"


@pytest.mark.parametrize("content", ["", "First Name,Email\n"])
def test_empty_and_header_only_files_send_nothing_and_exit_zero(
    sandbox: Sandbox, tmp_path: Path, content: str
) -> None:
    src = tmp_path / "nightly.csv"
    src.write_text(content)
    result = run(sandbox, tmp_path, [str(src)], step_id="StepA1")
    assert result.exit_code == 0 and result.rows_read == 0 and result.chunks == []
    assert posts(sandbox) == []


def test_several_files_rows_numbered_per_file(sandbox: Sandbox, tmp_path: Path) -> None:
    a = write_csv(tmp_path / "a.csv", HEADER, [*leads(2), ["x", "y", "bad", "z"]])
    b = write_csv(tmp_path / "b.csv", ["Email"], [["bad2"], ["q@example.com"]])
    result = run(sandbox, tmp_path, [str(a), str(b)], step_id="StepA1")
    assert result.rows_read == 5 and result.rows_submitted == 3
    rows = read_rows(result.rejects_file or "")
    assert [(Path(r["_file"]).name, r["_row"]) for r in rows] == [("a.csv", "3"), ("b.csv", "1")]


def test_duplicate_emails_keep_first(sandbox: Sandbox, tmp_path: Path) -> None:
    rows = [["A", "B", "dup@example.com", "C"], ["D", "E", "DUP@Example.com", "F"]]
    src = write_csv(tmp_path / "d.csv", HEADER, rows)
    result = run(sandbox, tmp_path, [str(src)], step_id="StepA1")
    assert result.rows_submitted == 1 and result.rows_rejected == 1
    assert read_rows(result.rejects_file or "")[0]["_row"] == "2"


def test_no_wait_then_status(sandbox: Sandbox, tmp_path: Path) -> None:
    from shandy_cli import check_status

    src = write_csv(tmp_path / "nw.csv", HEADER, leads(4))
    result = run(sandbox, tmp_path, [str(src)], step_id="StepA1", wait=False)
    assert result.exit_code == 0 and [c.state for c in result.chunks] == ["accepted"]
    with SaleshandyClient(sandbox.url, "test-key") as client:
        statuses = check_status(
            result.request_ids, client=client, wait=True, timeout=20, poll_interval=0.05,
            state_dir=tmp_path / "state",
        )  # fmt: skip
    assert [s.completed for s in statuses] == [True]
    assert statuses[0].failed_rows == 0


def test_dry_run_sends_nothing(sandbox: Sandbox, tmp_path: Path) -> None:
    src = write_csv(tmp_path / "dr.csv", HEADER, [*leads(3), ["a", "b", "bad", "c"]])
    result = run(sandbox, tmp_path, [str(src)], step_id="StepA1", dry_run=True)
    assert result.dry_run and result.rows_submitted == 3 and result.exit_code == 1
    assert [c.state for c in result.chunks] == ["planned"]
    assert posts(sandbox) == []


def test_dry_run_without_key_maps_against_system_labels(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SALESHANDY_API_KEY", raising=False)
    monkeypatch.chdir(tmp_path)
    src = write_csv(tmp_path / "k.csv", HEADER, leads(3))
    result = import_files([str(src)], dry_run=True, state_dir=tmp_path / "st")
    assert result.labels_source == "system" and result.exit_code == 0
    assert result.rows_submitted == 3


def test_timeout_while_processing_exits_5(tmp_path: Path) -> None:
    from shandy_cli.sandbox import SandboxConfig, start_sandbox

    slow = start_sandbox(SandboxConfig(state_dir=tmp_path / "sb", delay_base=30.0))
    try:
        src = write_csv(tmp_path / "t.csv", HEADER, leads(2))
        result = run(slow, tmp_path, [str(src)], step_id="StepA1", timeout=0.3)
    finally:
        slow.stop()
    assert result.exit_code == 5 and not result.completed
    assert result.error and f"shandy status {result.request_ids[0]}" in result.error


def test_undecodable_and_ragged_rows_are_rejected_row_by_row(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    src = tmp_path / "mixed.csv"
    src.write_bytes(
        b"Email,Company\n"
        b"ok1@example.com,Fine\n"
        b"ok2@example.com,Bad \xff\xfe bytes\n"
        b"ok3@example.com,Too,Many\n"
        b"ok4@example.com\n"
    )
    result = run(sandbox, tmp_path, [str(src)], step_id="StepA1", encoding="utf-8")
    assert_accounted(result)
    assert result.rows_read == 4
    reasons = {r["_row"]: r["_reason"] for r in read_rows(result.rejects_file or "")}
    assert set(reasons) == {"2", "3"}


def test_250k_rows_import_as_three_chunks(sandbox: Sandbox, tmp_path: Path) -> None:
    """The issue's yardstick: 250,000 rows, three requests under the 100k limit, all accounted."""
    src = tmp_path / "big.csv"
    with src.open("w", newline="") as fh:
        fh.write("First Name,Email,Company\n")
        fh.writelines(f"P{i},p{i}@example.com,Co {i % 97}\n" for i in range(250_000))
        fh.write("Bad,not-an-email,X\n")
    result = run(sandbox, tmp_path, [str(src)], step_id="StepA1", timeout=120)
    assert [c.rows for c in result.chunks] == [100_000, 100_000, 50_000]
    assert result.rows_read == 250_001
    assert_accounted(result)
    assert result.rows_rejected == 1 and result.completed
    assert all(c.bytes <= 90_000_000 for c in result.chunks)
