"""Credentials generated once per state folder, so a second `make up` keeps them."""

from __future__ import annotations

import json
import secrets
from pathlib import Path

from pydantic import BaseModel


class Credentials(BaseModel):
    rabbitmq_user: str
    rabbitmq_password: str
    s3_access_key: str
    s3_secret_key: str

    @classmethod
    def load_or_create(cls, path: Path) -> Credentials:
        if path.exists():
            return cls.model_validate(json.loads(path.read_text()))
        creds = cls(
            rabbitmq_user="kube-transcode",
            rabbitmq_password=secrets.token_urlsafe(18),
            s3_access_key="kt" + secrets.token_hex(8),
            s3_secret_key=secrets.token_urlsafe(30),
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(creds.model_dump_json(indent=2))
        path.chmod(0o600)
        return creds
