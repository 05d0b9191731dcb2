"""notebooks/00_quickstart.ipynb runs top to bottom against the stand-in and shows what it promises."""

from __future__ import annotations

from notebook_rig import outputs_text, run_notebook


def test_quickstart_runs(standin) -> None:  # type: ignore[no-untyped-def]
    nb = run_notebook("00_quickstart.ipynb", standin.data_dir)
    text = outputs_text(nb)
    assert "Draft landing page" in text and "Ship iOS beta" in text
    assert "[ok  ] database" in text and "FAIL" not in text
    keys = standin.keys()
    for secret in (keys.jwt_secret, keys.anon_key, keys.service_role_key):
        assert secret not in text
