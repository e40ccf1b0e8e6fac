"""What ``--only-changed`` costs on night two of a 1M-row export, next to night one.

    python benchmarks/only_changed.py                  # 1M rows, 3 rounds
    python benchmarks/only_changed.py --rows 200000 --repeat 5

Night one is bench.py's CSV (``generate.py``): ``shandy import --only-changed
--no-wait`` of all of it into a step, to benchmarks/sink_server.py (which accepts
and discards bodies, so the time is shandy's). Night two is the same export a day
later: its first 1% of rows gone, every 33rd row's company changed, and 5% more
rows at the end; it is imported with ``--only-changed`` against the ledger night
one left (``night-2``), and, as what a nightly job without it does, in full into a
fresh state dir (``night-2-full``). Each contender runs in its own subprocess
(bench.run_child: wall, CPU, peak RSS); rounds are interleaved; the table shows
medians, with each one's ratio to night one measured in this same run.
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import bench  # noqa: E402 -- a script beside this one
import generate  # noqa: E402

CHANGE_EVERY = 33


def write_night_two(path: Path, rows: int) -> None:
    """The export a night later: shrunk by its first 1%, every ``CHANGE_EVERY``-th row
    changed, grown by 5% (the generator's rows go on where night one's stopped)."""
    gone, grown = rows // 100, rows // 20
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\r\n")
        writer.writerow(generate.COLUMNS)
        for i, row in enumerate(generate.rows(rows + grown)):
            if i < gone:
                continue
            if i < rows and i % CHANGE_EVERY == 0:
                row[3] = row[3].strip() + " (acquired)"
            writer.writerow(row)


def run(argv: list[str], env: dict[str, str], tmp: Path, timeout: float) -> tuple[float, ...]:
    code, wall, cpu, rss, out, err = bench.run_child(argv, env, tmp, timeout)
    if code not in bench.SHANDY_OK:
        tail = (err or out).decode(errors="replace").strip().splitlines()[-3:]
        raise RuntimeError(f"exit {code}: {' | '.join(tail)}")
    doc = json.loads(out)
    sent = sum(c["bytes"] for c in doc["chunks"])
    counts = (doc["rows_read"], doc["rows_submitted"], doc["rows_updated"], doc["rows_skipped"])
    return (wall, cpu, rss, sent, *counts)


def one_round(
    one: Path, two: Path, env: dict[str, str], timeout: float
) -> dict[str, tuple[float, ...]]:
    tmp = Path(tempfile.mkdtemp(prefix="bench-changed-"))
    try:
        with bench.server("sink", tmp, env) as (url, _):
            env = dict(env, SALESHANDY_BASE_URL=url, SALESHANDY_API_KEY="bench")
            state = ["--state-dir", str(tmp / "state")]

            def shandy(data: Path, *extra: str) -> list[str]:
                argv = bench._shandy("--no-wait", *extra)(data, tmp)
                return [*argv[: argv.index("--state-dir")], *argv[argv.index("--rejects") :]]

            got = {"night-1": run([*shandy(one, "--only-changed"), *state], env, tmp, timeout)}
            got["night-2"] = run([*shandy(two, "--only-changed"), *state], env, tmp, timeout)
            fresh = ["--state-dir", str(tmp / "fresh")]
            got["night-2-full"] = run([*shandy(two), *fresh], env, tmp, timeout)
            return got
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--data-dir", type=Path, default=Path(tempfile.gettempdir()) / "bench")
    parser.add_argument("--timeout", type=float, default=1800)
    args = parser.parse_args(argv)

    args.data_dir.mkdir(parents=True, exist_ok=True)
    one = bench.ensure_data("csv", args.rows, args.data_dir)
    two = args.data_dir / f"night-two-{args.rows}.csv"
    if not two.exists():
        write_night_two(two, args.rows)
    print(f"night one {one} ({one.stat().st_size / bench.MB:.0f} MB)")
    print(f"night two {two} ({two.stat().st_size / bench.MB:.0f} MB) -- {bench.git_state()}")
    samples: dict[str, list[tuple[float, ...]]] = {}
    for round_ in range(args.repeat):
        for name, sample in one_round(one, two, bench.clean_env(), args.timeout).items():
            samples.setdefault(name, []).append(sample)
            print(f"  round {round_ + 1} {name:13} {sample[0]:6.2f} s")
    print()
    head = ("night", "wall s", "ratio", "cpu s", "RSS MB", "sent MB", "read", "submitted",
            "updates", "skipped")  # fmt: skip
    print("{:13} {:>7} {:>6} {:>7} {:>7} {:>8} {:>10} {:>10} {:>8} {:>10}".format(*head))
    base = statistics.median(s[0] for s in samples["night-1"])
    for name, got in samples.items():
        wall, cpu, rss, sent = (statistics.median(s[i] for s in got) for i in range(4))
        read, submitted, updated, skipped = got[-1][4:]
        print(
            f"{name:13} {wall:7.2f} {wall / base:6.2f} {cpu:7.2f} {rss:7.0f} "
            f"{sent / bench.MB:8.1f} {read:>10,} {submitted:>10,} {updated:>8,} {skipped:>10,}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
