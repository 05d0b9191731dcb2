"""scripts/relayout.py (the integrator's layout move): its rewrite rules, checked as text.

This file is not rewritten by the script (it names the old modules on purpose).
"""

from __future__ import annotations

import importlib.util
import sys

from rigs import ROOT

spec = importlib.util.spec_from_file_location("relayout", ROOT / "scripts" / "relayout.py")
assert spec is not None and spec.loader is not None
relayout = importlib.util.module_from_spec(spec)
sys.modules["relayout"] = relayout
spec.loader.exec_module(relayout)
MAPPING = {old: new for old, new in relayout.MOVES + relayout.REMOVED}


def test_one_pass_never_rewrites_a_rewritten_name() -> None:
    """The old facade ``workbench.core`` and the new package ``workbench.core`` must not mix."""
    text = "from workbench import sqltext\nimport workbench.core\nworkbench.core.connect()\nworkbench.settings.X\n"
    assert relayout.rewrite_text(text, MAPPING) == (
        "from workbench.core import sqltext\nimport workbench.notebook.session\n"
        "workbench.notebook.session.connect()\nworkbench.core.settings.X\n"
    )


def test_from_workbench_import_splits_modules_from_names() -> None:
    text = "    from workbench import core, connect  # why\n"
    assert relayout.rewrite_text(text, MAPPING) == (
        "    from workbench import connect  # why\n    from workbench.notebook import session as core\n"
    )


def test_longest_name_wins_and_paths_move_too() -> None:
    text = '"workbench.loading" "workbench.load" workbench/widgets/x.py workbench/_sync.py workbench.loader_x'
    assert relayout.rewrite_text(text, MAPPING) == (
        '"workbench.teaching.loading" "workbench.teaching.loadgen" workbench/notebook/widgets/x.py '
        "workbench/notebook/bridge.py workbench.loader_x"
    )


def test_every_move_has_a_source_or_a_target() -> None:
    for old, new in relayout.MOVES:
        old_path, new_path = ROOT / old.replace(".", "/"), ROOT / new.replace(".", "/")
        assert any(p.exists() for p in (old_path, old_path.with_suffix(".py"), new_path, new_path.with_suffix(".py")))


def test_settings_local_calls_become_standin_settings(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(relayout, "ROOT", tmp_path)
    path = tmp_path / "tests" / "test_x.py"
    path.parent.mkdir()
    text = '"""Doc."""\n\nfrom __future__ import annotations\n\ns = Settings.local(own)\n'
    assert relayout.replace_removed_aliases(path, text) == (
        '"""Doc."""\n\nfrom __future__ import annotations\n'
        "from workbench.local.settings import standin_settings\n\ns = standin_settings(own)\n"
    )
