"""Edge cases for the columnar prototype: each must match prepare() byte for byte.

    python benchmarks/check_prototype.py            # all cases, ~1 min
    python benchmarks/check_prototype.py --keep     # keep the files in /tmp

Every case writes a small CSV, runs ``prototype_fast.prepare_fast`` and the real
per-row ``prepare()`` on it, and compares chunk bodies, keys, digests, the sent
index, the rejects file and the counts.  It also prints whether the fast path
ran to the end or handed over to the per-row path (and why).
"""

from __future__ import annotations

import argparse
import csv
import io
import random
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import prototype_fast as pf

from shandy_cli.sandbox.seed import CUSTOM_FIELDS, SYSTEM_FIELDS

LABELS = [label for _, label in SYSTEM_FIELDS] + [label for _, label, _ in CUSTOM_FIELDS]
HEADER = ["First Name", "Last Name", "Email", "Company", "Lead Source"]


def rows(n: int, seed: int = 1) -> list[list[str]]:
    rng = random.Random(seed)
    notes = ['say "hi"', "a,b", "tab\there", "back\\slash", "line\nbreak", "  padded  ", "é🙂"]
    out = []
    for i in range(n):
        email = f"user{i}@example.test"
        roll = rng.random()
        if roll < 0.03:
            email = rng.choice(["bad", "a@b", " ", "x y@z.test", "ü@exämple.test", "a_b@c_d.test"])
        elif roll < 0.06 and i:
            email = f"  USER{rng.randrange(i)}@Example.TEST "
        out.append(
            [f"Ann{i}", rng.choice(["", "Lee", " Ng "]), email, rng.choice(["", "Acme, Inc."]),
             rng.choice(notes) if rng.random() < 0.5 else ""]
        )  # fmt: skip
    return out


def write(path: Path, header: list[str], data: list[list[str]], **dialect: object) -> None:
    text = io.StringIO()
    csv.writer(text, **dialect).writerows([header, *data])  # type: ignore[arg-type]
    path.write_bytes(text.getvalue().encode(str(dialect.pop("encoding", "utf-8"))))


def cases(tmp: Path) -> list[tuple[str, Path, dict[str, object]]]:
    base = rows(6000)
    out: list[tuple[str, Path, dict[str, object]]] = []

    def add(name: str, raw: bytes | None = None, options: dict[str, object] | None = None,
            **dialect: object) -> None:  # fmt: skip
        path = tmp / f"{name}.csv"
        if raw is None:
            write(path, HEADER, base, **dialect)
        else:
            path.write_bytes(raw)
        out.append((name, path, options or {}))

    add("crlf", lineterminator="\r\n")
    add("lf", lineterminator="\n")
    add("semicolon", delimiter=";", lineterminator="\n")
    add("tab", delimiter="\t", lineterminator="\n")
    add("quote-all", quoting=csv.QUOTE_ALL, lineterminator="\n")
    add("small-chunks", options={"max_rows": 700}, lineterminator="\n")
    add("byte-limit", options={"max_bytes": 50_000}, lineterminator="\n")
    add("set-constant", options={"constants": {"Industry": 'Retail "EU"'}}, lineterminator="\n")
    add("set-mapped", options={"constants": {"Company": "Fixed"}}, lineterminator="\n")
    add("map-explicit", options={"column_map": {"Lead Source": "Industry"}}, lineterminator="\n")
    good = (tmp / "lf.csv").read_bytes()
    add("bom", b"\xef\xbb\xbf" + good)
    add("blank-lines", good.replace(b"\n", b"\n\n", 40).replace(b"\n\n", b"\n,,,,\n", 10))
    add("no-final-newline", good.rstrip(b"\n"))
    half = len(good) // 2
    cut = good.index(b"\n", half) + 1
    add("stray-quote-mid", good[:cut] + b'Bo,"Smith"x,b@example.test,,\n' + good[cut:])
    add("ragged-long-mid", good[:cut] + b"Bo,Li,c@example.test,,,extra\n" + good[cut:])
    add("ragged-short", good[:cut] + b"Bo,Li,d@example.test\n" + good[cut:])
    add("lone-cr", good[:cut] + b"Bo,Li\r,e@example.test,,\n" + good[cut:])
    add("cp1252", good.decode().replace("🙂", "").encode("cp1252"))
    add("bad-utf8-mid", good[:cut] + b"Bo,\xff\xfe,f@example.test,,\n" + good[cut:])
    add("control-chars", good[:cut] + b"Bo,\x01\x02,g@example.test,,\x1f\n" + good[cut:])
    add("whitespace-line", good[:cut] + b"   \n" + good[cut:])
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    pf.BLOCK = 1 << 16  # several blocks per file: exercises hand-over in mid-file
    tmp = Path(tempfile.mkdtemp(prefix="proto-cases-"))
    failed = []
    try:
        for name, path, options in cases(tmp):
            out = tmp / f"{name}.out"
            try:
                totals, chunks, _ = pf.prepare_fast(str(path), out, LABELS, **options)  # type: ignore[arg-type]
            except Exception as exc:
                print(f"{name:18s} prototype raised {type(exc).__name__}: {exc}")
                failed.append(name)
                continue
            ok = pf.verify(str(path), out, LABELS, totals, chunks, options)
            how = f"fallback: {totals.fallback}" if totals.fallback else "fast path to the end"
            print(f"{name:18s} {'IDENTICAL' if ok else 'MISMATCH '}  {how}", flush=True)
            if not ok:
                failed.append(name)
    finally:
        if args.keep:
            print(f"files in {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    print("all identical" if not failed else f"FAILED: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
