"""``shandy trace EMAIL``: every kept run that saw an address, over real HTTP to the sandbox;
the keyed digest's twins; the columnar reader's records against the per-row ones."""

from __future__ import annotations

import json
import random
import stat
import time
from pathlib import Path

import numpy as np
import pytest
from incli import run_cli

from shandy_cli import SaleshandyClient, TraceResult, check_status, trace
from shandy_cli.journal import Journal
from shandy_cli.pipeline.columnar import framing
from shandy_cli.pipeline.housekeeping import expire_runs, run_dir
from shandy_cli.pipeline.trace import (
    SECRET_FILE,
    SERVER_FILE,
    TRACE_FILE,
    _records_numpy,
    _records_small,
    _Submitted,
    digest_many,
    digest_one,
    load_secret,
    safe_reason,
    save_outcome,
    save_run,
    scrub,
    siphash,
    siphash_many,
)
from shandy_cli.pipeline.validation import email_key
from shandy_cli.sandbox import Sandbox
from tests.test_fastpath import HEADER as FAST_HEADER
from tests.test_fastpath import csv_bytes, rows
from tests.test_fastpath import run as prepare_run
from tests.test_import import run, write_csv

LEAD_HEADER = ["First Name", "Email", "Company"]
ANN = "ann@example.com"
IDN = "bö@bücher.de"  # plausible here; the sandbox (as live) fails an IDN domain


def entries_of(result: TraceResult) -> list[tuple[str, str, int | None, int | None, str]]:
    return [(e.run_id, e.file, e.row, e.chunk, e.outcome) for e in result.entries]


# -- the digest -----------------------------------------------------------------------------


def test_siphash_is_the_reference_and_its_numpy_twin_agrees() -> None:
    # SipHash-2-4's published vector: key 00..0f, message 00..07
    k0 = int.from_bytes(bytes(range(8)), "little")
    k1 = int.from_bytes(bytes(range(8, 16)), "little")
    word = int.from_bytes(bytes(range(8)), "little")
    assert siphash(word, k0, k1, 2, 4) == 0x93F5F5799A932462
    assert int(siphash_many(np.array([word], np.uint64), k0, k1, 2, 4)[0]) == 0x93F5F5799A932462
    rng = random.Random(7)
    words = [1, 2, (1 << 64) - 1, 1 << 63, *(rng.getrandbits(64) or 1 for _ in range(2000))]
    key = (rng.getrandbits(64), rng.getrandbits(64))
    many = digest_many(np.array(words, np.uint64), key)
    assert [int(d) for d in many] == [siphash(w, *key) for w in words]
    emails = ["ann@example.com", " Ann@Example.COM ", "ü@exämple.test", "BÖ@bücher.de"]
    keys = np.array([email_key(e) for e in emails], np.uint64)
    assert [int(d) for d in digest_many(keys, key)] == [digest_one(e, key) for e in emails]
    assert digest_one(" ANN@example.com\t", key) == digest_one(ANN, key)
    assert digest_one(ANN, key) != digest_one(ANN, (key[0] ^ 1, key[1]))  # keyed


def test_both_record_writers_write_the_same_bytes() -> None:
    from array import array

    rng = random.Random(3)
    n = 3000
    keys = array("Q", (rng.choice([11, 12, 13, rng.getrandbits(64) or 1]) for _ in range(n)))
    where = array("Q", (rng.getrandbits(30) for _ in range(n)))
    info = array("Q", (rng.getrandbits(60) for _ in range(n)))
    key = (5, 9)
    empty = np.zeros(0, np.uint64)
    small = _records_small(key, keys, where, info)
    big = bytes(_records_numpy(key, (keys, where, info), (empty, empty, empty)))
    assert small == big
    assert _Submitted().python(0) == (array("Q"), array("Q"), array("Q"))


def test_scrub_takes_the_address_out_of_reasons() -> None:
    assert scrub("invalid email 'bad@'", " bad@ ") == "invalid email <address>"
    dup = "duplicate email 'Ann@X.com' (first seen in a.csv row 1)"
    assert scrub(dup, "Ann@X.com") == "duplicate email <address> (first seen in a.csv row 1)"
    listed = "suppressed by dnc.txt (line 3: ANN@x.com)"
    assert scrub(listed, "ann@X.com") == "suppressed by dnc.txt (line 3: <address>)"
    assert scrub("a value is not valid text", "ann@x.com") == "a value is not valid text"
    # an address spelt otherwise than the row has it: the reason's kind, or nothing
    assert safe_reason("Saleshandy: bad 'ANN@X.COM'", "ann@x.com") == "Saleshandy: bad '<address>'"
    assert "ann" not in safe_reason("Saleshandy: ann@x.com is bad", " Ann@X.com")


# -- over real HTTP -------------------------------------------------------------------------


def test_one_address_across_three_runs(sandbox: Sandbox, tmp_path: Path) -> None:
    """Imported (and a repeat rejected), then skipped by --only-new, then found already in the
    step by Saleshandy; and an IDN address Saleshandy fails, sent again by --only-new (a
    failed row is not in the ledger), then suppressed."""
    state = tmp_path / "state"
    first = write_csv(tmp_path / "first.csv", LEAD_HEADER, [
        ["Zed", "zed@example.com", "Co"],
        ["Ann", ANN, "Acme"],
        ["Ann again", " ANN@Example.com ", "Acme"],  # a duplicate: rejected, row 3
        ["Bo", IDN, "Co"],
        ["Cy", "cy@example.com", "Co"],
    ])  # fmt: skip
    one = run(sandbox, tmp_path, [str(first)], step_id="StepA1", max_rows=2)
    assert (one.rows_submitted, one.rows_rejected, one.rows_failed) == (4, 1, 1), one
    second = write_csv(tmp_path / "second.csv", LEAD_HEADER, [
        ["Bo", IDN, "Co"], ["Ann", "Ann@example.com", "Acme"],
    ])  # fmt: skip
    two = run(sandbox, tmp_path, [str(second)], step_id="StepA1", only_new=True)
    assert (two.rows_skipped, two.rows_failed) == (1, 1), two
    third = write_csv(tmp_path / "third.csv", LEAD_HEADER, [
        ["Dee", "dee@example.com", "Co"], ["Bo", IDN, "Co"], ["Ann", ANN, "Changed Inc"],
    ])  # fmt: skip
    dnc = tmp_path / "dnc.txt"
    dnc.write_text("BÖ@bücher.de\n")
    three = run(
        sandbox, tmp_path, [str(third)], step_id="StepA1", conflict="overwrite", suppress=[dnc]
    )
    assert (three.rows_already_present, three.rows_skipped) == (1, 1), three

    found = trace("  Ann@EXAMPLE.com ", state_dir=state)
    assert found.exit_code == 0 and found.email == ANN
    assert found.runs == [three.run_id, two.run_id, one.run_id]  # newest first
    assert entries_of(found) == [
        (three.run_id, str(third), 3, 0, "already present"),
        (two.run_id, str(second), 2, None, "skipped"),
        (one.run_id, str(first), 2, 0, "imported"),
        (one.run_id, str(first), 3, None, "rejected"),
    ]
    present, skipped, imported, rejected = found.entries
    assert present.request_id == three.chunks[0].request_id and present.endpoint == "step"
    assert present.reason and present.reason.startswith("Saleshandy:")
    assert "already present" in present.reason
    assert skipped.reason == "already imported" and skipped.request_id is None
    assert imported.request_id == one.chunks[0].request_id and imported.reason is None
    assert rejected.reason == f"duplicate email <address> (first seen in {first} row 2)"
    assert all(e.step_id == "StepA1" and e.run_outcome == "completed" for e in found.entries)
    assert all(e.started and e.ended for e in found.entries)

    bo = trace(IDN.upper(), state_dir=state)
    assert entries_of(bo) == [
        (three.run_id, str(third), 2, None, "skipped"),
        (two.run_id, str(second), 1, 0, "failed"),
        (one.run_id, str(first), 4, 1, "failed"),  # the second chunk of two rows each
    ]
    assert bo.entries[0].reason == f"suppressed by {dnc} (line 1: <address>)"
    assert bo.entries[2].request_id == one.chunks[1].request_id
    assert all(e.reason == "Saleshandy: Invalid email" for e in bo.entries[1:])

    # the CLI: the same as JSON; a table (tab-separated off a terminal); exit 1 for none
    env = {"SHANDY_STATE_DIR": str(state)}
    ran = run_cli("trace", ANN, "--json", cwd=tmp_path, env=env)
    assert ran.returncode == 0, ran.stderr
    doc = json.loads(ran.stdout)
    assert doc["found"] and doc["runs"] == found.runs
    assert doc["entries"] == [e.to_dict() for e in found.entries]
    assert doc["entries"][0]["chunk"] == 0 and doc["entries"][0]["outcome"] == "already present"
    ran = run_cli("trace", ANN, "--state-dir", str(state), cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr
    lines = [line.split("\t") for line in ran.stdout.splitlines()]
    assert lines[0][:5] == ["run", "started", "target", "file", "row"]
    assert [(x[0], x[4], x[5], x[8]) for x in lines[1:]] == [
        (three.run_id, "3", "#1", "already present"),
        (two.run_id, "2", "", "skipped"),
        (one.run_id, "2", "#1", "imported"),
        (one.run_id, "3", "", "rejected"),
    ]
    ran = run_cli("trace", "nobody@example.com", cwd=tmp_path, env=env)
    assert ran.returncode == 1 and ran.stdout == ""
    assert "no kept run saw nobody@example.com" in ran.stderr
    assert "SHANDY_KEEP_DAYS" in ran.stderr and "pruned" in ran.stderr
    ran = run_cli("trace", "nobody@example.com", "--json", cwd=tmp_path, env=env)
    assert ran.returncode == 1 and json.loads(ran.stdout)["entries"] == []

    # nothing trace writes holds an address; its key is 0600
    secret = state / SECRET_FILE
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    written = [secret]
    for result in (one, two, three):
        folder = run_dir(state, result.run_id)
        written += [folder / TRACE_FILE, folder / SERVER_FILE]
    addresses = ["zed@example.com", ANN, "cy@example.com", "dee@example.com", IDN]
    for path in written:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
        data = path.read_bytes().lower()
        for address in addresses:
            for form in (address, address.split("@")[0] + "@"):
                assert form.encode().lower() not in data, (path, form)
                assert form.encode("utf-16-le") not in data, (path, form)


def test_a_changed_address_shows_both_runs_and_pruning_removes_them(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    v1 = write_csv(tmp_path / "v1.csv", LEAD_HEADER, [["Ann", ANN, "Old Co"]])
    one = run(sandbox, tmp_path, [str(v1)], step_id="StepA1")
    v2 = write_csv(tmp_path / "v2.csv", LEAD_HEADER, [["Ann", ANN, "New Co"]])
    two = run(sandbox, tmp_path, [str(v2)], step_id="StepA1")
    found = trace(ANN, state_dir=state)
    assert [(e.run_id, e.outcome) for e in found.entries] == [
        (two.run_id, "already present"),  # noUpdate: it was in the step; left as it was
        (one.run_id, "imported"),
    ]
    # the run completing kept the trace (the sent index and bodies went)
    assert not (run_dir(state, one.run_id) / "sent.idx").exists()
    assert (run_dir(state, one.run_id) / TRACE_FILE).is_file()
    with Journal(state) as journal:
        gone = expire_runs(journal, 90, now=time.time() + 91 * 86_400).removed_runs
    assert sorted(gone) == sorted([one.run_id, two.run_id])
    assert not run_dir(state, one.run_id).exists()
    assert trace(ANN, state_dir=state).entries == []


def test_a_run_not_waited_for_is_submitted_until_status_settles_it(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    src = write_csv(tmp_path / "a.csv", LEAD_HEADER, [["Ann", ANN, "Co"], ["Bo", IDN, "Co"]])
    sent = run(sandbox, tmp_path, [str(src)], step_id="StepA1", wait=False)
    [waiting] = trace(IDN, state_dir=state).entries
    assert (waiting.outcome, waiting.chunk) == ("submitted", 0)
    assert waiting.reason and f"shandy status {sent.chunks[0].request_id}" in waiting.reason
    with SaleshandyClient(sandbox.url, "test-key") as client:
        check_status(
            sent.request_ids, client=client, state_dir=state, wait=True, poll_interval=0.05
        )
    [failed] = trace(IDN, state_dir=state).entries
    assert (failed.outcome, failed.reason) == ("failed", "Saleshandy: Invalid email")
    assert [e.outcome for e in trace(ANN, state_dir=state).entries] == ["imported"]


def test_a_damaged_trace_file_is_skipped_with_a_warning(
    sandbox: Sandbox, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    state = tmp_path / "state"
    runs = []
    for n in range(4):
        src = write_csv(tmp_path / f"f{n}.csv", LEAD_HEADER, [["Ann", ANN, f"Co {n}"]])
        runs.append(run(sandbox, tmp_path, [str(src)], step_id="StepA1").run_id)
    truncated = run_dir(state, runs[0]) / TRACE_FILE
    truncated.write_bytes(truncated.read_bytes()[:-5])
    (run_dir(state, runs[1]) / TRACE_FILE).write_bytes(b"not a trace file at all")
    (run_dir(state, runs[2]) / SERVER_FILE).write_bytes(b"")
    found = trace(ANN, state_dir=state)
    assert found.runs == [runs[3]]
    assert len(found.warnings) == 3 and all("damaged" in w for w in found.warnings)
    assert {r for r in runs[:3] if any(r in w for w in found.warnings)} == set(runs[:3])
    assert sum("damaged" in r.getMessage() for r in caplog.records) == 3
    # a run dir gone (removed by hand) is a run with nothing to show
    import shutil

    shutil.rmtree(run_dir(state, runs[3]))
    assert trace(ANN, state_dir=state).entries == []
    # a damaged key: said, never a crash
    (state / SECRET_FILE).write_text("zz\n")
    broken = trace(ANN, state_dir=state)
    assert broken.entries == [] and "damaged" in broken.warnings[0]
    ran = run_cli("trace", ANN, "--json", "--state-dir", str(state), cwd=tmp_path)
    assert ran.returncode == 1 and "damaged" in ran.stderr


def test_a_state_dir_never_traced_finds_nothing(tmp_path: Path) -> None:
    found = trace(ANN, state_dir=tmp_path / "state")
    assert found.entries == [] and found.exit_code == 1
    assert load_secret(tmp_path / "state", create=False) is None  # a lookup makes no key
    ran = run_cli("trace", "   ", "--state-dir", str(tmp_path / "state"), cwd=tmp_path)
    assert ran.returncode == 2 and "email" in ran.stderr


# -- the columnar reader records what the per-row one does ----------------------------------


@pytest.mark.parametrize("n", [1500, 6000])  # below and above trace.SMALL records
def test_columnar_and_per_row_write_the_same_trace(
    n: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(framing, "BLOCK", 1 << 12)  # many blocks per file
    data = rows(n, seed=n)
    path = tmp_path / "big.csv"
    path.write_bytes(csv_bytes(FAST_HEADER, data, lineterminator="\n"))
    skip = {email_key(f"user{i}@example.test") for i in range(0, n, 7)}  # --only-new
    state = tmp_path / "state"
    traces = {}
    for way in "01":
        prepared, folder = prepare_run(
            [path], tmp_path / way, way, monkeypatch, skip=skip, max_rows=400
        )
        assert (prepared.rows_columnar > 0) == (way == "1")
        save_run(state, folder, prepared)
        traces[way] = (folder / TRACE_FILE).read_bytes()
        assert prepared.rows_skipped and prepared.rows_rejected and len(prepared.chunks) > 1
    assert traces["0"] == traces["1"]
    assert len(traces["0"]) > 24 * n * 0.9  # nearly every row has an address


def test_columnar_import_traces_as_the_per_row_one(sandbox: Sandbox, tmp_path: Path) -> None:
    data = rows(2500, seed=5)
    path = tmp_path / "big.csv"
    path.write_bytes(csv_bytes(FAST_HEADER, data, lineterminator="\n"))
    picks = ["user10@example.test", data[0][2], "user2400@example.test"]
    seen = {}
    for way in ("never", "always"):
        state = tmp_path / way
        with SaleshandyClient(sandbox.url, f"key-{way}") as client:  # an account each
            from shandy_cli import import_files

            result = import_files(
                [str(path)], client=client, state_dir=state, step_id="StepA1",
                columnar=way, max_rows=700, poll_interval=0.05, timeout=30,
            )  # fmt: skip
        assert result.completed
        seen[way] = [
            [
                (e.file, e.row, e.chunk, e.outcome, e.reason)
                for e in trace(p, state_dir=state).entries
            ]
            for p in picks
        ]
    assert seen["never"] == seen["always"]
    assert all(seen["never"])


def test_rows_sent_again_in_another_chunk_show_that_chunk_too(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    """``save_outcome(sent_again=...)``: a row sent once more after reading (as
    ``--update-existing`` will) is listed under its second chunk as well."""
    state = tmp_path / "state"
    src = write_csv(tmp_path / "a.csv", LEAD_HEADER, [["Ann", ANN, "Co"], ["Zed", "z@x.com", "C"]])
    one = run(sandbox, tmp_path, [str(src)], step_id="StepA1", max_rows=1)
    with Journal(state) as journal:
        save_outcome(journal, one.run_id, [], [], sent_again=[(email_key(ANN), 1)])
    found = trace(ANN, state_dir=state)
    assert [(e.row, e.chunk, e.outcome, e.request_id) for e in found.entries] == [
        (1, 0, "imported", one.chunks[0].request_id),
        (1, 1, "imported", one.chunks[1].request_id),
    ]


def test_an_interrupted_run_traces_what_was_sent_and_its_resume_the_rest(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    from shandy_cli import resume_import
    from tests.test_named_errors import stop_on_accept

    state = tmp_path / "state"
    src = write_csv(tmp_path / "a.csv", LEAD_HEADER, [
        ["Ann", ANN, "Co"], ["Cy", "cy@example.com", "Co"],
        ["Dee", "dee@example.com", "Co"], ["Eve", "eve@example.com", "Co"],
    ])  # fmt: skip
    stopped = run(
        sandbox, tmp_path, [str(src)], step_id="StepA1", max_rows=2,
        listener=stop_on_accept(KeyboardInterrupt),
    )  # fmt: skip
    assert stopped.exit_code == 130
    [first] = trace(ANN, state_dir=state).entries
    assert (first.chunk, first.run_outcome) == (0, "interrupted")
    assert first.outcome in ("imported", "submitted") and first.request_id
    [later] = trace("dee@example.com", state_dir=state).entries
    assert (later.chunk, later.request_id) == (1, None)
    assert later.reason in (  # the journal marks a chunk "sending" before its POST starts
        "the run ended (interrupted) before its chunk was sent",
        "being sent when the run stopped: whether Saleshandy has it is not known "
        "(shandy resume sends it again)",
    )
    assert later.outcome == ("not sent" if "before" in later.reason else "submitted")
    with SaleshandyClient(sandbox.url, "test-key") as client:
        done = resume_import(stopped.run_id, client=client, state_dir=state, poll_interval=0.05)
    assert done.completed and done.run_id == stopped.run_id
    for address, chunk in ((ANN, 0), ("dee@example.com", 1)):
        [entry] = trace(address, state_dir=state).entries  # one run, read twice: one row
        assert (entry.run_id, entry.chunk, entry.outcome) == (done.run_id, chunk, "imported")
        assert entry.request_id == done.chunks[chunk].request_id
