"""How long shandy takes to answer, against what Python itself takes (issue 16, item 5).

    python benchmarks/startup.py               # 30 runs of each, medians
    python benchmarks/startup.py --runs 100 --json

Each case is a fresh process, as a user's shell starts it (the ``shandy`` console
script next to this interpreter, or ``python -m shandy_cli`` when there is none):

    --version     against bare start-up, ``python -c pass``
    --help        against ``python -c "import typer, rich"``
    status ID     against ``python -c "import typer, rich, httpx; httpx.Client()"``
                  (it must talk HTTP: the client loads httpcore and an SSL context with
                  the CA bundle, ~75 ms, which a bare ``import httpx`` does not), with a
                  real request id from a sandbox on loopback started here; the bare
                  import is printed too, as before

The cases are run round-robin (one of each, then again), so a slow moment of the
machine falls on all of them alike, and the medians are compared within this run.
Printed: each median, its ratio to its baseline, and the difference in milliseconds.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from shandy_cli.sandbox import Sandbox

PY = sys.executable
CLIENT = "import typer, rich, httpx; httpx.Client()"


def shandy_command() -> list[str]:
    """The console script beside this interpreter: what `shandy` runs in its venv."""
    script = Path(PY).with_name("shandy")
    if script.exists():
        return [str(script)]
    found = shutil.which("shandy")
    return [found] if found else [PY, "-m", "shandy_cli"]


def request_id_from_sandbox(work: Path) -> tuple[Sandbox, str]:
    """Start a sandbox and import one row through it: the sandbox and the request id."""
    from shandy_cli import import_files
    from shandy_cli.sandbox import SandboxConfig, start_sandbox

    # No server-side rate limits: the runs would otherwise wait out the 20 calls a minute.
    config = SandboxConfig(
        state_dir=work / "sandbox",
        delay_base=0.0,
        delay_per_row=0.0,
        rate_per_endpoint=None,
        rate_total=None,
    )
    sandbox = start_sandbox(config)
    (work / "a.csv").write_text("email,first_name\na@example.com,Ann\n", encoding="utf-8")
    result = import_files(
        [work / "a.csv"],
        api_key="bench-key",
        base_url=sandbox.url,
        step_id="StepA1",
        state_dir=work / "state",
        poll_interval=0.05,
    )
    return sandbox, result.request_ids[0]


def time_once(argv: list[str], env: dict[str, str], cwd: Path) -> float:
    start = time.perf_counter()
    done = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, timeout=60)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} exited {done.returncode}: {done.stderr.decode()}")
    return elapsed


def cases(url: str, request_id: str) -> dict[str, list[str]]:
    shandy = shandy_command()
    return {
        "python -c pass": [PY, "-c", "pass"],
        "import typer, rich": [PY, "-c", "import typer, rich"],
        "import typer, rich, httpx": [PY, "-c", "import typer, rich, httpx"],
        CLIENT: [PY, "-c", CLIENT],
        "shandy --version": [*shandy, "--version"],
        "shandy --help": [*shandy, "--help"],
        "shandy status ID": [*shandy, "status", request_id],
    }


# Each shandy case and the baseline it is measured against.
AGAINST = {
    "shandy --version": "python -c pass",
    "shandy --help": "import typer, rich",
    "shandy status ID": CLIENT,
}
# The same case against a second baseline: the one this benchmark first used.
ALSO = {"shandy status ID": "import typer, rich, httpx"}


def measure(runs: int, work: Path) -> dict[str, float]:
    sandbox, request_id = request_id_from_sandbox(work)
    try:
        return measure_against(sandbox.url, request_id, runs, work)
    finally:
        sandbox.stop()


def measure_against(url: str, request_id: str, runs: int, work: Path) -> dict[str, float]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SHANDY_", "SALESHANDY_"))}
    # pip writes bytecode when it installs a package; an editable checkout under
    # PYTHONDONTWRITEBYTECODE would compile every shandy module on every run (~80 ms)
    # and measure the compiler, not the start-up a user sees. Round 0 writes it.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.update(SALESHANDY_API_KEY="bench-key", SALESHANDY_BASE_URL=url)
    todo = cases(url, request_id)
    times: dict[str, list[float]] = {name: [] for name in todo}
    for n in range(runs + 1):  # round 0 warms the bytecode and page caches, and is dropped
        # a fresh state dir each round: the client's own call budget (kept there, shared
        # by processes) would otherwise pace the status calls at 20 a minute
        env["SHANDY_STATE_DIR"] = str(work / f"state-{n}")
        for name, argv in todo.items():
            elapsed = time_once(argv, env, work)
            if n:
                times[name].append(elapsed)
    return {name: statistics.median(values) for name, values in times.items()}


def report(medians: dict[str, float]) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    pairs = [*AGAINST.items(), *ALSO.items()]
    for case, baseline in pairs:
        ms, base = medians[case] * 1000, medians[baseline] * 1000
        rows.append(
            {
                "case": case,
                "median_ms": round(ms, 1),
                "baseline": baseline,
                "baseline_ms": round(base, 1),
                "ratio": round(ms / base, 2),
                "over_ms": round(ms - base, 1),
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30, help="runs of each case (median)")
    parser.add_argument("--json", action="store_true", help="one JSON document on stdout")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="shandy-startup-") as tmp:
        medians = measure(args.runs, Path(tmp))
    rows = report(medians)
    if args.json:
        print(json.dumps({"runs": args.runs, "python": sys.version.split()[0], "cases": rows}))
        return
    print(f"{args.runs} runs each, medians, Python {sys.version.split()[0]}")
    print(f"{'case':<18} {'median':>9}  {'baseline':<43} {'median':>9} {'ratio':>6} {'over':>9}")
    for row in rows:
        print(
            f"{row['case']:<18} {row['median_ms']:>7.1f}ms  {row['baseline']:<43} "
            f"{row['baseline_ms']:>7.1f}ms {row['ratio']:>6.2f} {row['over_ms']:>+7.1f}ms"
        )


if __name__ == "__main__":
    main()
