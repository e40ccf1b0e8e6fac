"""Account profiles (``shandy auth``): API keys kept in the OS keychain, or in a 0600 file
where no keychain works. Issue 15 builds this module; ``config.resolve_settings`` asks
``stored_profile`` for a profile's key and base URL when no flag, environment variable
or ``.env`` gives a key.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

DEFAULT_PROFILE = "default"


@dataclass(frozen=True)
class StoredProfile:
    """What a profile holds: its key (never printed: ``redaction.mask_secret``), an
    optional base URL, and where the key is kept (``keyring`` or the file's path)."""

    name: str
    api_key: str | None
    base_url: str | None = None
    where: str = ""

    def __repr__(self) -> str:  # never the key, even in a traceback
        return (
            f"StoredProfile(name={self.name!r}, base_url={self.base_url!r}, where={self.where!r})"
        )


def stored_profile(name: str, environ: Mapping[str, str]) -> StoredProfile | None:
    """The stored profile ``name``, or None when there is none."""
    return None
