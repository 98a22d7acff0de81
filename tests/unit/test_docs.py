"""The documentation agrees with the code: generated parts are current, and every config key,
registered method and error code is documented (see scripts/gen_docs.py)."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from functools import cache
from pathlib import Path
from types import ModuleType

import pytest

from camera_service.rpc import errors
from camera_service.rpc.registry import Registry

REPO = Path(__file__).resolve().parents[2]
GEN_DOCS = REPO / "scripts" / "gen_docs.py"
API_MD = REPO / "docs" / "api.md"
CONFIGURATION_MD = REPO / "docs" / "configuration.md"
SPEC_API = Path(__file__).resolve().parents[3] / "shared/spec/api.md"


@cache
def gen_docs() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_docs", GEN_DOCS)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("gen_docs", module)
    spec.loader.exec_module(module)
    return module


@cache
def registry() -> Registry:
    built: Registry = gen_docs().build_registry()
    return built


def methods_block() -> str:
    text = API_MD.read_text(encoding="utf-8")
    match = re.search(r"<!-- methods:start -->(.*)<!-- methods:end -->", text, re.S)
    assert match, "docs/api.md lacks the methods markers"
    return match.group(1)


def spec_methods() -> list[str]:
    """Method names of the tables in §5 and §8 (API 1.1 additions) of the shared contract."""
    if not SPEC_API.is_file():
        pytest.skip(f"API contract not found at {SPEC_API} (shared/ is not beside the repo)")
    text = SPEC_API.read_text(encoding="utf-8")
    section = re.search(r"^## 5\..*?$(.*?)^## ", text, re.S | re.M)
    additions = re.search(r"^## 8\..*?$(.*)", text, re.S | re.M)
    assert section, "§5 not found in the API contract"
    assert additions, "§8 not found in the API contract"
    names: list[str] = []
    for line in (section.group(1) + additions.group(1)).splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if not line.startswith("|") or not cells or cells[0] in ("method", "path", ""):
            continue
        if "---" in line or re.match(r"(GET|POST) ", cells[0]):  # §8.3's HTTP paths
            continue
        names.extend(name.strip() for name in cells[0].split("/"))
    assert names, "no methods parsed from §5 of the API contract"
    return names


def test_generated_docs_are_current() -> None:
    result = subprocess.run(
        [sys.executable, str(GEN_DOCS), "--check"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert result.returncode == 0, (
        "generated docs are stale; run `python scripts/gen_docs.py`\n" + result.stderr
    )


def test_every_config_key_is_documented() -> None:
    text = CONFIGURATION_MD.read_text(encoding="utf-8")
    keys = [key.dotted for key in gen_docs().config_keys()]
    assert len(keys) > 50
    missing = [key for key in keys if f"`{key}`" not in text]
    assert not missing, f"config keys missing from docs/configuration.md: {missing}"


def test_config_key_walk_covers_the_schema() -> None:
    """The walk that feeds the docs sees every leaf of the JSON schema, nested ones included."""
    keys = {key.dotted for key in gen_docs().config_keys()}
    for expected in (
        "server.port",
        "server.tls.cert_file",
        "server.rate_limit.burst",
        "cameras.sources",
        "cameras.sources[].input_format",
        "logging.format",
    ):
        assert expected in keys


def test_every_registered_method_is_documented() -> None:
    block = methods_block()
    names = registry().names()
    assert "ping" in names and "authenticate" in names
    missing = [name for name in names if f"| `{name}` |" not in block]
    assert not missing, f"registered methods missing from docs/api.md: {missing}"


def test_every_error_code_is_documented() -> None:
    text = API_MD.read_text(encoding="utf-8")
    codes = sorted(
        value
        for name, value in vars(errors).items()
        if name.isupper() and isinstance(value, int) and -32768 <= value <= -32000
    )
    assert len(codes) == len(errors.ERROR_NAMES)
    missing = [code for code in codes if not re.search(rf"^\| {code} \|", text, re.M)]
    assert not missing, f"error codes missing from the catalog in docs/api.md: {missing}"


def test_registered_contract_methods_are_documented() -> None:
    contract = spec_methods()
    registered = set(registry().names())
    block = methods_block()
    missing = [name for name in contract if name in registered and f"| `{name}` |" not in block]
    assert not missing, f"contract methods registered but not documented: {missing}"


def test_generator_knows_the_contract_methods() -> None:
    """gen_docs.CONTRACT_METHODS (used to list what is not built yet) matches the spec."""
    assert sorted(spec_methods()) == sorted(gen_docs().CONTRACT_METHODS)
