"""Generate examples/leads.csv: 200 fictional leads, deterministically.

    python examples/make_leads.py

Every person and company is invented and every address uses the reserved
example.com / example.org / example.net domains. The file is deliberately awkward
but legal, to exercise the importer: quoted commas and quotes, accented names and
cities, one value with an embedded newline, 4 invalid emails, and 4 emails that
repeat earlier ones in different letter case.
"""

from __future__ import annotations

import csv
import random
from pathlib import Path

COLUMNS = [
    "First Name",
    "Last Name",
    "Email",
    "Company",
    "Job Title",
    "Phone",
    "Website",
    "City",
    "Country",
    "Lead Source",
]
ROWS = 200
SEED = 20240611

FIRST = [
    "Ana", "Ben", "Chloé", "David", "Elif", "Farah", "George", "Hana", "Ivan", "José",
    "Julia", "Kenji", "Lena", "Marcus", "Nadia", "Olga", "Pedro", "Priya", "Quinn", "Rafael",
    "Sofia", "Tomás", "Uma", "Viktor", "Wei", "Xavier", "Yara", "Zoë", "Anaïs", "Søren",
]  # fmt: skip
LAST = [
    "Andersen", "Brown", "Čapek", "Dubois", "Evans", "Fernández", "García", "Hoffmann",
    "Ito", "Jensen", "Kowalski", "López", "Müller", "Nakamura", "O'Brien", "Patel",
    "Quint", "Rossi", "Schröder", "Tanaka", "Urban", "Van der Berg", "Wójcik", "Young",
]  # fmt: skip
COMPANIES = [
    ("Northwind Traders", "northwind.example.com"),
    ("Smith, Jones & Partners", "smithjones.example.org"),
    ('The "Best" Widgets Co.', "bestwidgets.example.com"),
    ("Blue Harbor Logistics", "blueharbor.example.net"),
    ("Müller & Söhne GmbH", "mueller-soehne.example.com"),
    ("Acme Corp.", "acme.example.com"),
    ("Globex, Inc.", "globex.example.com"),
    ("Initech", "initech.example.org"),
    ("Fábrica Nova Ltda.", "fabricanova.example.com"),
    ("Zephyr Analytics", "zephyr.example.net"),
    ("Kite & Key Studio", "kiteandkey.example.org"),
    ("Łąka Software", "laka.example.com"),
]
TITLES = [
    "Head of Sales", "VP, Marketing", "Account Executive", "CTO", "Founder & CEO",
    "Operations Manager", "Growth Lead", "Procurement Specialist", "Director of IT",
    'Chief "Everything" Officer', "Sales Development Rep", "Product Manager",
]  # fmt: skip
PLACES = [
    ("Lisbon", "Portugal"), ("Łódź", "Poland"), ("München", "Germany"), ("Zürich", "Switzerland"),
    ("São Paulo", "Brazil"), ("Montréal", "Canada"), ("Austin", "United States"),
    ("Kraków", "Poland"), ("Málaga", "Spain"), ("Osaka", "Japan"), ("Dublin", "Ireland"),
    ("Reykjavík", "Iceland"), ("Cork", "Ireland"), ("Toronto", "Canada"),
]  # fmt: skip
SOURCES = ["Webinar", "Trade show", "Referral", "Website", "LinkedIn", "Cold outreach"]

INVALID_EMAILS = {
    17: "maria.lopez@",
    58: "no-at-sign.example.com",
    101: "kim lee@example.org",
    163: "sam@@example.net",
}
DUPLICATE_OF = {44: 3, 90: 12, 131: 77, 188: 150}  # row index -> earlier row whose email it repeats
MULTILINE_ROW = 25  # its Company holds a newline (legal inside a quoted CSV field)

_ASCII = str.maketrans(
    "áàâãäåçčéèêëíìîïñóòôõöøśúùûüýźżłąęćńšžÁČÉÍÓÖØŚÚÜŁ",
    "aaaaaacceeeeiiiinoooooosuuuuyzzlaecnszACEIOOOSUUL",
)


def _local_part(first: str, last: str, rng: random.Random) -> str:
    first, last = (s.translate(_ASCII).lower().replace("'", "") for s in (first, last))
    last = last.replace(" ", "")
    style = rng.choice(["{f}.{l}", "{f}{l}", "{f0}{l}", "{f}_{l}"])
    return style.format(f=first, l=last, f0=first[0])


def make_rows(rng: random.Random) -> list[list[str]]:
    rows: list[list[str]] = []
    used: set[str] = set()
    for i in range(ROWS):
        first, last = rng.choice(FIRST), rng.choice(LAST)
        company, domain = rng.choice(COMPANIES)
        if i == MULTILINE_ROW:
            company, domain = "Blue Harbor Logistics\nResearch Division", "blueharbor.example.net"
        local = _local_part(first, last, rng)
        while f"{local}@{domain}" in used:  # unique, so only the planted duplicates repeat
            local += str(rng.randint(2, 9))
        email = f"{local}@{domain}"
        used.add(email)
        city, country = rng.choice(PLACES)
        phone = f"+1 555-01{rng.randint(0, 99):02d}" if rng.random() < 0.8 else ""
        rows.append(
            [
                first,
                last,
                email,
                company,
                rng.choice(TITLES),
                phone,
                f"https://www.{domain}",
                city,
                country,
                rng.choice(SOURCES),
            ]
        )
    for i, bad in INVALID_EMAILS.items():
        rows[i][2] = bad
    for i, earlier in DUPLICATE_OF.items():
        rows[i][2] = _recase(rows[earlier][2])
    return rows


def _recase(email: str) -> str:
    """The same address in different letter case: "Ana.Brown@Acme.Example.com"."""
    local, _, domain = email.partition("@")
    return f"{local.title()}@{domain.capitalize()}"


def main() -> None:
    out = Path(__file__).with_name("leads.csv")
    rows = make_rows(random.Random(SEED))
    with out.open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(COLUMNS)
        writer.writerows(rows)
    print(f"wrote {len(rows)} rows to {out}")


if __name__ == "__main__":
    main()
