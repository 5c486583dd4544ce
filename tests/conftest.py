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

import pytest

from stream.settings import load_settings
from tools.embedded import EmbeddedBroker, EmbeddedTriton

# Under xdist two workers share the machine's cores: torch's training threads (and those of
# the processes the tests start) would spin against the other worker's. One each.
if "PYTEST_XDIST_WORKER" in os.environ:
    os.environ["OMP_NUM_THREADS"] = "1"

# Tests that share an expensive session fixture, by the fixture that sets them apart.
_FIXTURE_GROUPS = {"checkpoint_dir": "trained-model", "version_dir": "trained-model"}
_INTEGRATION = Path(__file__).parent / "integration"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """``make test`` runs two pytest-xdist workers (``--dist loadgroup``): the tests that share
    a trained model, and the integration tests that share the pipeline's, each stay in one
    worker, so every model is trained once per run while the other worker takes the rest."""
    for item in items:
        names = getattr(item, "fixturenames", ())
        shared = [_FIXTURE_GROUPS[name] for name in names if name in _FIXTURE_GROUPS]
        group = "pipeline" if item.path.is_relative_to(_INTEGRATION) else next(iter(shared), None)
        if group is not None:
            item.add_marker(pytest.mark.xdist_group(group))


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    if not inspect.iscoroutinefunction(pyfuncitem.obj):
        return None
    parameters = inspect.signature(pyfuncitem.obj).parameters
    asyncio.run(pyfuncitem.obj(**{name: pyfuncitem.funcargs[name] for name in parameters}))
    return True


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
