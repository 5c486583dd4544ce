"""Session fixtures for the real embedded servers, started only by the tests that ask for them,
and ``async def`` tests, each run in an event loop of its own.

The project can always start its own broker and Triton, so nothing here is ever skipped.
"""

from __future__ import annotations

import asyncio
import inspect
import os
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from stream.settings import load_settings
from tools.embedded import EmbeddedBroker, EmbeddedTriton

# Under xdist two workers share the machine's cores: torch's training threads (and those of
# the processes the tests start) would spin against the other worker's. One each.
if "PYTEST_XDIST_WORKER" in os.environ:
    os.environ["OMP_NUM_THREADS"] = "1"

# Directories whose tests share an expensive session fixture: the serving tests one trained
# model, the integration tests the pipeline's model and servers.
_SHARED_FIXTURE_DIRECTORIES = ("tests/serving/", "tests/integration/")


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """With ``pytest -n 2`` (two pytest-xdist workers), each directory above goes to one worker as
    a whole, so every model is trained once per run, and the other tests go one by one to
    whichever worker is free. (xdist's own ``--dist loadgroup`` left marked tests apart under
    this pytest: it groups by node ids it renames, and the renaming did not show.)"""
    from xdist.scheduler import LoadScopeScheduling

    class SharedFixtureScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            shared = (d for d in _SHARED_FIXTURE_DIRECTORIES if nodeid.startswith(d))
            return next(shared, nodeid)

    return SharedFixtureScheduling(config, log)


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    if not inspect.iscoroutinefunction(pyfuncitem.obj):
        return None
    parameters = inspect.signature(pyfuncitem.obj).parameters
    asyncio.run(pyfuncitem.obj(**{name: pyfuncitem.funcargs[name] for name in parameters}))
    return True


@pytest.fixture(autouse=True)
def settings_read_afresh() -> Iterator[None]:
    """``load_settings`` keeps what it read first; a test that sets ``NEXTACTION_*`` variables
    must not see an earlier test's settings, nor leave its own behind."""
    load_settings.cache_clear()
    yield
    load_settings.cache_clear()


@pytest.fixture(scope="session")
def embedded_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The servers' executables and logs for this session (pytest keeps the last few)."""
    return tmp_path_factory.mktemp("embedded")


@pytest.fixture(scope="session")
def kafka_broker(embedded_dir: Path) -> Iterator[str]:
    """The bootstrap address (``127.0.0.1:port``) of the session's Tansu broker."""
    with EmbeddedBroker(embedded_dir) as broker:
        yield broker.bootstrap


@pytest.fixture(scope="session")
def model_repository() -> Path:
    """The repository ``triton_server`` serves; override this fixture to serve another one."""
    return load_settings().model_repository


@pytest.fixture(scope="session")
def triton_server_factory(embedded_dir: Path) -> Iterator[Callable[[Path], EmbeddedTriton]]:
    """``factory(repository)``: the session's Triton for that repository, started on first use."""
    servers: dict[Path, EmbeddedTriton] = {}
    with ExitStack() as stack:

        def serve(repository: Path) -> EmbeddedTriton:
            key = repository.resolve()
            if key not in servers:
                servers[key] = stack.enter_context(EmbeddedTriton(key, embedded_dir))
            return servers[key]

        yield serve


@pytest.fixture
def triton_server(
    triton_server_factory: Callable[[Path], EmbeddedTriton], model_repository: Path
) -> EmbeddedTriton:
    """The session's Triton serving ``model_repository``.

    Function-scoped on purpose: a session-scoped server would be cached with whichever
    repository the first test saw, ignoring overrides of ``model_repository`` elsewhere.
    """
    return triton_server_factory(model_repository)
