"""The edge's layers are one list (face_api/http/edge.py): ``service.py`` adds ``edge_layers`` in
order, and the docs (docs/architecture.md, "How it works") and the module describe that same
order. Settings are read once per process, by the service modules, and handed to what they build."""

from __future__ import annotations

import re

from face_api.http import edge
from face_api.ops.settings import Settings
from tests.paths import ROOT


def listed_order() -> list[str]:
    built = edge.edge_layers(
        Settings(api_keys=("k",)),
        docs=dict,
        title="t",
        version="0",
        json_routes=[],
        file_routes={},
    )
    return [cls.__name__ for cls, _ in built]


def names_in(text: str) -> list[str]:
    """The layer class names a text mentions, in the order it first mentions them."""
    order: list[str] = []
    for name in re.findall(r"`(\w+)`", text):
        if name in listed_order() and name not in order:
            order.append(name)
    return order


def test_the_docs_describe_the_layers_in_the_order_service_applies_them():
    page = (ROOT / "docs" / "architecture.md").read_text()
    section = page.split("\n# How it works\n", 1)[1].split("\n## ", 1)[0]
    assert names_in(section) == listed_order()


def test_the_edge_module_documents_its_own_order():
    assert names_in(edge.__doc__ or "") == listed_order()


def test_service_py_adds_the_edge_from_the_one_list():
    source = (ROOT / "service.py").read_text()
    assert source.count("add_asgi_middleware(") == 1 and "edge_layers(" in source


def test_only_the_service_modules_read_the_settings():
    readers = sorted(
        str(path.relative_to(ROOT))
        for path in [
            ROOT / "service.py",
            *(ROOT / "face_api").rglob("*.py"),
            *(ROOT / "runners").glob("*.py"),
        ]
        if "get_settings()" in path.read_text() and path.name != "settings.py"
    )
    assert readers == [
        "face_api/galleries/__main__.py",  # the galleries command: an entry point, as service.py
        "runners/gallery_service.py",
        "runners/insightface_runner.py",
        "service.py",
    ]
