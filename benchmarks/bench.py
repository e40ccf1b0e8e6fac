"""Measure shandy against the floor, in one run, so the ratios hold on a noisy machine.

    python benchmarks/bench.py                      # 1M-row CSV, 100k-row XLSX, 3 repeats
    python benchmarks/bench.py --rows 200000 --repeat 5
    python benchmarks/bench.py --only dry-run,import-sink   # baselines come along

Every contender runs as its own subprocess; its peak RSS and CPU time come from
``os.wait4`` on that child alone.  Repeats are interleaved (round after round,
the order rotating) so drift hits every contender alike; the table shows
medians.  CSV contenders are compared with ``floor``, XLSX ones with
``calamine``.  The data files are generated once (deterministically) into
``--data-dir`` and reused.

Contenders:

    floor         csv.reader + header mapping + orjson.dumps per row, to /dev/null
    pandas        read_csv -> to_dict("records") -> json.dumps per record
    polars        polars read_csv -> write_ndjson (reference)
    dry-run       shandy import --dry-run --sandbox (maps against the sandbox's fields,
                  so all 10 columns, Lead Source included, are mapped and encoded)
    import        shandy import --no-wait to a `shandy sandbox --delay 0` process; the
                  sandbox parses and stores each body before it answers, on the same
                  2 cores: its CPU is the "server cpu" column
    import-sink   the same import to benchmarks/sink_server.py, which discards bodies:
                  the client's cost alone
    calamine      a bare python-calamine read of the XLSX sheet
    dry-run-xlsx  shandy import --dry-run --sandbox of the XLSX
    calamine-typed, dry-run-typed
                  the same for an XLSX whose phone numbers are numbers (not a
                  text-only sheet: shandy reads it row by row; no target)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
PY = sys.executable
MB = 1024 * 1024


@dataclass
class Contender:
    name: str
    kind: str  # "csv" | "xlsx": which data file, which baseline
    argv: Callable[[Path, Path], list[str]]  # (data file, scratch dir) -> command
    server: str | None = None  # "sandbox" | "sink"
    target: float | None = None  # ratio to the baseline the issue asks for
    ok_codes: tuple[int, ...] = (0,)


def _shandy(*extra: str) -> Callable[[Path, Path], list[str]]:
    def argv(data: Path, tmp: Path) -> list[str]:
        return [
            PY, "-m", "shandy_cli", "-q", "import", str(data), "--step", "StepA1",
            "--state-dir", str(tmp / "state"), "--rejects", str(tmp / "rejects.csv"),
            "--json", *extra,
        ]  # fmt: skip

    return argv


def _script(script: str, *args: str) -> Callable[[Path, Path], list[str]]:
    def argv(data: Path, tmp: Path) -> list[str]:
        return [PY, str(HERE / script), *args, str(data)]

    return argv


SHANDY_OK = (0, 1)  # 1: some rows rejected, as the generator plants on purpose
CONTENDERS = [
    Contender("floor", "csv", _script("baselines.py", "floor")),
    Contender("pandas", "csv", _script("baselines.py", "pandas")),
    Contender("polars", "csv", _script("baselines.py", "polars")),
    Contender("dry-run", "csv", _shandy("--dry-run", "--sandbox"), None, 1.0, SHANDY_OK),
    Contender("import", "csv", _shandy("--no-wait"), "sandbox", 1.25, SHANDY_OK),
    Contender("import-sink", "csv", _shandy("--no-wait"), "sink", 1.25, SHANDY_OK),
    Contender("calamine", "xlsx", _script("baselines.py", "calamine")),
    Contender("dry-run-xlsx", "xlsx", _shandy("--dry-run", "--sandbox"), None, 1.5, SHANDY_OK),
    Contender("calamine-typed", "xlsx-typed", _script("baselines.py", "calamine")),
    Contender(
        "dry-run-typed", "xlsx-typed", _shandy("--dry-run", "--sandbox"), None, None, SHANDY_OK
    ),
]
BASELINE = {"csv": "floor", "xlsx": "calamine", "xlsx-typed": "calamine-typed"}
RSS_TARGET_MB = 200


@dataclass
class Sample:
    seconds: float
    cpu: float
    rss_mb: float
    server_cpu: float | None = None
    summary: dict[str, object] | None = None
    other_cpu: float = 0.0  # CPU seconds other processes used meanwhile (noise)


@dataclass
class Result:
    contender: Contender
    samples: list[Sample] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)


# ---------------------------------------------------------------- data


def ensure_data(kind: str, rows: int, data_dir: Path) -> Path:
    if kind == "xlsx-typed":
        path, argv = data_dir / f"typed-{rows}.xlsx", ["xlsx", "--typed"]
    else:
        path, argv = data_dir / f"leads-{rows}.{kind}", [kind]
    if not path.exists():
        print(f"generating {path} ...", file=sys.stderr, flush=True)
        subprocess.run(
            [PY, str(HERE / "generate.py"), *argv, "--rows", str(rows), "--out", str(path)],
            check=True,
        )
    with path.open("rb") as f:  # into the page cache, so run 1 is not the only cold one
        while f.read(1 << 24):
            pass
    return path


# ---------------------------------------------------------------- servers


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_listening(port: int, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before listening")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise RuntimeError(f"server not listening on {port} after {timeout:.0f}s")


@contextlib.contextmanager
def server(kind: str, tmp: Path, env: dict[str, str]) -> Iterator[tuple[str, Callable[[], float]]]:
    """Start a fresh server; yield its base URL and a function giving its CPU seconds so far."""
    import psutil

    port = _free_port()
    if kind == "sandbox":
        argv = [PY, "-m", "shandy_cli", "sandbox", "--port", str(port), "--delay", "0",
                "--state-dir", str(tmp / "sandbox-state")]  # fmt: skip
    else:
        argv = [PY, str(HERE / "sink_server.py"), "--port", str(port)]
    log = (tmp / f"{kind}.log").open("wb")
    proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=tmp)
    try:
        _wait_listening(port, proc)
        ps = psutil.Process(proc.pid)

        def cpu() -> float:
            t = ps.cpu_times()
            return t.user + t.system

        yield f"http://127.0.0.1:{port}", cpu
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


# ---------------------------------------------------------------- running


def run_child(
    argv: list[str], env: dict[str, str], cwd: Path, timeout: float
) -> tuple[int, float, float, float, bytes, bytes]:
    """Run one child; (exit code, wall s, cpu s, peak RSS MB, stdout, stderr)."""
    out_path, err_path = cwd / "stdout", cwd / "stderr"
    with out_path.open("wb") as out, err_path.open("wb") as err:
        started = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=out, stderr=err, env=env, cwd=cwd)
        timer = threading.Timer(timeout, proc.kill)
        timer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)  # this child's own rusage
        finally:
            timer.cancel()
        seconds = time.perf_counter() - started
    proc.returncode = code = os.waitstatus_to_exitcode(status)
    cpu = usage.ru_utime + usage.ru_stime
    rss_mb = usage.ru_maxrss / 1024  # KiB on Linux
    return code, seconds, cpu, rss_mb, out_path.read_bytes(), err_path.read_bytes()


def _summary(stdout: bytes) -> dict[str, object] | None:
    try:
        data = json.loads(stdout)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    keys = ("rows_read", "rows_submitted", "rows_rejected", "error")
    summary: dict[str, object] = {k: data.get(k) for k in keys}
    chunks = data.get("chunks") or []
    summary["chunks"] = len(chunks)
    summary["bytes"] = sum(int(c.get("bytes", 0)) for c in chunks)
    return summary


def measure(
    contender: Contender, data: Path, base_env: dict[str, str], timeout: float, keep: bool
) -> Sample:
    tmp = Path(tempfile.mkdtemp(prefix=f"bench-{contender.name}-"))
    try:
        env = dict(base_env)
        with contextlib.ExitStack() as stack:
            server_cpu: Callable[[], float] | None = None
            if contender.server:
                url, server_cpu = stack.enter_context(server(contender.server, tmp, base_env))
                env["SALESHANDY_BASE_URL"] = url
                env["SALESHANDY_API_KEY"] = "bench"
            before = server_cpu() if server_cpu else 0.0
            busy = busy_seconds()
            code, seconds, cpu, rss, out, err = run_child(
                contender.argv(data, tmp), env, tmp, timeout
            )
            busy = busy_seconds() - busy
            spent = server_cpu() - before if server_cpu else None
        summary = _summary(out)
        if contender.ok_codes == SHANDY_OK and (summary is None or summary.get("error")):
            code = -1  # a run that prints no result, or reports an error, failed (even exit 1)
        if code not in contender.ok_codes:
            tail = (err or out).decode(errors="replace").strip().splitlines()[-5:]
            raise RuntimeError(f"exit {code}: " + " | ".join(tail))
        other = max(0.0, busy - cpu - (spent or 0.0))
        return Sample(seconds, cpu, rss, spent, summary, other)
    finally:
        if keep:
            print(f"  kept {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
        # The chunk spools are hundreds of MB: flush them now, so their writeback
        # does not slow the next contender down.
        os.sync()


def busy_seconds() -> float:
    """CPU seconds the whole machine has spent busy (all processes), from /proc/stat."""
    try:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return 0.0
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def git_state() -> str:
    """The commit measured, and whether the working tree differs from it."""
    try:
        head = subprocess.run(
            ["git", "-C", str(HERE.parent), "rev-parse", "--short", "HEAD"],
            capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip
        dirty = subprocess.run(
            ["git", "-C", str(HERE.parent), "status", "--porcelain", "--", "shandy_cli"],
            capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        return "unknown commit"
    return f"{head}{' + uncommitted changes in shandy_cli/' if dirty else ''}"


def clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SALESHANDY_", "SHANDY_"))}
    env["NO_COLOR"] = "1"
    env["PYTHONPATH"] = str(HERE.parent) + os.pathsep + env.get("PYTHONPATH", "")
    return env


# ---------------------------------------------------------------- report


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def report(results: dict[str, Result]) -> list[dict[str, object]]:
    medians = {
        name: statistics.median(s.seconds for s in r.samples)
        for name, r in results.items()
        if r.samples
    }
    head = (
        f"{'contender':<14} {'median s':>9} {'min s':>7} {'ratio':>6} {'vs':<9} {'target':>6} "
        f"{'cpu s':>6} {'peak RSS MB':>11} {'server cpu s':>12} {'noise':>5} {'runs':>4} verdict"
    )
    print(head)
    print("-" * len(head))
    rows: list[dict[str, object]] = []
    for name, r in results.items():
        c = r.contender
        base = BASELINE[c.kind]
        if not r.samples:
            print(f"{name:<14} FAILED: {r.failures[0] if r.failures else '?'}")
            rows.append({"name": name, "error": r.failures})
            continue
        med = medians[name]
        ratio = med / medians[base] if base in medians and name != base else None
        rss = max(s.rss_mb for s in r.samples)
        cpu = statistics.median(s.cpu for s in r.samples)
        scpu = [s.server_cpu for s in r.samples if s.server_cpu is not None]
        noise = statistics.median(s.other_cpu / s.seconds for s in r.samples)
        server = statistics.median(scpu) if scpu else None
        mark = ""
        if c.target is not None and ratio is not None:
            mark = "ok" if ratio <= c.target else "MISS"
            if c.kind == "csv" and rss > RSS_TARGET_MB:
                mark += "/RSS"
        target = f"{c.target:.2f}" if c.target else ""
        print(
            f"{name:<14} {med:>9.2f} {min(s.seconds for s in r.samples):>7.2f} "
            f"{_fmt(ratio, '.2f'):>6} {base if ratio else '':<9} {target:>6} {cpu:>6.1f} "
            f"{rss:>11.0f} {_fmt(server, '.1f'):>12} {noise:>5.0%} {len(r.samples):>4} {mark}"
        )
        rows.append(
            {
                "name": name,
                "median_s": med,
                "ratio": ratio,
                "baseline": base,
                "cpu_s": cpu,
                "peak_rss_mb": rss,
                "server_cpu_s": server,
                "runs": [s.seconds for s in r.samples],
                "noise": noise,
                "summary": r.samples[-1].summary,
                "failures": r.failures,
            }
        )
    print(
        "ratio: median / the baseline's median (floor for CSV, calamine for XLSX); "
        "peak RSS: the highest of the runs; noise: CPU other processes used during a run, "
        "as a share of its wall time (2 cores: up to 200%)"
    )
    summaries = {n: r.samples[-1].summary for n, r in results.items() if r.samples}
    counts = {
        n: (s.get("rows_read"), s.get("rows_submitted"), s.get("rows_rejected"), s.get("bytes"))
        for n, s in summaries.items()
        if s and results[n].contender.kind == "csv"
    }
    for name, summary in summaries.items():
        if summary:
            print(f"  {name}: {summary}")
    if len(set(counts.values())) > 1:
        print("  WARNING: the CSV contenders disagree on rows or bytes (see above)")
    noisy = [n for n, r in results.items() if any(s.other_cpu > 0.1 * s.seconds for s in r.samples)]
    if noisy:
        print(f"  WARNING: other processes were busy during runs of {', '.join(noisy)}")
    return rows


def main(argv: list[str] | None = None) -> int:
    names = [c.name for c in CONTENDERS]
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="contenders: " + ", ".join(names),
    )
    parser.add_argument("--rows", type=int, default=1_000_000, help="CSV rows (default 1M)")
    parser.add_argument("--xlsx-rows", type=int, default=100_000, help="XLSX rows (default 100k)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per contender (default 3)")
    parser.add_argument(
        "--only", action="append", default=[], help="contender(s) to run, repeatable or a,b"
    )
    parser.add_argument("--skip", action="append", default=[], help="contender(s) to leave out")
    parser.add_argument("--data-dir", type=Path, default=Path(tempfile.gettempdir()) / "bench")
    parser.add_argument("--timeout", type=float, default=600, help="seconds per child run")
    parser.add_argument("--keep", action="store_true", help="keep each run's scratch dir")
    parser.add_argument("--json-out", type=Path, help="also write the results as JSON")
    args = parser.parse_args(argv)

    wanted = [n for item in args.only for n in item.split(",") if n] or names
    skipped = {n for item in args.skip for n in item.split(",") if n}
    unknown = sorted((set(wanted) | skipped) - set(names))
    if unknown:
        parser.error(f"unknown contender(s) {', '.join(unknown)}; choose from {', '.join(names)}")
    chosen = [c for c in CONTENDERS if c.name in wanted and c.name not in skipped]
    kinds = {c.kind for c in chosen}
    # The baselines always come along: a ratio needs its denominator from the same run.
    chosen = [c for c in CONTENDERS if c in chosen or c.name in {BASELINE[k] for k in kinds}]

    args.data_dir.mkdir(parents=True, exist_ok=True)
    data = {k: ensure_data(k, args.rows if k == "csv" else args.xlsx_rows, args.data_dir)
            for k in sorted(kinds)}  # fmt: skip
    env = clean_env()
    results = {c.name: Result(c) for c in chosen}
    print(
        f"{len(chosen)} contenders x {args.repeat} runs; csv {args.rows:,} rows, "
        f"xlsx {args.xlsx_rows:,} rows; {os.cpu_count()} cpus",
        file=sys.stderr,
    )
    for round_no in range(args.repeat):
        shift = round_no % len(chosen)
        for c in chosen[shift:] + chosen[:shift]:
            try:
                sample = measure(c, data[c.kind], env, args.timeout, args.keep)
            except Exception as exc:
                results[c.name].failures.append(str(exc))
                print(f"  round {round_no + 1} {c.name}: FAILED {exc}", file=sys.stderr)
                continue
            results[c.name].samples.append(sample)
            extra = f", server {sample.server_cpu:.1f}s cpu" if sample.server_cpu else ""
            if sample.other_cpu > 0.1 * sample.seconds:
                extra += f", NOISE: other processes used {sample.other_cpu:.1f} cpu-s"
            print(
                f"  round {round_no + 1} {c.name}: {sample.seconds:.2f}s, "
                f"{sample.rss_mb:.0f} MB{extra}",
                file=sys.stderr,
                flush=True,
            )
    print(f"shandy at {git_state()}; python {sys.version.split()[0]}")
    rows = report(results)
    if args.json_out:
        args.json_out.write_text(json.dumps(rows, indent=2))
    return 0 if all(r.samples for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
