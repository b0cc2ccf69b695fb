"""lexlip-es: image search by learned sparse lexicons on Elasticsearch and OpenSearch.

Importing this package never imports torch: query building and engine helpers work without it.
"""

from lexlip_es.errors import EngineError, EngineStartError, LexlipError
from lexlip_es.settings import Settings
from lexlip_es.sparse import SparseVector, Vocabulary

__version__ = "0.1.0"

__all__ = ["EngineError", "EngineStartError", "LexlipError", "Settings", "SparseVector", "Vocabulary", "__version__"]
