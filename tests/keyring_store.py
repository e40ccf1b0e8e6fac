"""Keychains for tests, chosen by ``PYTHON_KEYRING_BACKEND`` (``keyring_store.FileKeychain``)
as a user's real keychain is: a stand-in that keeps its entries in the JSON file
``KEYRING_STORE_FILE`` names (so a subprocess sees the same keychain), and one that
refuses everything, as a locked keychain or a session without D-Bus does."""

from __future__ import annotations

import json
import os
from pathlib import Path

from keyring.backend import KeyringBackend
from keyring.errors import KeyringError, PasswordDeleteError


class FileKeychain(KeyringBackend):
    priority = 10  # type: ignore[assignment]

    @staticmethod
    def _path() -> Path:
        return Path(os.environ["KEYRING_STORE_FILE"])

    def _entries(self) -> dict[str, str]:
        try:
            return dict(json.loads(self._path().read_text()))
        except FileNotFoundError:
            return {}

    def get_password(self, service: str, username: str) -> str | None:
        return self._entries().get(f"{service}/{username}")

    def set_password(self, service: str, username: str, password: str) -> None:
        entries = self._entries()
        entries[f"{service}/{username}"] = password
        self._path().write_text(json.dumps(entries))

    def delete_password(self, service: str, username: str) -> None:
        entries = self._entries()
        if entries.pop(f"{service}/{username}", None) is None:
            raise PasswordDeleteError("no such entry")
        self._path().write_text(json.dumps(entries))


class LockedKeychain(KeyringBackend):
    priority = 10  # type: ignore[assignment]

    def get_password(self, service: str, username: str) -> str | None:
        raise KeyringError("the keychain is locked")

    def set_password(self, service: str, username: str, password: str) -> None:
        raise KeyringError("the keychain is locked")

    def delete_password(self, service: str, username: str) -> None:
        raise KeyringError("the keychain is locked")


class CountingKeychain(FileKeychain):
    """``FileKeychain`` that notes each read in ``KEYRING_READS_FILE``: which commands ask
    the keychain (on macOS a read may show a prompt)."""

    def get_password(self, service: str, username: str) -> str | None:
        with open(os.environ["KEYRING_READS_FILE"], "a", encoding="utf-8") as fh:
            fh.write(f"{service}/{username}\n")
        return super().get_password(service, username)
