"""The admin token: set by ADMIN_TOKEN, or made once per database and shared by every process."""

from __future__ import annotations

import logging
import secrets
from pathlib import Path

from app.infra.db import Db, shared_secret

log = logging.getLogger("digits.auth")


class AdminToken:
    """ADMIN_TOKEN when set; otherwise one random token per database, shared by every process that uses
    it: the first to ask makes it and logs it once. There is never a built-in default.

    Asked for lazily, so a process that starts while PostgreSQL is away still serves predictions. An
    install from before kept a generated token in `<runtime_dir>/admin_token`: that one is adopted."""

    def __init__(self, configured: str | None, db: Db, legacy_file: Path) -> None:
        self._value, self.db, self.legacy_file = configured, db, legacy_file

    def value(self) -> str:
        if self._value is None:
            legacy = self.legacy_file.read_text().strip() if self.legacy_file.exists() else ""
            initial = legacy or secrets.token_urlsafe(24)
            stored, made = shared_secret(self.db, "admin_token", initial.encode())
            if made and not legacy:
                log.warning("ADMIN_TOKEN is not set; generated an admin token", extra={"admin_token": initial})
            self._value = stored.decode()
        return self._value
