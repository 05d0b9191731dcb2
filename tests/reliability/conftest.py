"""Rigs of the reliability suite: its own stand-ins for destructive faults, an IPython shell, the figures."""

from __future__ import annotations

import sys
from collections.abc import Iterator

import pytest
from rigs import ROOT

if str(ROOT) not in sys.path:  # the `reliability` package at the repository root (its commands and helpers)
    sys.path.append(str(ROOT))

from reliability.figures import FIGURES, Figures  # noqa: E402
from workbench.local.standin import LocalStandIn  # noqa: E402


@pytest.fixture(scope="session")
def figures() -> Iterator[Figures]:
    """The run's counters; written to ``$WORKBENCH_RELIABILITY_FIGURES`` at the end when that is set."""
    yield FIGURES
    FIGURES.save()


@pytest.fixture(scope="session")
def own_standin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStandIn]:
    """The reliability suite's own stand-in (demo data, API process): free to be stopped, killed and changed.
    A test that stops or kills it starts it again before it ends."""
    instance = LocalStandIn(tmp_path_factory.mktemp("own-standin") / "local")
    instance.start()
    yield instance
    instance.destroy()


@pytest.fixture(scope="module")
def ip(settings):  # type: ignore[no-untyped-def]
    """A real IPython shell with the workbench extension, connected to the session stand-in."""
    from IPython.testing.globalipapp import get_ipython, start_ipython

    from workbench.notebook import session as core

    shell = start_ipython() or get_ipython()  # the testing shell is process-wide
    assert shell is not None
    shell.run_line_magic("load_ext", "workbench")
    core.connect(settings)
    yield shell
    core.current().close()
