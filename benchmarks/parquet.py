"""What streaming a Parquet file through the columnar reader costs and saves.

    python benchmarks/parquet.py                       # 1M rows in /tmp/bench/
    python benchmarks/parquet.py --rows 200000 --repeat 5

A dry run (``shandy import FILE --dry-run --sandbox``, a real process each) of the
same leads (``generate.py``) as ``.csv`` and as ``.parquet`` (every column text,
row groups of polars' default size), the Parquet one three ways, all in one run:

- ``streamed``: as shandy reads it, a batch (``BATCH_ROWS``) at a time
  (``columnar.read_frames`` over ``ColumnarFileSource.text_batches``);
- ``whole``: the baseline before it, the whole file cast to text and held as one
  frame (``prepare._columnar_file`` patched in the child to concatenate the batches);
- each of those with jemalloc's default arenas (``_RJEM_MALLOC_CONF`` set empty) and
  with one (``narenas:1``), to see what the arena setting is worth; streamed also with
  it unset, as shandy sets it (``shandy_cli/_allocator.py``). Before that module the
  whole-file read ran with the default arenas (polars loaded before the setting was
  made), so "whole, default arenas" is the old way as it ran.

Printed per run: best wall time, peak RSS (``os.wait4`` on that child alone, the
largest of the repeats), and both as ratios to the CSV's.  Repeats are interleaved
(round after round), so a slow spell of the machine hits every variant alike.
Checks that every Parquet variant gave the same counts.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from generate import format_args  # beside this script

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import bench  # noqa: E402 -- a script beside this one

# The child: shandy's CLI, with the Parquet path patched back to a whole-file read when
# asked (the baseline), or as it is.
CHILD = """
import runpy, sys
if sys.argv.pop(1) == "whole":
    import polars as pl
    from shandy_cli.pipeline import prepare

    def whole(self, src, mapping, file_index):
        from shandy_cli.pipeline import columnar

        if columnar.plan_problem(mapping) is not None:
            return 0, None
        frame = pl.concat(list(src.text_batches()))  # the file, held whole
        state = self._state(src.info, file_index)
        try:
            rows = columnar.read_frames([frame], src.info, mapping, state, rows=src.total,
                                        blanks=False)
        except columnar.Handover as exc:
            return exc.done, None
        return rows, src.info.size or 0

    prepare._Reader._columnar_file = whole
sys.argv[0] = "shandy"
runpy.run_module("shandy_cli", run_name="__main__")
"""


@dataclass
class Variant:
    name: str
    path: Path
    way: str  # "streamed" or "whole"
    arenas: str | None  # _RJEM_MALLOC_CONF: "" for jemalloc's defaults, None: shandy's own
    times: list[float] = field(default_factory=list)
    rss: list[float] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)


def run(v: Variant, state: Path) -> None:
    env = {**os.environ, "SHANDY_STATE_DIR": str(state), "SHANDY_COLUMNAR": "auto"}
    env.pop("_RJEM_MALLOC_CONF", None)
    if v.arenas is not None:
        env["_RJEM_MALLOC_CONF"] = v.arenas
    rejects = str(state / "rejects.csv")
    cmd = [sys.executable, "-c", CHILD, v.way, "-q", "import", str(v.path), "--sandbox",
           "--step", "StepA1", "--dry-run", "--json", "--rejects", rejects]  # fmt: skip
    code, took, _cpu, rss, out, err = bench.run_child(cmd, env, state, timeout=1800)
    if code not in bench.SHANDY_OK:
        raise SystemExit(f"{v.name} failed: {err.decode()[-800:]}")
    doc = json.loads(out)
    v.counts = {k: doc[k] for k in ("rows_read", "rows_submitted", "rows_rejected")}
    v.times.append(took)
    v.rss.append(rss)


def inputs(folder: Path, rows: int) -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    csv = folder / f"leads-{rows}.csv"
    if not csv.exists():
        gen = [sys.executable, str(HERE / "generate.py"), "csv", "--rows", str(rows),
               "--out", str(csv)]  # fmt: skip
        subprocess.run(gen, check=True)
    parquet = folder / f"leads-{rows}.parquet"
    if not parquet.exists():  # in a child: a child's peak RSS counts its parent's at the fork
        code = "import polars as pl, sys; pl.read_csv(sys.argv[1], infer_schema=False)"
        code += ".write_parquet(sys.argv[2])"
        subprocess.run([sys.executable, "-c", code, str(csv), str(parquet)], check=True)
    return csv, parquet


def main() -> None:
    args = format_args(__doc__)
    csv, parquet = inputs(args.dir, args.rows)
    state = args.dir / "state-parquet"
    state.mkdir(exist_ok=True)
    variants = [Variant("csv", csv, "streamed", None)]
    names = {None: "as shandy sets it", "": "default arenas", "narenas:1": "1 arena"}
    for way, choices in (("whole", ("", "narenas:1")), ("streamed", (None, "", "narenas:1"))):
        for arenas in choices:
            variants.append(Variant(f"parquet {way}, {names[arenas]}", parquet, way, arenas))
    for _ in range(args.repeat):
        for v in variants:
            run(v, state)
    base = variants[0]
    t0, r0 = min(base.times), max(base.rss)
    mb = {p.suffix[1:]: p.stat().st_size / 1e6 for p in (csv, parquet)}
    sizes = ", ".join(f"{kind} {size:,.0f} MB" for kind, size in mb.items())
    print(f"{args.rows:,} rows; best time / largest peak RSS of {args.repeat}; {sizes}")
    print(f"{'input':<37}{'time':>8}{'x csv':>7}{'peak RSS':>11}{'x csv':>7}")
    for v in variants:
        t, r = min(v.times), max(v.rss)
        print(f"{v.name:<37}{t:>7.2f}s{t / t0:>7.2f}{r:>8.0f} MB{r / r0:>7.2f}")
    before, now = variants[1], variants[3]  # the whole file as shandy read it; streamed
    print(f"streamed / whole as shandy runs each: time {min(now.times) / min(before.times):.2f}, "
          f"peak RSS {max(now.rss) / max(before.rss):.2f}")  # fmt: skip
    counts = {json.dumps(v.counts, sort_keys=True) for v in variants[1:]}
    print("counts:", "the same for every Parquet run" if len(counts) == 1 else f"DIFFER: {counts}")
    if len(counts) != 1:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
