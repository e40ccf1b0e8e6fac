"""Chunking: exact byte accounting, greedy packing, spooled bodies."""

from __future__ import annotations

import itertools
import os
import stat
import tempfile
from pathlib import Path

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shandy_cli import ImportOptions, import_files
from shandy_cli.errors import InputError
from shandy_cli.pipeline.chunking import (
    API_MAX_BYTES,
    API_MAX_ROWS,
    MIN_ITEM,
    PREFIX,
    Chunk,
    Chunker,
    body_suffix,
    encode_prospect,
    plan_chunks,
)
from shandy_cli.sandbox import Sandbox

OPTIONS = {"stepId": "X", "verifyProspects": False, "conflictAction": "noUpdate", "tags": []}
SUFFIX = body_suffix(OPTIONS)


def item(n: int, pad: int = 0) -> bytes:
    return encode_prospect({"Email": f"p{n}@example.com", "Notes": "x" * pad})


def run(chunker: Chunker, items: list[bytes], file: str = "f.csv") -> list[Chunk]:
    chunks = [c for row, it in enumerate(items, 1) if (c := chunker.add(it, file=file, row=row))]
    last = chunker.finish()
    return [*chunks, last] if last else chunks


def body_len(items: list[bytes], suffix: bytes = SUFFIX) -> int:
    return len(PREFIX) + sum(map(len, items)) + len(items) - 1 + len(suffix)


# ---------------------------------------------------------------- suffix and encoding


def test_body_suffix_is_the_rest_of_the_object() -> None:
    assert body_suffix({}) == b"]}"
    assert (
        SUFFIX == b'],"stepId":"X","verifyProspects":false,"conflictAction":"noUpdate","tags":[]}'
    )
    body = PREFIX + item(1) + b"," + item(2) + SUFFIX
    expected = {"prospectList": [orjson.loads(item(1)), orjson.loads(item(2))], **OPTIONS}
    assert orjson.loads(body) == expected


def test_body_suffix_refuses_a_second_prospect_list() -> None:
    with pytest.raises(ValueError):
        body_suffix({"prospectList": []})


def test_encode_prospect_is_compact_utf8() -> None:
    assert encode_prospect({"First Name": "Zoë", "Email": "z@x.io"}) == (
        '{"First Name":"Zoë","Email":"z@x.io"}'.encode()
    )


def test_encode_prospect_rejects_lone_surrogates_as_value_error() -> None:
    with pytest.raises(ValueError):
        encode_prospect({"Email": "a\udcffb@x.io"})


# ---------------------------------------------------------------- limits


@pytest.mark.parametrize(
    ("max_rows", "max_bytes"),
    [(0, 1000), (API_MAX_ROWS + 1, 1000), (10, API_MAX_BYTES + 1), (10, 10)],
)
def test_bad_limits_are_input_errors(tmp_path: Path, max_rows: int, max_bytes: int) -> None:
    with pytest.raises(InputError) as err:
        Chunker(SUFFIX, max_rows=max_rows, max_bytes=max_bytes, spool_dir=tmp_path)
    assert err.value.exit_code == 2


def test_smallest_allowed_max_bytes_holds_a_minimal_prospect(tmp_path: Path) -> None:
    smallest = len(PREFIX) + len(MIN_ITEM) + len(SUFFIX)
    chunker = Chunker(SUFFIX, max_bytes=smallest, spool_dir=tmp_path)
    with pytest.raises(InputError):
        Chunker(SUFFIX, max_bytes=smallest - 1, spool_dir=tmp_path)
    [chunk] = run(chunker, [MIN_ITEM])
    assert chunk.bytes == smallest == chunk.path.stat().st_size


# ---------------------------------------------------------------- edges


def test_empty_input_makes_no_chunk_and_no_file(tmp_path: Path) -> None:
    chunker = Chunker(SUFFIX, spool_dir=tmp_path / "spool")
    assert chunker.finish() is None
    assert not (tmp_path / "spool").exists() or not any((tmp_path / "spool").iterdir())


def test_item_exactly_at_the_limit_fits_and_one_byte_more_does_not(tmp_path: Path) -> None:
    big = item(1, pad=500)
    exact = len(PREFIX) + len(big) + len(SUFFIX)
    chunker = Chunker(SUFFIX, max_bytes=exact, spool_dir=tmp_path)
    assert chunker.fits_alone(big)
    [chunk] = run(chunker, [big])
    assert chunk.bytes == exact == chunk.path.stat().st_size

    tight = Chunker(SUFFIX, max_bytes=exact - 1, spool_dir=tmp_path)
    assert not tight.fits_alone(big)
    assert tight.oversize_reason(big) == (
        f"prospect is {len(big):,} bytes, more than any request may hold ({exact - 1:,} bytes)"
    )


def test_oversize_item_raises_and_leaves_the_open_chunk_intact(tmp_path: Path) -> None:
    small, big = item(1), item(2, pad=400)
    chunker = Chunker(SUFFIX, max_bytes=300, spool_dir=tmp_path)
    assert chunker.add(small, file="f", row=1) is None
    with pytest.raises(ValueError, match="more than any request may hold"):
        chunker.add(big, file="f", row=2)
    assert chunker.add(item(3), file="f", row=3) is None
    chunk = chunker.finish()
    assert chunk is not None and chunk.rows == 2
    assert orjson.loads(chunk.path.read_bytes())["prospectList"] == [
        orjson.loads(small),
        orjson.loads(item(3)),
    ]


def test_two_items_exactly_filling_a_chunk_share_it(tmp_path: Path) -> None:
    pair = [item(1), item(2)]
    exact = body_len(pair)
    assert [c.rows for c in run(Chunker(SUFFIX, max_bytes=exact, spool_dir=tmp_path), pair)] == [2]
    split = run(Chunker(SUFFIX, max_bytes=exact - 1, spool_dir=tmp_path), pair)
    assert [c.rows for c in split] == [1, 1]


def test_max_rows_one_gives_one_chunk_per_item(tmp_path: Path) -> None:
    items = [item(n) for n in range(5)]
    chunks = run(Chunker(SUFFIX, max_rows=1, spool_dir=tmp_path), items)
    assert [c.rows for c in chunks] == [1] * 5
    assert [c.index for c in chunks] == list(range(5))
    assert [c.first for c in chunks] == [("f.csv", n) for n in range(1, 6)]


def test_chunk_tracks_first_and_last_row_across_files(tmp_path: Path) -> None:
    chunker = Chunker(SUFFIX, max_rows=3, spool_dir=tmp_path)
    rows = [("a.csv", 1), ("a.csv", 2), ("b.csv", 1), ("b.csv", 2)]
    closed = [chunker.add(item(n), file=f, row=r) for n, (f, r) in enumerate(rows)]
    assert closed[:3] == [None, None, None]
    first = closed[3]
    assert first is not None and (first.first, first.last) == (("a.csv", 1), ("b.csv", 1))
    last = chunker.finish()
    assert last is not None and (last.first, last.last, last.index) == (("b.csv", 2),) * 2 + (1,)


def test_spool_files_are_private(tmp_path: Path) -> None:
    [chunk] = run(Chunker(SUFFIX, spool_dir=tmp_path), [item(1)])
    assert stat.S_IMODE(chunk.path.stat().st_mode) == 0o600
    assert chunk.path.parent == tmp_path and chunk.path.name.startswith("chunk-00000-")


def test_abort_removes_the_partial_body(tmp_path: Path) -> None:
    chunker = Chunker(SUFFIX, spool_dir=tmp_path)
    chunker.add(item(1), file="f", row=1)
    chunker.abort()
    assert list(tmp_path.iterdir()) == []
    assert chunker.finish() is None


def test_plan_chunks_rejects_an_item_too_big_for_any_chunk() -> None:
    with pytest.raises(ValueError):
        plan_chunks([10, 500], suffix_len=2, max_rows=10, max_bytes=100)


def test_plan_chunks_examples() -> None:
    # PREFIX is 17 bytes; with a 2-byte suffix, 100 bytes leave 81 for items and commas.
    assert plan_chunks([], 2, 10, 100) == []
    assert plan_chunks([40, 40, 40], 2, 10, 100) == [[0, 1], [2]]
    assert plan_chunks([40, 41, 1], 2, 10, 100) == [[0], [1, 2]]
    assert plan_chunks([1, 1, 1, 1, 1], 2, 2, 100) == [[0, 1], [2, 3], [4]]


# ---------------------------------------------------------------- properties

prospects = st.dictionaries(
    st.text(min_size=1, max_size=8), st.text(max_size=40), min_size=1, max_size=4
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rows=st.lists(prospects, max_size=40),
    max_rows=st.integers(1, 8),
    extra_bytes=st.integers(0, 600),
    options=st.sampled_from([{}, OPTIONS]),
)
def test_chunker_packs_greedily_exactly_and_in_order(
    rows: list[dict[str, str]], max_rows: int, extra_bytes: int, options: dict[str, object]
) -> None:
    suffix = body_suffix(options)
    max_bytes = len(PREFIX) + len(MIN_ITEM) + len(suffix) + extra_bytes
    with tempfile.TemporaryDirectory() as spool:
        chunker = Chunker(suffix, max_rows=max_rows, max_bytes=max_bytes, spool_dir=Path(spool))
        items = [it for it in map(encode_prospect, rows) if chunker.fits_alone(it)]
        chunks = run(chunker, items)
        bodies = [orjson.loads(c.path.read_bytes()) for c in chunks]
        sizes = [c.path.stat().st_size for c in chunks]

    # Every item in exactly one chunk, in order; the bodies are what was added.
    lists = [body.pop("prospectList") for body in bodies]
    assert [p for chunk in lists for p in chunk] == [orjson.loads(it) for it in items]
    assert all(body == options for body in bodies)
    # Exact sizes within the limits.
    assert [c.bytes for c in chunks] == sizes
    assert all(c.bytes <= max_bytes and 1 <= c.rows <= max_rows for c in chunks)
    assert [c.rows for c in chunks] == [len(chunk) for chunk in lists]
    # Greedy: each closed chunk could not have taken the next chunk's first item.
    start = 0
    for chunk in chunks[:-1]:
        head, nxt = items[start : start + chunk.rows], items[start + chunk.rows]
        assert chunk.rows == max_rows or body_len([*head, nxt], suffix) > max_bytes
        start += chunk.rows
    # The pure planner agrees with the Chunker.
    plan = plan_chunks([len(it) for it in items], len(suffix), max_rows, max_bytes)
    assert [len(group) for group in plan] == [c.rows for c in chunks]
    # So does a plan-only Chunker (a dry run): same chunks, no body anywhere.
    planner = Chunker(suffix, max_rows=max_rows, max_bytes=max_bytes, spool_dir=None)
    planned = run(planner, items)
    assert not planner.writes
    assert [(c.index, c.rows, c.bytes, c.first, c.last) for c in planned] == [
        (c.index, c.rows, c.bytes, c.first, c.last) for c in chunks
    ]
    assert all(c.path is None for c in planned)


@settings(max_examples=200, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 120), max_size=60),
    suffix_len=st.integers(2, 30),
    max_rows=st.integers(1, 10),
    max_bytes=st.integers(170, 400),
)
def test_plan_chunks_partitions_within_limits(
    sizes: list[int], suffix_len: int, max_rows: int, max_bytes: int
) -> None:
    plan = plan_chunks(sizes, suffix_len, max_rows, max_bytes)
    assert [i for group in plan for i in group] == list(range(len(sizes)))

    def total(group: list[int]) -> int:
        return len(PREFIX) + sum(sizes[i] for i in group) + len(group) - 1 + suffix_len

    assert all(1 <= len(g) <= max_rows and total(g) <= max_bytes for g in plan)
    for group, nxt in itertools.pairwise(plan):
        assert len(group) == max_rows or total([*group, nxt[0]]) > max_bytes


# -- modes after a real import ---------------------------------------------------------


@pytest.mark.parametrize("columnar", ["never", "always"])
def test_a_runs_chunks_and_keys_are_private(
    sandbox: Sandbox, tmp_path: Path, columnar: str
) -> None:
    """Under the usual umask 022: every directory the run makes 0700, every file 0600 --
    the chunk bodies, their ``chunks/`` directory and the ``keys-*.bin`` beside them."""
    src = tmp_path / "leads.csv"
    src.write_text("Email,First Name\n" + "".join(f"m{i}@example.com,Ann\n" for i in range(30)))
    state = tmp_path / "state"
    old = os.umask(0o022)
    try:
        result = import_files(
            [str(src)],
            ImportOptions(
                step_id="StepA1",
                max_rows=10,
                wait=False,
                columnar=columnar,
                rejects=str(tmp_path / "rejects.csv"),
            ),
            api_key="k",
            base_url=sandbox.url,
            state_dir=state,
        )
    finally:
        os.umask(old)
    assert result.rows_submitted == 30 and len(result.chunks) == 3
    made = list(state.rglob("*"))
    chunk_dirs = [p for p in made if p.name == "chunks"]
    keys = [p for p in made if p.name.startswith("keys-")]
    assert len(chunk_dirs) == 1 and len(keys) == 3, made
    for path in made:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == (0o700 if path.is_dir() else 0o600), (path, oct(mode))
