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
