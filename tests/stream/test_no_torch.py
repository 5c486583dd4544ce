import subprocess
import sys
from pathlib import Path

import pytest

import stream

pytestmark = pytest.mark.unit


def test_the_event_path_never_loads_torch() -> None:
    modules = sorted(
        "stream." + ".".join(path.relative_to(Path(stream.__file__).parent).with_suffix("").parts)
        for path in Path(stream.__file__).parent.rglob("*.py")
        if path.name not in {"__init__.py", "__main__.py"}
    )
    assert "stream.agents" in modules and "stream.demo" in modules
    code = "import importlib, sys\n"
    code += "".join(f"importlib.import_module({name!r})\n" for name in modules)
    code += "print('torch' in sys.modules)"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert loaded.stdout.strip() == "False"
