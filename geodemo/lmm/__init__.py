"""Large multimodal model stage (G3 geo-diversification): backends, prompts, parsing, records.

    from geodemo.lmm import LMMStage, LMMContext
    stage = LMMStage.from_config({"backend": "ollama", "model": "llava:7b", "prompts": ["zero-shot", "rag-5"]})
    records = stage.run(photo, LMMContext(neighbours=neighbours, dissimilar=dissimilar))
"""

from geodemo.lmm.backends import BackendError, LMMBackend, create_backend, list_backends, register_backend
from geodemo.lmm.parse import ParsedAnswer, parse_coordinate
from geodemo.lmm.prompts import ANSWER_PREFIX, DEFAULT_PROMPTS, Prompt, build_prompt, build_prompts
from geodemo.lmm.stage import LMMConfig, LMMContext, LMMStage

__all__ = [
    "ANSWER_PREFIX",
    "BackendError",
    "DEFAULT_PROMPTS",
    "LMMBackend",
    "LMMConfig",
    "LMMContext",
    "LMMStage",
    "ParsedAnswer",
    "Prompt",
    "build_prompt",
    "build_prompts",
    "create_backend",
    "list_backends",
    "parse_coordinate",
    "register_backend",
]
