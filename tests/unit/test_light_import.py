from __future__ import annotations

import subprocess
import sys


def test_import_lexlip_es_pulls_no_heavy_dependency() -> None:
    code = (
        "import sys, lexlip_es, lexlip_es.query, lexlip_es.features, lexlip_es.cli\n"
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
