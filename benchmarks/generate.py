"""Deterministic lead files for the benchmarks.

    python benchmarks/generate.py csv --rows 1000000 --out /tmp/bench/leads-1m.csv
    python benchmarks/generate.py xlsx --rows 100000 --out /tmp/bench/leads-100k.xlsx
    python benchmarks/generate.py xlsx --typed --rows 100000 --out /tmp/bench/typed-100k.xlsx

Ten columns, all matching field labels the sandbox has (the tenth, ``Lead
Source``, is one of its custom fields) so nothing is dropped by the mapping:

    First Name, Last Name, Email, Company, Job Title, Phone Number, Website,
    City, Country, Lead Source

``Lead Source`` holds 0-80 characters of notes: commas, double quotes and
accents (so the CSV quotes them), and with ``--newline-rate`` an embedded
newline.  About 1% of emails are invalid, about 1% repeat an earlier address
in different letter case (sometimes padded with spaces), a few values carry
surrounding spaces (trimmed by the importer) and some optional cells are empty.
The 1M-row CSV is ~180 MB with CRLF line ends, as Excel writes them.

The same ``--seed`` and ``--rows`` always give byte-identical output.
"""

from __future__ import annotations

import argparse
import csv
import random
import sys
from collections.abc import Iterator
from pathlib import Path

COLUMNS = [
    "First Name",
    "Last Name",
    "Email",
    "Company",
    "Job Title",
    "Phone Number",
    "Website",
    "City",
    "Country",
    "Lead Source",
]
SEED = 20240611
INVALID_RATE = 0.01
DUPLICATE_RATE = 0.01
PAD_RATE = 0.02  # values with surrounding spaces
RECENT = 50_000  # duplicates repeat one of the last RECENT valid addresses

FIRST = [
    "Ana", "Ben", "Chloé", "David", "Elif", "Farah", "George", "Hana", "Ivan", "José",
    "Julia", "Kenji", "Lena", "Marcus", "Nadia", "Olga", "Pedro", "Priya", "Quinn", "Rafael",
    "Sofia", "Tomás", "Uma", "Viktor", "Wei", "Xavier", "Yara", "Zoë", "Anaïs", "Søren",
    "Émile", "Björn", "Dvořák", "Ingrid", "Małgorzata", "Nuño", "Oğuz", "Saoirse",
]  # fmt: skip
LAST = [
    "Andersen", "Brown", "Čapek", "Dubois", "Evans", "Fernández", "García", "Hoffmann",
    "Ito", "Jensen", "Kowalski", "López", "Müller", "Nakamura", "O'Brien", "Patel",
    "Quint", "Rossi", "Schröder", "Tanaka", "Urban", "Van der Berg", "Wójcik", "Young",
    "Åberg", "Nguyễn", "Żółć", "Ó Súilleabháin", "Al-Hassan", "de la Cruz",
]  # fmt: skip
COMPANIES = [
    ("Northwind Traders", "northwind"),
    ("Smith, Jones & Partners", "smithjones"),
    ('The "Best" Widgets Co.', "bestwidgets"),
    ("Blue Harbor Logistics", "blueharbor"),
    ("Müller & Söhne GmbH", "mueller-soehne"),
    ("Acme Corp.", "acme"),
    ("Globex, Inc.", "globex"),
    ("Initech", "initech"),
    ("Fábrica Nova Ltda.", "fabricanova"),
    ("Zephyr Analytics", "zephyr"),
    ("Kite & Key Studio", "kiteandkey"),
    ("Łąka Software", "laka"),
    ("Umbrella Holdings, LLC", "umbrella"),
    ("Société Générale d'Exemple", "sge"),
]
TLDS = ["example", "test"]  # reserved top-level names (RFC 2606): no real address
TITLES = [
    "Head of Sales", "VP, Marketing", "Account Executive", "CTO", "Founder & CEO",
    "Operations Manager", "Growth Lead", "Procurement Specialist", "Director of IT",
    'Chief "Everything" Officer', "Sales Development Rep", "Product Manager",
    "Directeur Général", "Geschäftsführer", "Engineer",
]  # fmt: skip
PLACES = [
    ("Lisbon", "Portugal"), ("Łódź", "Poland"), ("München", "Germany"), ("Zürich", "Switzerland"),
    ("São Paulo", "Brazil"), ("Montréal", "Canada"), ("Austin", "United States"),
    ("Kraków", "Poland"), ("Málaga", "Spain"), ("Osaka", "Japan"), ("Dublin", "Ireland"),
    ("Reykjavík", "Iceland"), ("Cork", "Ireland"), ("Toronto", "Canada"), ("", ""),
]  # fmt: skip
NOTE_WORDS = [
    "met", "at", "the", "webinar,", "asked", "about", "pricing", "follow", "up", "in", "Q3",
    '"hot"', "lead", "café", "meeting", "—", "résumé", "sent;", "budget:", "$10k", "naïve",
    "re:", "demo", "(maybe)", "said", '"call me later"', "Zürich", "office,", "100%", "🙂",
    "tab\tinside", "back\\slash", "déjà", "vu", "CEO's", "pick", "OK", "über", "ça", "va",
]  # fmt: skip
INVALID = [
    "{l}@",
    "{l}.{d}",
    "{l} x@{d}",
    "{l}@@{d}",
    "{l}@localhost",
    "{l}@{d}.",
    "<{l}@{d}>",
    "{l}@{d}, other@{d}",
    "{l}@exa_mple.com",
    "",
]
_ASCII = str.maketrans(
    "áàâãäåçčéèêëíìîïñóòôõöøśúùûüýźżłąęćńšžřğễÁČÉÍÓÖØŚÚÜŁÅŻ",
    "aaaaaacceeeeiiiinoooooosuuuuyzzlaecnszrgeACEIOOOSUULAZ",
)


def _ascii(text: str) -> str:
    return "".join(ch for ch in text.translate(_ASCII).lower() if ch.isascii() and ch.isalnum())


def _note(rng: random.Random, newline_rate: float) -> str:
    limit = rng.randint(0, 80)
    words: list[str] = []
    size = 0
    while True:
        word = rng.choice(NOTE_WORDS)
        if size + len(word) + (1 if words else 0) > limit:
            break
        size += len(word) + (1 if words else 0)
        words.append(word)
    note = " ".join(words)
    if note and rng.random() < newline_rate:
        cut = rng.randint(0, len(note))
        note = note[:cut] + "\n" + note[cut:]
    return note


def _pad(value: str, rng: random.Random) -> str:
    return f"  {value} " if value and rng.random() < PAD_RATE else value


def rows(count: int, seed: int = SEED, newline_rate: float = 0.0) -> Iterator[list[str]]:
    """``count`` data rows, deterministically from ``seed``."""
    rng = random.Random(seed)
    recent: list[str] = []
    for i in range(count):
        first, last = rng.choice(FIRST), rng.choice(LAST)
        company, slug = rng.choice(COMPANIES)
        domain = f"{slug}.{rng.choice(TLDS)}"
        local = f"{_ascii(first)}.{_ascii(last)}{i}"
        roll = rng.random()
        if roll < INVALID_RATE:
            email = rng.choice(INVALID).format(l=local, d=domain)
        elif roll < INVALID_RATE + DUPLICATE_RATE and recent:
            email = rng.choice(recent)
            email = email.upper() if rng.random() < 0.5 else f" {email.capitalize()}"
        else:
            email = f"{local}@{domain}"
            if rng.random() < 0.1:
                email = email.capitalize()
            if len(recent) < RECENT:
                recent.append(email)
            else:
                recent[i % RECENT] = email
        city, country = rng.choice(PLACES)
        phone = f"+1 {rng.randint(200, 999)} 555 {rng.randint(0, 9999):04d}"
        yield [
            _pad(first, rng),
            _pad(last, rng),
            email,
            _pad(company, rng),
            rng.choice(TITLES),
            phone if rng.random() < 0.85 else "",
            f"https://{domain}" if rng.random() < 0.9 else "",
            city,
            country,
            _note(rng, newline_rate),
        ]


def write_csv(path: Path, count: int, seed: int, newline_rate: float) -> None:
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, lineterminator="\r\n")
        writer.writerow(COLUMNS)
        batch: list[list[str]] = []
        for row in rows(count, seed, newline_rate):
            batch.append(row)
            if len(batch) == 10_000:
                writer.writerows(batch)
                batch.clear()
        writer.writerows(batch)


def write_xlsx(path: Path, count: int, seed: int, newline_rate: float, typed: bool = False) -> None:
    from openpyxl import Workbook

    wb = Workbook(write_only=True)
    ws = wb.create_sheet("Leads")
    ws.append(COLUMNS)
    phone = COLUMNS.index("Phone Number")
    for row in rows(count, seed, newline_rate):
        if typed and row[phone]:  # digits only, stored as a number, as many CRMs export them
            row[phone] = int("".join(ch for ch in row[phone] if ch.isdigit()))
        ws.append(row)
    wb.save(path)


def format_args(doc: str) -> argparse.Namespace:
    """``--rows``, ``--repeat`` and ``--dir`` (where the generated leads are kept): what the
    benchmarks of one input format against another take, with one set of defaults."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--dir", type=Path, default=Path("/tmp/bench"))
    return parser.parse_args()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("kind", choices=["csv", "xlsx"])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument(
        "--newline-rate",
        type=float,
        default=0.0,
        help="share of notes holding an embedded newline (default 0)",
    )
    parser.add_argument(
        "--typed",
        action="store_true",
        help="xlsx: phone numbers as numbers, not text (a sheet that is not text-only)",
    )
    args = parser.parse_args(argv)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(args.out.name + ".part")
    if args.kind == "csv":
        write_csv(tmp, args.rows, args.seed, args.newline_rate)
    else:
        write_xlsx(tmp, args.rows, args.seed, args.newline_rate, args.typed)
    tmp.replace(args.out)  # a half-written file never passes for a finished one
    size = args.out.stat().st_size
    print(f"wrote {args.rows:,} rows, {size / 1e6:.1f} MB to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
