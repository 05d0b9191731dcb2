"""Secrets never shown: with a database password, JWT secret, service key and ES256 private key configured,
every notebook runs; then its outputs, widget state, ``%sbwhoami``, error messages and hints, the reprs of
everything in its namespace, the stand-in's api.log / postgres.log, and the reprs and errors of the library's
objects are scanned for each secret, its URL-encoded and base64 forms, and any 16-character piece of it.

(The stand-in's own keys legitimately appear in ``workbench local status``: that output is not scanned.)
"""

from __future__ import annotations

import base64
import json
import logging
import os
import secrets
import subprocess
import sys
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import nbformat
import pytest
from notebook_rig import NOTEBOOKS, run_notebook

from reliability.figures import Figures
from workbench.backend.tokens import api_key_claims, generate_es256_key, mint
from workbench.local.standin import LocalStandIn

PIECE = 16  # any run of this many characters of a secret's random part counts as a leak


@dataclass(frozen=True)
class Secret:
    name: str
    value: str
    random_part: str  # the part no other text could contain by chance

    def needles(self) -> list[str]:
        forms = {self.value, quote(self.value, safe=""), quote(self.value)}
        raw = self.value.encode()
        forms |= {base64.b64encode(raw).decode(), base64.urlsafe_b64encode(raw).decode().rstrip("=")}
        part = self.random_part
        forms |= {part[i : i + PIECE] for i in range(0, max(1, len(part) - PIECE + 1))}
        return sorted(forms)


@dataclass
class Scanner:
    secrets: list[Secret]
    found: list[str] = field(default_factory=list)
    texts: int = 0
    chars: int = 0

    def scan(self, where: str, text: str) -> None:
        self.texts += 1
        self.chars += len(text)
        for secret in self.secrets:
            if any(needle in text for needle in secret.needles()):
                self.found.append(f"{secret.name} in {where}")


@dataclass(frozen=True)
class Configured:
    standin: LocalStandIn
    secrets: list[Secret]
    env: dict[str, str]


def _pem_body(pem: str) -> str:
    return "".join(line for line in pem.splitlines() if line and not line.startswith("-----"))


@pytest.fixture(scope="module")
def configured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Configured]:
    """A stand-in whose keys we chose (so we know every secret), and the environment of a configured project."""
    data_dir = tmp_path_factory.mktemp("secrets") / "local"
    data_dir.mkdir(parents=True)
    jwt_secret = "wbjwt" + secrets.token_hex(24)
    pem, jwk = generate_es256_key(kid=secrets.token_hex(8))
    keys: dict[str, Any] = {
        "jwt_secret": jwt_secret,
        "anon_key": mint(api_key_claims("anon"), secret=jwt_secret),
        "service_role_key": mint(api_key_claims("service_role"), secret=jwt_secret),
        "es256_private_key": pem,
        "es256_jwk": jwk,
    }
    fd = os.open(data_dir / "keys.json", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(keys, fh)
    standin = LocalStandIn(data_dir)
    status = standin.start()
    assert standin.keys().jwt_secret == jwt_secret
    password = standin.keys().db_password()  # the stand-in generates its database passwords itself
    service = str(keys["service_role_key"])
    found = [
        Secret("database password", password, password),
        *(
            Secret(f"{role} password", standin.keys().db_password(role), standin.keys().db_password(role))
            for role in ("authenticator", "supabase_auth_admin", "supabase_storage_admin", "supabase_admin")
        ),
        Secret("JWT secret", jwt_secret, jwt_secret[5:]),
        Secret("service_role key", service, service.rsplit(".", 1)[1]),
        Secret("ES256 private key", pem, _pem_body(pem)[40:]),  # past the PKCS#8 header every P-256 key shares
    ]
    env = {
        "SUPABASE_DB_URL": f"postgresql://postgres:{password}@127.0.0.1:{status.db_port}/postgres",
        "SUPABASE_URL": str(status.api_url),
        "SUPABASE_ANON_KEY": str(keys["anon_key"]),
        "SUPABASE_SERVICE_ROLE_KEY": service,
        "SUPABASE_JWT_SECRET": jwt_secret,
        "SUPABASE_LOCAL_DIR": str(data_dir),
    }
    yield Configured(standin, found, env)
    standin.destroy()


# ------------------------------------------------------------------------------------- every notebook

PROBE = r"""
import json as _wbj, os as _wbos
from IPython.utils.capture import capture_output as _wbcap
_wbp = {"reprs": [], "widgets": [], "whoami": "", "errors": []}
for _wbk, _wbv in list(globals().items()):
    if _wbk.startswith("_") or _wbk in ("In", "Out", "get_ipython", "exit", "quit"):
        continue
    if type(_wbv).__name__ in ("module", "type", "function", "builtin_function_or_method", "method"):
        continue
    if type(_wbv).__module__ == "builtins":  # str, list, dict...: values the notebook made; shown only if printed
        continue
    for _wbf in (repr, str):
        try:
            _wbp["reprs"].append(f"{_wbk}: {_wbf(_wbv)[:50000]}")
        except Exception as _wbe:
            _wbp["reprs"].append(f"{_wbk}: <{type(_wbe).__name__}: {_wbe}>")
try:
    from ipywidgets.widgets.widget import _instances as _wbw
    for _wbx in list(_wbw.values()):
        try:
            _wbp["widgets"].append(_wbj.dumps(_wbx.get_state(), default=str))
        except Exception as _wbe:
            _wbp["widgets"].append(f"<{type(_wbe).__name__}: {_wbe}>")
except ImportError:
    pass
import workbench as _wb
get_ipython().run_line_magic("load_ext", "workbench")
_wbc = _wb.current()
with _wbcap() as _wbo:
    get_ipython().run_line_magic("sbwhoami", "")
_wbp["whoami"] = _wbo.stdout + "".join(_wbj.dumps(o.data) for o in _wbo.outputs)
_wbp["reprs"] += [repr(_wbc), repr(_wbc.settings), _wbc.settings.describe(), repr(list(_wbc._engines.values())),
                  str([e.url for e in _wbc._engines.values()]), repr(_wbc.settings.database_url())]
for _wbs in ["select * from public.no_such_table", "selec 1", "select 1/0", "select :undefined_variable_x"]:
    try:
        get_ipython().run_cell_magic("sbquery", "", _wbs)
    except Exception as _wbe:
        _wbp["errors"].append(f"{type(_wbe).__name__}: {_wbe} {getattr(_wbe, '__notes__', '')} {_wbe!r}")
try:  # the configured URL (password and all) pointed at a port where nothing listens
    _wbbad = _wb.Workbench(_wb.Settings(db_url=_wbos.environ["SUPABASE_DB_URL"].rsplit(":", 1)[0] + ":1/postgres"))
    _wbbad.run(_wbbad.query("select 1"))
except Exception as _wbe:
    import traceback as _wbtb
    _wbp["errors"].append("".join(_wbtb.format_exception(_wbe)))
with open(_wbos.environ["WB_SECRETS_PROBE_OUT"], "w") as _wbfh:
    _wbj.dump(_wbp, _wbfh)
"""


def _notebooks() -> list[str]:
    return sorted(p.name for p in NOTEBOOKS.glob("*.ipynb"))


@pytest.mark.parametrize("name", _notebooks())
def test_notebook_shows_no_secret(name: str, configured: Configured, tmp_path: Path, figures: Figures) -> None:
    """Run the notebook as a user with a configured project would, plus a probe cell that collects the reprs of
    its namespace, its widgets' state, ``%sbwhoami`` and a few error messages; scan all of it."""
    if name in ("01_engine_and_pooling.ipynb", "07_pooling_under_load.ipynb"):
        from rigs import require_tool

        require_tool("pgbouncer", f"{name} runs PgBouncer")
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(PROBE))
    copy = tmp_path / name
    nbformat.write(nb, copy)
    probe = tmp_path / "probe.json"
    executed = run_notebook(
        str(copy),  # an absolute path: the rig runs it with notebooks/ as the working directory
        configured.standin.data_dir,
        extra_env=configured.env | {"WB_SECRETS_PROBE_OUT": str(probe)},
        timeout=600,
    )
    scanner = Scanner(configured.secrets)
    scanner.scan(f"{name} (outputs, widget state)", nbformat.writes(executed))
    collected = json.loads(probe.read_text())
    for kind in ("reprs", "widgets", "errors"):
        for i, text in enumerate(collected[kind]):
            scanner.scan(f"{name} {kind}[{i}] {text[:40]!r}", text)
    scanner.scan(f"{name} %sbwhoami", collected["whoami"])
    assert collected["whoami"] and len(collected["errors"]) == 5, collected["errors"]
    assert any("postgres:***@127.0.0.1" in text for text in collected["reprs"]), "the password is configured, masked"
    figures.add("secrets", "notebooks_run")
    figures.add("secrets", "texts_scanned", scanner.texts)
    figures.add("secrets", "chars_scanned", scanner.chars)
    figures.add("secrets", "widgets_scanned", len(collected["widgets"]))
    figures.add("secrets", "secrets_found", len(scanner.found))
    assert scanner.found == [], "\n".join(scanner.found)


# --------------------------------------------------------------------- the library's own reprs and errors


async def test_reprs_errors_and_logs_show_no_secret(
    configured: Configured, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, figures: Figures
) -> None:
    import workbench
    from workbench.backend.fastapi import SupabaseAuth, verifier_from_settings
    from workbench.backend.retry import RetryPolicy, retry
    from workbench.backend.tokens import TokenError, TokenVerifier
    from workbench.core.engine import EngineManager, create_engine
    from workbench.core.errors import WorkbenchError, classify
    from workbench.core.settings import Settings, SettingsError, load_settings
    from workbench.local.api import ApiContext
    from workbench.storage import admin_client

    for key, value in configured.env.items():
        monkeypatch.setenv(key, value)
    password = configured.secrets[0].value
    scanner = Scanner(configured.secrets)
    texts: list[tuple[str, str]] = []

    def shown(where: str, value: Any) -> None:
        texts.append((f"{where} repr", repr(value)))
        texts.append((f"{where} str", str(value)))

    settings = load_settings()
    shown("Settings from the environment", settings)
    texts.append(("Settings.describe()", settings.describe()))
    texts.append(("Settings.model_dump_json()", settings.model_dump_json()))
    shown("Settings.database_url()", settings.database_url())
    for mode in ("direct", "session", "transaction"):
        parts = Settings(
            project_ref="abcdefghijklmnopqrst",
            db_password=password,
            pooler_host="aws-0-eu-central-1.pooler.supabase.com",
            db_mode=mode,
        )
        shown(f"Settings({mode}, ref + password)", parts)
        texts.append((f"describe({mode})", parts.describe()))
        shown(f"database_url({mode})", parts.database_url())
    bad_urls = [
        f"postgresql://postgres:{password}@aws-0-eu-central-1.pooler.supabase.com:6543/postgres",  # no .ref
        f"postgresql://postgres.ref:{password}@aws-0-eu-central-1.pooler.supabase.com:7000/postgres",  # bad port
        f"mysql://postgres:{password}@db.abcdefghijklmnopqrst.supabase.co:5432/postgres",  # not PostgreSQL
        f"postgresql://postgres:{password}@db.abcdefghijklmnopqrst.supabase.co:notaport/postgres",
    ]
    for url in bad_urls:
        with pytest.raises(SettingsError) as info:
            Settings(db_url=url)
        texts.append(("SettingsError", str(info.value) + repr(info.value)))
        texts.append(("SettingsError traceback", "".join(traceback.format_exception(info.value))))

    keys = configured.standin.keys()
    shown("LocalKeys", keys)
    shown("StandInStatus", configured.standin.status())
    shown("LocalStandIn", configured.standin)
    shown("ApiContext", ApiContext(configured.standin.data_dir, "postgresql://x", keys, "http://127.0.0.1:1"))
    wb = workbench.Workbench(settings)
    shown("Workbench", wb)
    engine = create_engine(settings)
    shown("AsyncEngine", engine)
    shown("engine.url", engine.url)
    shown("EngineManager", EngineManager(settings))
    shown("TokenVerifier", TokenVerifier(jwt_secret=keys.jwt_secret))
    shown("verifier_from_settings", verifier_from_settings(settings))
    shown("SupabaseAuth", SupabaseAuth.from_settings(settings))
    admin = await admin_client(settings)
    shown("StorageClient (admin)", admin)

    # connection failures with the password in the URL: the error, its hint, the retry log, the traceback
    nowhere = workbench.Workbench(Settings(db_url=configured.env["SUPABASE_DB_URL"].rsplit(":", 1)[0] + ":1/postgres"))
    with pytest.raises(WorkbenchError) as failed:
        await nowhere.query("select 1")
    texts.append(("WorkbenchError", f"{failed.value} {failed.value!r} {failed.value.classified!r}"))
    texts.append(("WorkbenchError traceback", "".join(traceback.format_exception(failed.value))))
    caplog.set_level(logging.DEBUG)
    with pytest.raises(WorkbenchError) as retried:
        await retry(lambda: nowhere.query("select 1"), policy=RetryPolicy(max_attempts=3, base_delay=0.01))
    texts.append(("retry notes", " ".join(getattr(retried.value, "__notes__", []))))
    texts.append(("log records", "\n".join(r.getMessage() + repr(r.args) for r in caplog.records)))
    texts.append(("classify(raw exception)", repr(classify(failed.value.__cause__ or failed.value))))
    await nowhere.aclose()

    # tokens signed with the wrong secret, or the secret itself passed as a token
    verifier = TokenVerifier(jwt_secret="another-secret-of-sufficient-length-0123456789")
    for token in (keys.service_role_key, keys.jwt_secret, f"{keys.service_role_key}x"):
        with pytest.raises(TokenError) as refused:
            verifier.verify(token)
        texts.append(("TokenError", f"{refused.value} {refused.value!r} {refused.value.www_authenticate}"))

    # the API answering bad requests that carry secrets
    api = configured.standin.api_url()
    async with httpx.AsyncClient(timeout=30) as http:
        for headers in (
            {"apikey": keys.jwt_secret, "Authorization": f"Bearer {keys.jwt_secret}"},
            {"apikey": keys.anon_key, "Authorization": f"Bearer {keys.service_role_key}tampered"},
            {"apikey": password},
        ):
            for path in ("/storage/v1/bucket", "/auth/v1/user", "/storage/v1/object/no-such/x.txt"):
                answer = await http.get(f"{api}{path}", headers=headers)
                texts.append((f"API answer {path}", f"{answer.status_code} {answer.headers} {answer.text}"))
        wrong = await http.post(
            f"{api}/auth/v1/token?grant_type=password",
            headers={"apikey": keys.anon_key},
            json={"email": "alice@example.com", "password": password},
        )
        texts.append(("sign-in with the database password", wrong.text))
        assert wrong.status_code == 400

    # `workbench doctor`, once healthy and once pointed at the wrong port
    env = os.environ | configured.env
    for override in ({}, {"SUPABASE_DB_URL": configured.env["SUPABASE_DB_URL"].rsplit(":", 1)[0] + ":1/postgres"}):
        doctor = subprocess.run(
            [sys.executable, "-m", "workbench.cli", "doctor"],
            capture_output=True,
            text=True,
            timeout=120,
            env=env | override,
        )
        texts.append(("workbench doctor", doctor.stdout + doctor.stderr))
        assert "database" in doctor.stdout

    await engine.dispose()
    await wb.aclose()
    for log in (configured.standin.data_dir / "api.log", configured.standin.pg.log_file):
        texts.append((log.name, log.read_text(errors="replace")))
    for where, text in texts:
        scanner.scan(where, text)
    figures.add("secrets", "texts_scanned", scanner.texts)
    figures.add("secrets", "chars_scanned", scanner.chars)
    figures.add("secrets", "secrets_found", len(scanner.found))
    assert scanner.found == [], "\n".join(scanner.found)


def test_the_scanner_finds_what_it_looks_for() -> None:
    """The scan itself can fail: every form of a secret is caught, and nothing else is."""
    secret = Secret("s", "wbpw0123456789abcdef0123456789abcdef", "0123456789abcdef0123456789abcdef")
    scanner = Scanner([secret])
    for text in (
        f"url postgresql://u:{secret.value}@h/db",
        quote(secret.value),
        base64.b64encode(secret.value.encode()).decode(),
        f"a piece: {secret.random_part[7 : 7 + PIECE]} ...",
    ):
        scanner.scan("sample", text)
    scanner.scan("clean", "postgresql://u:***@h/db 0123456789abcde")
    assert scanner.found == ["s in sample"] * 4
