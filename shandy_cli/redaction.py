"""Secrets and hostile text: what may be shown of a key, and of names taken from input.

Everything shandy prints or logs passes through ``redact`` (no registered key is shown)
and ``printable`` / ``one_line`` (no control character from a file name or value can
drive the terminal or forge a log line).
"""

from __future__ import annotations

import re
from typing import Any

from shandy_cli.errors import ConfigError


def mask_secret(secret: str | None) -> str | None:
    """Show only the last four characters of a secret, e.g. ``****abcd``."""
    if not secret:
        return secret
    return "****" + secret[-4:] if len(secret) > 8 else "****"


# Every API key this process has seen. Anything shandy prints passes through
# ``redact`` first, so a key that slips into an exception message (httpx quotes
# an illegal header value in full, for one) is still never shown.
_SECRETS: set[str] = set()
_MIN_SECRET = 8  # shorter "keys" (a sandbox "test") are common words: masking them garbles text


def register_secret(secret: str | None) -> None:
    """Remember ``secret`` (and its trimmed form) so ``redact`` hides it."""
    if not secret:
        return
    for form in (secret, secret.strip()):
        if len(form) >= _MIN_SECRET:
            _SECRETS.add(form)


def redact(text: str) -> str:
    """``text`` with every registered secret replaced by its masked form."""
    for secret in sorted(_SECRETS, key=len, reverse=True):  # longest first: " k" before "k"
        if secret in text:
            text = text.replace(secret, mask_secret(secret.strip()) or "****")
    return text


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def printable(text: str) -> str:
    """Escape control characters (ESC, BEL, CR, ...) so file names and values taken
    from hostile input cannot drive the terminal; newlines and tabs are kept."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


_LINE_BREAKS = str.maketrans({"\n": "\\n", "\r": "\\r", "\t": "\\t"})


def one_line(text: str) -> str:
    """A name (a file's, a column's) as it may appear inside one line of a message: like
    ``printable``, and newlines, CRs and tabs escaped too, so a file called
    ``x\\n2026-12-01T03:00:00 shandy: read 0 rows`` cannot forge a log line."""
    return printable(text.translate(_LINE_BREAKS))


def check_api_key(key: str | None) -> str | None:
    """The key as it can be sent: surrounding whitespace (a pasted newline) dropped;
    anything else that cannot go in an HTTP header refused without showing it."""
    if key is None:
        return None
    register_secret(key)
    stripped = key.strip()
    if not stripped:
        return None
    if any(not ("\x21" <= ch <= "\x7e") for ch in stripped):
        raise ConfigError(
            f"the API key ({mask_secret(stripped)}) contains spaces, control or non-ASCII "
            "characters; check SALESHANDY_API_KEY"
        )
    return stripped


def account_id(base_url: str, api_key: str | None) -> str:
    """Which Saleshandy account a key is, as the journal's ledgers record it: a keyed
    digest of the key and the API's base URL, so neither is stored, and two accounts'
    (or the sandbox's and the live API's) ledgers never mix. '' without a key."""
    if not api_key:
        return ""
    text = f"{base_url.rstrip('/')}\n{api_key}".encode()
    import hashlib  # here, not at the top: `shandy --help` loads redaction, not OpenSSL

    return hashlib.blake2b(text, key=b"shandy account v1", digest_size=12).hexdigest()


def redact_tree(data: Any) -> Any:
    """``redact`` over a JSON document's every string, keys too: what ``--json`` prints and
    what a webhook is sent are the same document, redacted alike."""
    if isinstance(data, str):
        return redact(data)
    if isinstance(data, dict):
        return {redact_tree(k): redact_tree(v) for k, v in data.items()}
    if isinstance(data, list | tuple):
        return [redact_tree(v) for v in data]
    return data
