"""notebooks/03_auth_jwt_fastapi.ipynb runs top to bottom on its own stand-in (it signs in and writes a task)."""

from __future__ import annotations

from pathlib import Path

from notebook_rig import outputs_text, run_notebook

from workbench.local.standin import LocalStandIn


def test_auth_jwt_fastapi_runs(tmp_path: Path) -> None:
    standin = LocalStandIn(tmp_path / "nb03")
    standin.start()
    try:
        nb = run_notebook("03_auth_jwt_fastapi.ipynb", standin.data_dir)
        keys = standin.keys()
    finally:
        standin.destroy()
    text = outputs_text(nb)
    assert "400 invalid_credentials: Invalid login credentials" in text
    assert text.count("invalid_credentials") >= 2  # unknown email: the same answer
    assert "alice@example.com sees 3 tasks" in text and "bob@example.com sees 2 tasks" in text
    assert "project 1: 201" in text and "project 3: 403" in text and "row-level security" in text
    assert "Bob sees Alice's new task: False" in text and "deleted: 204" in text
    for reason in (
        "token expired",
        "token not yet valid (nbf)",
        "invalid audience",
        "invalid issuer",
        "invalid signature",
        "alg none is not allowed",
        "unknown signing key",
        "missing required claim sub",
        "token too large",
        "token is not a compact JWS",
    ):
        assert f'error_description="{reason}"' in text, reason
    assert "insufficient_scope" in text and "service-role key  -> 200" in text
    assert "Auth API after sign-out: 403 session_not_found" in text
    assert "FastAPI (local verification) after sign-out: 200 alice@example.com" in text
    # Section 7: sign-up confirmed through the local inbox, an anonymous user, metadata reaching auth.jwt().
    assert "after sign-up: session None | email confirmed: False" in text
    assert "sign-in before confirming -> 400 email_not_confirmed" in text
    assert "inbox: 'Confirm Your Signup' (type signup) with a 6-digit code and a link" in text
    assert "after verify_otp: signed in True | email confirmed: True" in text
    assert "anonymous user: True | role: authenticated | is_anonymous claim: True" in text
    assert "carol, plan free:         []" in text and "guest, anonymous:         []" in text
    assert "carol, same old token:    []" in text
    assert "carol's next token says plan=pro: ['priority support', 'custom domain']" in text
    assert "guest, anonymous + pro:   []" in text
    assert "removed the perks table and 2 users" in text
    # Nothing secret in the saved outputs: no keys, no secret, no access token.
    for secret in (keys.jwt_secret, keys.anon_key, keys.service_role_key):
        assert secret not in text
    assert "eyJ" not in text
