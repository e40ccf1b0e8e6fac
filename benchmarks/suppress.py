"""What ``--suppress`` costs: a dry run of a 1M-row CSV with and without a 100,000-entry list.

    python benchmarks/suppress.py                    # 1M rows, 100k entries, 3 rounds
    python benchmarks/suppress.py --rows 200000 --entries 20000 --repeat 5
    python benchmarks/suppress.py --per-row          # the per-row path too (SHANDY_COLUMNAR=0)

The CSV is bench.py's (``generate.py``, reused from ``--data-dir``). The list is made
from the same generator: every ``rows / entries``-th row's address (one in ten
upper-cased), then ``--domains`` ``@domain`` / ``*@domain`` entries, two of them
domains the file uses, the rest none. A third contender, ``no-match``, takes a list
as long that matches no row: loading and matching alone, without the rejects file
every suppressed row is written to. Each contender is ``shandy import --dry-run
--sandbox`` in its own subprocess (bench.run_child: wall, CPU, peak RSS); rounds are
interleaved so drift hits both alike; the table shows medians and the ratio of the
two, measured in this same run.
"""

from __future__ import annotations

import argparse
import json
import random
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

from shandy_cli.pipeline.validation import is_plausible_email  # noqa: E402


def write_missing(path: Path, entries: int) -> None:
    """A list as long that matches none of the file's rows: the cost of loading and
    matching alone, without the rejects file the suppressed rows are written to."""
    lines = [f"nobody{i}@blocked{i % 997}.example" for i in range(entries - 100)]
    lines += [f"@blocked{i}.example" for i in range(100)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def write_list(path: Path, rows: int, entries: int, domains: int) -> int:
    """The suppression list: every few rows' address (the generator's invalid ones left
    out: the list must load), then ``domains`` domain entries. Returns the entries."""
    rng = random.Random(14)
    step = max(1, rows // max(1, entries - domains))
    used: list[str] = []
    lines = ["# benchmark suppression list: addresses from the data file, then domains"]
    addresses, due = 0, False
    for i, row in enumerate(generate.rows(rows)):
        due = due or i % step == 0  # this row's, or the next valid one's
        email = row[2].strip()
        if not is_plausible_email(email):
            continue
        if i % 997 == 0:
            used.append(email.rpartition("@")[2].lower())
        if due and addresses < entries - domains:
            lines.append(email.upper() if rng.random() < 0.1 else email)
            addresses, due = addresses + 1, False
    real = sorted(set(used))[:2]  # two domains the file uses
    names = [*real, *(f"blocked{i}.example" for i in range(domains - len(real)))]
    for n, domain in enumerate(names):
        lines.append(("*@" if n % 2 else "@") + domain)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return addresses + len(names)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--domains", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--per-row", action="store_true", help="also time SHANDY_COLUMNAR=0")
    parser.add_argument("--data-dir", type=Path, default=Path(tempfile.gettempdir()) / "bench")
    parser.add_argument("--timeout", type=float, default=1800)
    args = parser.parse_args(argv)

    args.data_dir.mkdir(parents=True, exist_ok=True)
    data = bench.ensure_data("csv", args.rows, args.data_dir)
    listing = args.data_dir / f"suppress-{args.rows}-{args.entries}.txt"
    entries = write_list(listing, args.rows, args.entries, args.domains)
    missing = args.data_dir / f"suppress-none-{args.entries}.txt"
    write_missing(missing, args.entries)
    lists = {"without": None, "with": listing, "no-match": missing}
    print(f"data {data} ({data.stat().st_size / bench.MB:.0f} MB, {args.rows:,} rows)")
    print(f"list {listing}: {entries:,} entries ({args.domains} domains) -- {bench.git_state()}")

    base = bench.clean_env()
    ways = ["columnar", "per-row"] if args.per_row else ["columnar"]
    contenders = [(way, sup) for way in ways for sup in lists]
    samples: dict[tuple[str, str], list[tuple[float, float, float, dict]]] = {
        c: [] for c in contenders
    }
    for round_ in range(args.repeat):
        order = contenders[round_ % len(contenders) :] + contenders[: round_ % len(contenders)]
        for way, sup in order:
            env = dict(base, SHANDY_COLUMNAR="1" if way == "columnar" else "0")
            tmp = Path(tempfile.mkdtemp(prefix="bench-suppress-"))
            try:
                chosen = lists[sup]
                extra = ["--dry-run", "--sandbox", *(["--suppress", str(chosen)] if chosen else [])]
                code, wall, cpu, rss, out, err = bench.run_child(
                    bench._shandy(*extra)(data, tmp), env, tmp, args.timeout
                )
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
            if code not in bench.SHANDY_OK:
                tail = (err or out).decode(errors="replace").strip().splitlines()[-3:]
                print(f"{way} suppress={sup}: exit {code}: {' | '.join(tail)}", file=sys.stderr)
                return 1
            doc = json.loads(out)
            samples[way, sup].append((wall, cpu, rss, doc))
            print(f"  round {round_ + 1} {way:8} {sup:8} {wall:6.2f} s")

    print()
    head = ("path", "list", "wall s", "cpu s", "RSS MB", "read", "submitted", "skipped")
    print("{:9} {:8} {:>7} {:>7} {:>7} {:>10} {:>10} {:>9}".format(*head))
    for way in ways:
        medians = {}
        for sup in lists:
            got = samples[way, sup]
            wall = statistics.median(s[0] for s in got)
            cpu = statistics.median(s[1] for s in got)
            rss = statistics.median(s[2] for s in got)
            doc = got[-1][3]
            medians[sup] = wall
            print(
                f"{way:9} {sup:8} {wall:7.2f} {cpu:7.2f} {rss:7.0f} "
                f"{doc['rows_read']:>10,} {doc['rows_submitted']:>10,} {doc['rows_skipped']:>9,}"
            )
        for sup in ("with", "no-match"):
            ratio = medians[sup] / medians["without"]
            print(f"{way:9} ratio {sup}/without: {ratio:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
