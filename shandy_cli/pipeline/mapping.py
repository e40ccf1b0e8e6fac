"""Mapping: which source column feeds which Saleshandy field label.

A header is matched, in this order, by:

1. an explicit mapping (``--map "Column=Label"`` / ``--mapping FILE``), by exact
   column name, else by normalized name; a target of ``""`` or ``"-"`` drops it;
2. equality with a field label, exactly (ignoring case), then normalized
   (``first_name`` -> ``First Name``);
3. a common alias (``e-mail`` -> ``Email``), used only when the account has the
   alias's target label.

Headers are compared after trimming whitespace and a byte-order mark.  Every
problem is found before anything is sent, and reported in one ``InputError``
that says how to fix it.

Constants (``--set "Label=value"``) are "a constant on every prospect", as the
contract puts it: when a row also has a value for that label, the constant
wins, so every prospect carries exactly the value the user set.
"""

from __future__ import annotations

import difflib
import json
import tomllib
from collections.abc import Iterable
from collections.abc import Mapping as AbcMapping
from dataclasses import dataclass, field
from pathlib import Path

from shandy_cli.errors import InputError
from shandy_cli.pipeline.validation import NUMBER_TYPES, field_value_problem

ON_UNKNOWN_CHOICES = ("error", "ignore", "create")
DROP_TARGETS = frozenset({"", "-"})
EMAIL_LABEL = "Email"
# Hostile headers (10,000 columns, a megabyte-long name) must still give a short message.
SHOWN_COLUMNS = 20  # columns listed in one message; the rest are counted
SHOWN_NAME = 60  # characters of one column name in a message
MAX_CREATE = 100  # custom fields one run may create: more is a broken header, not a plan


def shown(name: str) -> str:
    """A column name for a message: quoted, and cut short when it is very long."""
    if len(name) <= SHOWN_NAME:
        return repr(name)
    return repr(name[:SHOWN_NAME]) + f"… ({len(name):,} characters)"


def listing(names: Iterable[str], limit: int = SHOWN_COLUMNS) -> str:
    """Names for a message: the first ``limit``, then how many more."""
    items = list(names)
    text = ", ".join(shown(n) for n in items[:limit])
    if len(items) > limit:
        text += f", … and {len(items) - limit:,} more"
    return text


def normalize_header(text: str) -> str:
    """Lowercase ``text`` and keep only letters and digits.

    Spaces, ``_``, ``-``, punctuation, a BOM and zero-width characters all go, so
    ``"First_Name"``, ``"first name"`` and ``"FirstName"`` all become ``"firstname"``.
    """
    return "".join(ch for ch in text.lower() if ch.isalnum())


def clean_header(text: str) -> str:
    """A header as matched: trimmed of whitespace and byte-order marks."""
    return text.strip().strip("\ufeff").strip()


# Canonical label -> headers people use for it.  Kept as a table of groups so a
# reader sees at a glance what maps where; ``ALIASES`` is derived from it.
# Left out on purpose because they are ambiguous: "name" (full name?),
# "location" (city? country?), "county", "emails" (several?).
_ALIAS_GROUPS: dict[str, tuple[str, ...]] = {
    "Email": (
        "email",
        "e-mail",
        "email address",
        "e-mail address",
        "mail",
        "mail address",
        "work email",
        "business email",
        "email id",
        "primary email",
        "contact email",
    ),
    "First Name": ("first name", "given name", "fname", "first", "forename"),
    "Last Name": ("last name", "surname", "family name", "lname", "last"),
    "Company": (
        "company",
        "company name",
        "organization",
        "organisation",
        "organization name",
        "organisation name",
        "account",
        "account name",
        "employer",
        "business name",
        "org",
    ),
    "Job Title": ("title", "position", "job title", "role", "job", "designation"),
    "Phone Number": (
        "phone",
        "mobile",
        "phone number",
        "telephone",
        "tel",
        "cell",
        "mobile phone",
        "work phone",
        "mobile number",
        "cell phone",
        "phone no",
        "direct phone",
        "office phone",
        "contact number",
    ),
    "Website": (
        "website",
        "url",
        "company website",
        "domain",
        "web",
        "company url",
        "company domain",
        "homepage",
        "website url",
        "site",
    ),
    # The live system field is "LinkedIn"; "LinkedIn URL" is what exports call it.
    # An account with a custom field of that name still gets it: an exact label
    # match is tried before any alias.
    "LinkedIn": (
        "linkedin url",
        "linkedin profile",
        "linkedin profile url",
        "linkedin link",
        "person linkedin url",
        "linkedin profile link",
    ),
    "City": ("city", "town"),
    "State": ("state", "region", "province", "state province", "state region"),
    "Country": ("country", "country name"),
    "Industry": ("industry", "sector"),
    "Twitter": ("twitter", "twitter url", "twitter handle"),
}


def _build_aliases(groups: AbcMapping[str, Iterable[str]]) -> dict[str, str]:
    aliases: dict[str, str] = {}
    for label, names in groups.items():
        for name in names:
            key = normalize_header(name)
            # One alias, one label: an alias claimed twice would be ambiguous.
            assert aliases.get(key, label) == label, f"alias {name!r} is ambiguous"
            aliases[key] = label
    return aliases


ALIASES: dict[str, str] = _build_aliases(_ALIAS_GROUPS)


# The trim's columnar twin. Exactly the characters str.strip() removes (str.isspace()),
# for polars' strip_chars; spelled out, as finding them among all 1.1M code points
# costs 60 ms at every start (tests/test_fastpath.py checks the list against this
# Python's str.isspace). Rust's trim (polars' default, the faster) strips them all
# but the four UNIT_SEPARATORS.
PY_WS = (
    "\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004"
    "\u2005\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)
UNIT_SEPARATORS = "\x1c\x1d\x1e\x1f"  # str.isspace() says yes, Rust's trim no


@dataclass
class Mapping:
    """How one source's columns become one prospect per row."""

    columns: list[str]
    targets: list[str | None]
    constants: dict[str, str]
    unknown: list[str]
    to_create: list[str]
    email_index: int
    # Columns whose automatic match lost to an explicit mapping of the same
    # label (e.g. "Email" when the user mapped "Work Email=Email"); dropped, and
    # the caller may say so.
    shadowed: list[str] = field(default_factory=list)
    # Label -> field type of the labels columns feed whose values are checked per
    # row (number, currency: see validation.field_value_problem).  Constants are
    # checked once, when the mapping is built.
    typed: dict[str, str] = field(default_factory=dict)
    _pairs: list[tuple[int, str]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Precomputed once: prospect() runs for every row.
        self._pairs = [(i, t) for i, t in enumerate(self.targets) if t is not None]

    def prospect(self, values: list[str]) -> dict[str, str]:
        """Label -> trimmed value for one row; empty values left out, constants added.

        Trimmed by ``str.strip()``: exactly the characters of ``PY_WS``, which the
        columnar reader strips (``columnar/encoder.py``).

        A short (ragged) row reads as empty beyond its end.  When several columns
        were explicitly mapped to one label, the first non-empty one wins.
        """
        out: dict[str, str] = {}
        count = len(values)
        for index, label in self._pairs:
            if index < count:
                value = values[index].strip()
                if value and label not in out:
                    out[label] = value
        if self.constants:
            out.update(self.constants)
        return out

    def as_dict(self) -> dict[str, str | None]:
        """Column -> label (or None), as ``shandy preview --json`` shows it."""
        return dict(zip(self.columns, self.targets, strict=True))


# ---------------------------------------------------------------- flags and files


def parse_pairs(items: list[str], flag: str) -> dict[str, str]:
    """Parse ``"Key=Value"`` items of a repeatable flag.

    Split at the first ``=``, so a ``--set`` value may contain ``=`` (URLs do);
    a column name that contains ``=`` must come through ``--mapping`` instead.
    Both sides are trimmed.  The same key twice with different values is an
    error rather than a silent "last one wins".
    """
    pairs: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise InputError(f"{flag} {item!r} has no '=': write it as {flag} \"Name=Value\"")
        key, value = key.strip(), value.strip()
        if key in pairs and pairs[key] != value:
            raise InputError(f"{flag} gives {key!r} twice: {pairs[key]!r} and {value!r}")
        pairs[key] = value
    return pairs


def load_mapping_file(path: Path) -> tuple[dict[str, str], dict[str, str]]:
    """Read a ``--mapping`` file: ``(columns, constants)``.

    TOML (``.toml``) or JSON (``.json``; other extensions are sniffed), shaped
    ``{"columns": {"Col": "Label"}, "set": {"Label": "value"}}``, or a flat
    ``{"Col": "Label"}`` object taken as columns.  A ``null`` (JSON) target drops
    the column, like ``"-"``.
    """
    data = _parse_mapping_text(path, _read_text(path))
    if not isinstance(data, dict):
        raise InputError("a mapping file must hold one object (a table)", file=str(path))
    if _is_structured(data):
        extra = sorted(set(data) - {"columns", "set"})
        if extra:
            raise InputError(
                f"unknown keys {', '.join(map(repr, extra))}; expected 'columns' and 'set'",
                file=str(path),
            )
        columns = _string_table(data.get("columns", {}), "columns", path)
        constants = _string_table(data.get("set", {}), "set", path)
        return columns, constants
    return _string_table(data, "columns", path), {}


def _read_text(path: Path) -> str:
    try:
        return path.read_bytes().decode("utf-8-sig")
    except OSError as exc:
        raise InputError(
            f"cannot read mapping file: {exc.strerror or exc}", file=str(path)
        ) from exc
    except UnicodeDecodeError as exc:
        raise InputError(f"mapping file is not UTF-8 ({exc.reason})", file=str(path)) from exc


def _parse_mapping_text(path: Path, text: str) -> object:
    suffix = path.suffix.lower()
    as_json = suffix == ".json" or (suffix != ".toml" and text.lstrip().startswith("{"))
    try:
        return json.loads(text) if as_json else tomllib.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(
            f"not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})", file=str(path)
        ) from exc
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"not valid TOML: {exc}", file=str(path)) from exc


def _is_structured(data: dict[str, object]) -> bool:
    # A flat object may legitimately have a column called "columns" or "set";
    # it is the structured form only when those keys hold tables.
    return any(isinstance(data.get(key), dict) for key in ("columns", "set"))


def _string_table(table: object, name: str, path: Path) -> dict[str, str]:
    if not isinstance(table, dict):
        raise InputError(f"{name!r} must be a table of names to strings", file=str(path))
    out: dict[str, str] = {}
    for key, value in table.items():
        if value is None and name == "columns":
            value = "-"
        elif isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, str):
            raise InputError(
                f"{name}: the value for {key!r} must be a string, not {type(value).__name__}",
                file=str(path),
            )
        out[str(key).strip()] = value.strip()
    return out


# ---------------------------------------------------------------- building a mapping


class _Labels:
    """The account's field labels, looked up the ways a header may match them."""

    def __init__(self, labels: list[str]) -> None:
        self.labels = labels
        self.by_fold: dict[str, str] = {}
        self.by_norm: dict[str, str] = {}
        for label in labels:
            # The first spelling wins if the account has near-duplicates.
            self.by_fold.setdefault(label.strip().casefold(), label)
            self.by_norm.setdefault(normalize_header(label), label)

    def exact(self, text: str) -> str | None:
        """The label spelled like ``text`` ignoring case, else by normalized form."""
        return self.by_fold.get(text.strip().casefold()) or self.by_norm.get(normalize_header(text))

    def automatic(self, header: str) -> str | None:
        """The label a header matches without being told: name, then alias."""
        found = self.exact(header)
        if found is not None:
            return found
        alias = ALIASES.get(normalize_header(header))
        return self.exact(alias) if alias is not None else None

    def closest(self, text: str, n: int = 3) -> list[str]:
        """Up to ``n`` labels that look like ``text`` (or like one of their aliases), best first."""
        wanted = normalize_header(text)
        # Aliases are many and short, so they need a closer likeness to count.
        candidates = [(norm, label, 0.6) for norm, label in self.by_norm.items()]
        for alias, target in ALIASES.items():
            label = self.exact(target)
            if label is not None:
                candidates.append((alias, label, 0.8))
        best: dict[str, float] = {}
        matcher = difflib.SequenceMatcher(b=wanted)
        for norm, label, cutoff in candidates:
            matcher.set_seq1(norm)
            score = matcher.ratio()
            if score >= cutoff and score > best.get(label, 0.0):
                best[label] = score
        return sorted(best, key=lambda label: -best[label])[:n]


def build_mapping(
    columns: list[str],
    labels: list[str],
    *,
    explicit: dict[str, str] | None = None,
    constants: dict[str, str] | None = None,
    on_unknown: str = "error",
    file: str | None = None,
    field_types: AbcMapping[str, str] | None = None,
) -> Mapping:
    """Decide every column's target, or raise one ``InputError`` saying what to fix.

    ``field_types`` (label -> ``fieldType``, from ``GET /v1/fields``) says which
    labels hold numbers: a constant for one must be a number, and a column
    feeding one is checked row by row (``Mapping.typed``).
    """
    if on_unknown not in ON_UNKNOWN_CHOICES:
        raise InputError(
            f"--on-unknown-column must be one of {', '.join(ON_UNKNOWN_CHOICES)}, "
            f"not {on_unknown!r}"
        )
    known = _Labels(labels)
    headers = [clean_header(c) for c in columns]
    targets: list[str | None] = [None] * len(columns)
    chosen = _explicit_targets(headers, explicit or {}, known, file)
    for index, target in chosen.items():
        targets[index] = target
    auto = {i: known.automatic(h) for i, h in enumerate(headers) if i not in chosen}
    shadowed = _place_automatic(columns, targets, auto, set(chosen.values()), file)
    # Under "ignore" the caller warns about these; under "create" they are in
    # to_create instead, and under "error" we never get this far with any.
    unknown = [columns[i] for i, t in auto.items() if t is None and on_unknown == "ignore"]
    to_create = _handle_unknown(columns, headers, targets, auto, known, on_unknown, file)
    email_index = _email_index(columns, targets, known, file)
    types = field_types or {}
    fixed = _constants(constants or {}, known, file, types)
    return Mapping(
        columns=list(columns),
        targets=targets,
        constants=fixed,
        unknown=unknown,
        to_create=to_create,
        email_index=email_index,
        shadowed=shadowed,
        typed=_typed(targets, types),
    )


def _typed(targets: list[str | None], types: AbcMapping[str, str]) -> dict[str, str]:
    """The column targets whose values must be checked, with their field types."""
    return {
        label: types[label]
        for label in dict.fromkeys(targets)
        if label is not None and types.get(label) in NUMBER_TYPES
    }


def _explicit_targets(
    headers: list[str], explicit: dict[str, str], known: _Labels, file: str | None
) -> dict[int, str | None]:
    """Column index -> label (None: drop) for every column the user mapped."""
    chosen: dict[int, str | None] = {}
    claimed_by: dict[int, str] = {}
    for key, target in explicit.items():
        label = None if target.strip() in DROP_TARGETS else _existing_label(target, known, file)
        for index in _columns_named(key, headers, file):
            if index in chosen and chosen[index] != label:
                raise InputError(
                    f"column {headers[index]!r} is mapped twice: by {claimed_by[index]!r} "
                    f"and by {key!r}",
                    file=file,
                )
            chosen[index], claimed_by[index] = label, key
    return chosen


def _columns_named(key: str, headers: list[str], file: str | None) -> list[int]:
    """The columns an explicit mapping names: by exact name, else normalized."""
    wanted = clean_header(key)
    exact = [i for i, h in enumerate(headers) if h == wanted]
    if exact:
        return exact
    norm = normalize_header(wanted)
    loose = [i for i, h in enumerate(headers) if normalize_header(h) == norm]
    if loose:
        return loose
    close = difflib.get_close_matches(wanted, headers, n=3)
    hint = f"; closest: {listing(close)}" if close else ""
    raise InputError(
        f"the mapping names column {shown(key)}, which the file does not have{hint} "
        f"(columns: {listing(headers)})",
        file=file,
    )


def _existing_label(target: str, known: _Labels, file: str | None) -> str:
    label = known.exact(target)
    if label is None:
        raise InputError(_no_such_label(target, known), file=file)
    return label


def _no_such_label(target: str, known: _Labels) -> str:
    close = known.closest(target)
    hint = f"closest: {', '.join(close)}" if close else "see `shandy fields`"
    return f"the account has no field {target.strip()!r} ({hint})"


def _place_automatic(
    columns: list[str],
    targets: list[str | None],
    auto: dict[int, str | None],
    explicit_labels: set[str | None],
    file: str | None,
) -> list[str]:
    """Set automatic targets; a label may be claimed automatically only once."""
    shadowed: list[str] = []
    owner: dict[str, int] = {}
    for index, label in auto.items():
        if label is None:
            continue
        if label in explicit_labels:
            shadowed.append(columns[index])
            continue
        if label in owner:
            first = owner[label]
            raise InputError(
                f"columns {shown(columns[first])} (column {first + 1}) and "
                f"{shown(columns[index])} (column {index + 1}) both map to {label!r}; "
                "pick one with "
                f'--map "{columns[index].strip()}=-" (drop it) or --map "Column=Label"',
                file=file,
            )
        owner[label] = index
        targets[index] = label
    return shadowed


def _handle_unknown(
    columns: list[str],
    headers: list[str],
    targets: list[str | None],
    auto: dict[int, str | None],
    known: _Labels,
    on_unknown: str,
    file: str | None,
) -> list[str]:
    """Apply ``--on-unknown-column`` to the unmatched columns; return those to create."""
    unmatched = [i for i, t in auto.items() if t is None]
    if not unmatched:
        return []
    if on_unknown == "error":
        raise InputError(_unknown_message(columns, unmatched, known), file=file)
    if on_unknown == "ignore":
        return []
    if len(unmatched) > MAX_CREATE:
        raise InputError(
            f"--on-unknown-column create would create {len(unmatched):,} custom fields "
            f"(at most {MAX_CREATE} at once); nothing was sent. Is the first row really the "
            f"header? Columns: {listing(columns[i] for i in unmatched)}",
            file=file,
        )
    return _creations(columns, headers, targets, unmatched, file)


def _creations(
    columns: list[str],
    headers: list[str],
    targets: list[str | None],
    unmatched: list[int],
    file: str | None,
) -> list[str]:
    to_create: list[str] = []
    made: dict[str, int] = {}
    for index in unmatched:
        name = headers[index]
        if not normalize_header(name):
            raise InputError(
                f"column {index + 1} has no usable name ({shown(columns[index])}), so no field "
                f'can be created for it; drop it with --map "{name}=-"',
                file=file,
            )
        key = normalize_header(name)
        if key in made:
            raise InputError(
                f"columns {shown(columns[made[key]])} and {shown(columns[index])} would create the "
                f'same field; drop one with --map "{name}=-"',
                file=file,
            )
        made[key] = index
        targets[index] = name
        to_create.append(name)
    return to_create


def _unknown_message(columns: list[str], unmatched: list[int], known: _Labels) -> str:
    lines = [f"{len(unmatched):,} column(s) match no field label; nothing was sent:"]
    for index in unmatched[:SHOWN_COLUMNS]:
        name = columns[index]
        label = shown(name) if clean_header(name) else f"column {index + 1} (blank header)"
        close = known.closest(name[:200])
        lines.append(
            f"  {label}: " + (f"closest {', '.join(close)}" if close else "no close label")
        )
    if len(unmatched) > SHOWN_COLUMNS:
        lines.append(f"  … and {len(unmatched) - SHOWN_COLUMNS:,} more")
    lines.append(
        'Fix: --map "Column=Field Label" (or --map "Column=-" to drop one), or '
        "--on-unknown-column ignore (drop them) / create (create text fields)."
    )
    return "\n".join(lines)


def _email_index(
    columns: list[str], targets: list[str | None], known: _Labels, file: str | None
) -> int:
    email = known.exact(EMAIL_LABEL)
    for index, target in enumerate(targets):
        if target is not None and target == email:
            return index
    raise InputError(
        f'no column maps to Email (columns: {listing(columns)}); name it with --map "Column=Email"',
        file=file,
    )


def _constants(
    constants: dict[str, str], known: _Labels, file: str | None, types: AbcMapping[str, str]
) -> dict[str, str]:
    """Resolve ``--set`` labels to the account's spelling; values trimmed and type-checked."""
    fixed: dict[str, str] = {}
    for key, value in constants.items():
        label = known.exact(key)
        if label is None:
            raise InputError(f"--set: {_no_such_label(key, known)}", file=file)
        if label == known.exact(EMAIL_LABEL):
            raise InputError("--set cannot set Email: every prospect needs its own", file=file)
        if not value.strip():
            raise InputError(
                f'--set {key!r} has an empty value; to drop a column use --map "Column=-"',
                file=file,
            )
        problem = field_value_problem(label, types.get(label), value)
        if problem is not None:  # it would fail every row at Saleshandy
            raise InputError(f"--set {key!r}: {problem}; nothing was sent", file=file)
        fixed[label] = value.strip()
    return fixed
