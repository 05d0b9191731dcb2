"""One user-error base class: every error the magics show short derives from it."""

from __future__ import annotations

import pytest

from workbench.core.errors import WorkbenchError
from workbench.core.exceptions import WorkbenchUserError
from workbench.core.identity import IdentityError
from workbench.core.query import QueryUsageError
from workbench.core.settings import SettingsError
from workbench.core.sqltext import MissingParameter, SQLSyntaxError
from workbench.local.standin import StandInError
from workbench.policies.model import PolicyMatrixError
from workbench.schema.reflect import ReflectError


@pytest.mark.parametrize(
    "error",
    [WorkbenchError, IdentityError, QueryUsageError, SettingsError, StandInError, MissingParameter, SQLSyntaxError,
     PolicyMatrixError, ReflectError],
)  # fmt: skip
def test_user_errors_share_the_base(error: type[Exception]) -> None:
    assert issubclass(error, WorkbenchUserError)


def test_builtin_bases_are_kept_for_existing_handlers() -> None:
    assert issubclass(SettingsError, ValueError) and issubclass(StandInError, RuntimeError)


def test_the_magics_short_error_list_is_the_base_class() -> None:
    from workbench.notebook.magics import _short_error_types

    assert _short_error_types() == (WorkbenchUserError,)


def test_redact_moved_and_the_old_name_still_works() -> None:
    from workbench.core.errors import redact as old
    from workbench.core.redaction import redact

    assert old is redact
    assert redact("postgresql://u:hunter2@h/db") == "postgresql://u:***@h/db"


def test_a_missing_extra_names_the_install_command() -> None:
    from workbench.core.extras import EXTRAS, MissingExtra, require

    EXTRAS["test-only"] = ("workbench_no_such_module",)
    try:
        with pytest.raises(MissingExtra, match=r"pip install 'supabase-workbench\[test-only\]'"):
            require("test-only", "A feature")
    finally:
        del EXTRAS["test-only"]
    require("notebook", "the notebook layer")  # the dev install has everything
