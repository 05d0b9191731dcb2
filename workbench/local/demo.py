"""Load the demo app from ``data/demo``: schema, users (bcrypt passwords), rows, buckets and files."""

from __future__ import annotations

import hashlib
import json
import mimetypes
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from workbench.local.standin import LocalStandIn

DEMO_DIR = Path(__file__).resolve().parents[2] / "data" / "demo"


def demo_users() -> list[dict[str, Any]]:
    """The demo users, passwords included (they are demo credentials, documented in the README)."""
    return list(json.loads((DEMO_DIR / "users.json").read_text()))


def hash_password(password: str) -> str:
    import bcrypt

    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=10)).decode()


async def load(dsn: str, standin: LocalStandIn) -> None:
    import asyncpg

    from workbench.local import blobs

    conn = await asyncpg.connect(dsn)
    try:
        async with conn.transaction():
            await conn.execute((DEMO_DIR / "schema.sql").read_text())
            for user in demo_users():
                await conn.execute(
                    """insert into auth.users (id, email, phone, encrypted_password, email_confirmed_at,
                           raw_app_meta_data, raw_user_meta_data)
                       values ($1::uuid, $2, $3, $4, now(), $5::jsonb, $6::jsonb)""",
                    user["id"],
                    user["email"],
                    user["phone"],
                    hash_password(user["password"]),
                    json.dumps(user["app_metadata"]),
                    json.dumps(user["user_metadata"]),
                )
            await conn.execute((DEMO_DIR / "seed.sql").read_text())
            for item in json.loads((DEMO_DIR / "files.json").read_text()):
                data = (DEMO_DIR / "files" / item["file"]).read_bytes()
                version, size = blobs.write_blob(standin.storage_dir, [data])
                mimetype = item.get("mimetype") or mimetypes.guess_type(item["name"])[0]
                metadata = {
                    "eTag": f'"{hashlib.md5(data).hexdigest()}"',
                    "size": size,
                    "mimetype": mimetype,
                    "cacheControl": "max-age=3600",
                    "contentLength": size,
                    "httpStatusCode": 200,
                }
                await conn.execute(
                    """insert into storage.objects (bucket_id, name, owner, owner_id, metadata, version)
                       values ($1, $2, $3::uuid, $3, $4::jsonb, $5)""",
                    item["bucket"],
                    item["name"],
                    item["owner"],
                    json.dumps(metadata),
                    version,
                )
    finally:
        await conn.close()
