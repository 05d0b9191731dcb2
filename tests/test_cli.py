"""The ``workbench`` command: bad arguments are clear errors that change nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from workbench.cli import main


def test_inbox_refuses_a_folder_that_is_not_a_standin(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``--clear`` on someone else's folder must not delete their files, and reading one must not claim it."""
    mail = tmp_path / "inbox" / "message.json"
    mail.parent.mkdir()
    mail.write_text("{}")
    for extra in ([], ["--clear"], ["--to", "a'\"; drop table x --"]):
        assert main(["local", "inbox", "--dir", str(tmp_path), *extra]) == 2
        assert "is not a local stand-in's folder" in capsys.readouterr().err
    assert mail.read_text() == "{}"
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["inbox", "message.json"]


@pytest.mark.parametrize("delay", ["99999999", "-1", "nan", "inf", "fast", "1e400"])
def test_remote_rig_refuses_a_delay_it_cannot_hold(
    delay: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["remote-rig", "start", "--dir", str(tmp_path), "--delay-ms", delay])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "--delay-ms" in err and ("must be 0..1000 ms" in err or "not a number" in err)
    assert not any(tmp_path.iterdir())  # nothing started, nothing written
