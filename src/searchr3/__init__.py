"""searchr3: a small LLM reasons about a search query, then emits an embedding.

>>> from searchr3 import SearchR3
>>> model = SearchR3.from_pretrained()   # the best released adapter (DEFAULT_MODEL)  # doctest: +SKIP
>>> docs = model.embed_documents(["Aspirin inhibits platelet aggregation."])
>>> query = model.embed_queries(["does aspirin thin the blood?"], reasoning=True)
"""

from ._version import __version__
from .assets import ALIASES, BUNDLED_MODELS, DEFAULT_MODEL, RELEASED_MODELS, registered_names, resolve_model
from .config import ConfigError
from .data import DataError, Document, read_corpus, read_qrels, read_queries
from .hybrid import HybridConfig
from .index import IndexMismatchError, VectorIndex
from .decoding import Reasoning
from .modeling import EmbedConfig, SearchR3
from .readout import embed_token_states
from .mteb_encoder import MTEBEncoder
from .prompts import EMBED_TOKEN, PromptBuilder, document_text
from .quantization import quantize_int8
from .search import Hit, SearchResult, build_index, search
from .service_process import ServiceProcess
from . import ict, wiki, wordnet  # register their sets with data.resolve_dataset (each built on first use)

_SERVICE = ("ServeConfig", "Service", "create_app")  # need FastAPI: imported on first use

__all__ = [
    "ALIASES", "BUNDLED_MODELS", "ConfigError", "DEFAULT_MODEL", "DataError", "Document", "EMBED_TOKEN", "EmbedConfig",
    "Hit", "HybridConfig", "IndexMismatchError", "MTEBEncoder", "PromptBuilder", "RELEASED_MODELS", "Reasoning", "SearchR3",
    "SearchResult", "ServiceProcess", "VectorIndex", "build_index", "document_text", "embed_token_states",
    "quantize_int8", "read_corpus", "read_qrels", "read_queries", "registered_names", "resolve_model", "search", *_SERVICE,
]

def __getattr__(name: str):
    if name in _SERVICE:
        from . import serve

        return getattr(serve, name)
    raise AttributeError(f"module 'searchr3' has no attribute {name!r}")
