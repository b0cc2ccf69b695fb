from __future__ import annotations

import subprocess
import sys


def test_import_lexlip_es_pulls_no_heavy_dependency() -> None:
    code = (
        "import sys, lexlip_es, lexlip_es.query, lexlip_es.features, lexlip_app.cli\n"
        "heavy = [m for m in ('torch', 'transformers', 'timm', 'opensearchpy', 'elasticsearch', 'celery') "
        "if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_the_flat_public_api_resolves_lazily_and_keeps_torch_out_of_query_services() -> None:
    code = (
        "import sys\n"
        "from lexlip_es import (LexSearch, AsyncLexSearch, FastMode, create_index, LexiconLayout, IndexOptions,\n"
        "    BulkWriter, LexiconDocument, load_encoder)\n"
        "import lexlip_es\n"
        "assert lexlip_es.LexSearch is LexSearch and callable(load_encoder)\n"
        "print('torch' in sys.modules)\n"
        "from lexlip_es import LexLIPEncoder\n"
        "print('torch' in sys.modules, sorted(n for n in lexlip_es.__all__ if not hasattr(lexlip_es, n)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split("\n")[:2] == ["False", "True []"]


def test_an_unknown_name_is_an_attribute_error() -> None:
    import pytest

    import lexlip_es

    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        lexlip_es.Nope  # noqa: B018


def test_the_library_core_never_imports_the_trainer_ingest_or_the_application() -> None:
    """Every import statement in lexlip_es/, lazy ones inside functions included: the core stands alone."""
    import ast
    from pathlib import Path

    import lexlip_es

    outside = ("trainer", "ingest", "lexlip_app")
    root = Path(lexlip_es.__file__).parent
    found = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            found += [f"{path.relative_to(root)}: {n}" for n in names if n.split(".")[0] in outside]
    assert len(list(root.rglob("*.py"))) > 30
    assert found == []
