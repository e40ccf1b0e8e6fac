"""Does the columnar reader keep its speed on .gz and .zst inputs?

    python benchmarks/compressed.py                     # 1M rows in /tmp/bench/
    python benchmarks/compressed.py --rows 200000 --repeat 5

A dry run (``shandy import FILE --dry-run --sandbox``, a real process) of the same
leads as ``.csv``, ``.csv.gz`` (gzip -6) and ``.csv.zst`` (zstd -3), each next to a
bare decompression of that file to /dev/null (``zcat`` / ``zstd -dc`` when they are
installed, and Python's own decoder, which is what shandy runs), all in one run.
Printed per input: the dry run's best wall time, its ratio to the plain CSV's, the
bare decompression, and the dry run's ratio to "plain CSV + bare decompression"
(below 1.0: decompressing overlaps the parsing).  Also checks that every input gave
the same counts.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from generate import format_args  # beside this script

HERE = Path(__file__).resolve().parent


def best(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def dry_run(path: Path, state: Path) -> dict[str, object]:
    env = {**os.environ, "SHANDY_STATE_DIR": str(state), "SHANDY_COLUMNAR": "auto"}
    cmd = [
        sys.executable,
        "-m",
        "shandy_cli",
        "-q",
        "import",
        str(path),
        "--sandbox",
        "--step",
        "StepA1",
        "--dry-run",
        "--json",
        "--rejects",
        str(state / "rejects.csv"),
    ]
    done = subprocess.run(cmd, capture_output=True, env=env, check=False)
    if done.returncode not in (0, 1):
        raise SystemExit(f"dry run of {path} failed: {done.stderr.decode()[-500:]}")
    doc = json.loads(done.stdout)
    return {k: doc[k] for k in ("rows_read", "rows_submitted", "rows_rejected")}


def python_decompress(path: Path) -> None:
    """What shandy's own decoders take to inflate ``path`` (gzip module, zstandard)."""
    import zstandard

    with path.open("rb") as raw:
        if path.suffix == ".gz":
            opened: Any = gzip.GzipFile(fileobj=raw)
        else:
            opened = zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True)
        with opened as fh:
            while fh.read(1 << 20):
                pass


def tool_decompress(path: Path) -> Callable[[], object] | None:
    tool = ["zcat"] if path.suffix == ".gz" else ["zstd", "-dc"]
    if shutil.which(tool[0]) is None:
        return None
    return lambda: subprocess.run([*tool, str(path)], stdout=subprocess.DEVNULL, check=True)


def prepare_inputs(folder: Path, rows: int) -> tuple[Path, Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    plain = folder / f"leads-{rows}.csv"
    if not plain.exists():
        gen = [
            sys.executable,
            str(HERE / "generate.py"),
            "csv",
            "--rows",
            str(rows),
            "--out",
            str(plain),
        ]
        subprocess.run(gen, check=True)
    gz, zst = Path(f"{plain}.gz"), Path(f"{plain}.zst")
    if not gz.exists():
        with plain.open("rb") as src, gzip.open(gz, "wb", compresslevel=6) as out:
            shutil.copyfileobj(src, out, 1 << 20)
    if not zst.exists():
        import zstandard

        with plain.open("rb") as src, zst.open("wb") as out:
            zstandard.ZstdCompressor(level=3).copy_stream(src, out)
    return plain, gz, zst


def main() -> None:
    args = format_args(__doc__)
    plain, gz, zst = prepare_inputs(args.dir, args.rows)
    state = args.dir / "state-compressed"
    state.mkdir(exist_ok=True)
    counts = {}
    results = {}
    for path in (plain, gz, zst):
        counts[path.name] = dry_run(path, state)  # also a warm-up of the page cache
        results[path.name] = best(lambda p=path: dry_run(p, state), args.repeat)
    base = results[plain.name]
    print(
        f"{args.rows:,} rows; best of {args.repeat}; sizes: "
        + ", ".join(f"{p.name} {p.stat().st_size / 1e6:,.1f} MB" for p in (plain, gz, zst))
    )
    print(
        f"{'input':<24}{'dry run':>10}{'x plain':>9}{'py decomp':>11}{'tool decomp':>13}"
        f"{'x (plain+py)':>14}"
    )
    print(f"{plain.name:<24}{base:>9.2f}s{1.0:>9.2f}{'':>11}{'':>13}{'':>14}")
    for path in (gz, zst):
        py = best(lambda p=path: python_decompress(p), args.repeat)
        tool = tool_decompress(path)
        tool_s = f"{best(tool, args.repeat):.2f}s" if tool else "n/a"
        took = results[path.name]
        print(
            f"{path.name:<24}{took:>9.2f}s{took / base:>9.2f}{py:>10.2f}s{tool_s:>13}"
            f"{took / (base + py):>14.2f}"
        )
    same = len({json.dumps(c, sort_keys=True) for c in counts.values()}) == 1
    print("counts:", "the same for every input" if same else f"DIFFER: {counts}")
    if not same:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
