"""workbench.schema.er: Mermaid text for the demo schema."""

from __future__ import annotations

from workbench.local.standin import LocalStandIn
from workbench.schema.er import MermaidDiagram, er_diagram
from workbench.schema.reflect import reflect_dsn


async def test_demo_diagram_entities_keys_and_edges(standin: LocalStandIn) -> None:
    db = await reflect_dsn(standin.dsn(), ["public"])
    text = er_diagram(db)
    lines = text.splitlines()
    assert lines[0] == "erDiagram"
    assert '    tasks["public.tasks"] {' in lines
    assert "        int8 id PK" in lines
    assert "        uuid owner_id FK" in lines
    assert '        text title "not null"' in lines
    assert "        text name UK" in lines  # organizations.name is unique
    # the external auth.users, with its key only
    assert '    auth__users["auth.users"] {' in lines
    users = lines[
        lines.index('    auth__users["auth.users"] {') + 1 : lines.index('    auth__users["auth.users"] {') + 3
    ]
    assert users == ["        uuid id PK", "    }"]
    # many tasks to one project; a profile is one-to-one with its user (its FK is its primary key)
    assert '    tasks }o--|| projects : "project_id"' in lines
    assert '    profiles |o--|| auth__users : "id"' in lines
    assert '    memberships }o--|| auth__users : "user_id"' in lines


async def test_subset_without_columns_or_external(standin: LocalStandIn) -> None:
    db = await reflect_dsn(standin.dsn(), ["public"])
    text = er_diagram(db, tables=["tasks", "public.projects"], columns=False, external=False)
    assert text.splitlines() == [
        "erDiagram",
        '    projects["public.projects"] {',
        "    }",
        '    tasks["public.tasks"] {',
        "    }",
        '    tasks }o--|| projects : "project_id"',
    ]


def test_mermaid_mime_bundle() -> None:
    bundle = MermaidDiagram("erDiagram")._repr_mimebundle_()
    assert bundle["text/vnd.mermaid"] == "erDiagram"
    assert bundle["text/markdown"] == "```mermaid\nerDiagram\n```"
