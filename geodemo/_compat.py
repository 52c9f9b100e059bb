"""Compatibility guard for torchvision wheels whose C++ ops do not load on this torch.

PyPI's ``torchvision==0.28.0`` is a CUDA build; on the CPU build of torch 2.13 its ``_C``
extension fails to load, and ``import torchvision`` then dies registering fake kernels for
``torchvision::nms``/``qnms`` that were never defined. That breaks ``open_clip``, ``timm``,
``transformers`` image processors and ``geoclip``. This guard acts only in that case: it defines
the two ops with pure-torch kernels so the import succeeds and ``torch.ops.torchvision.nms`` works.
Where the extension loads (a matching CPU or CUDA install), it does nothing.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

__all__ = ["ensure_torchvision_ops", "nms_reference"]

_STATE: str | None = None
_LIBRARY = None  # keeps the torch.library.Library alive


def nms_reference(boxes, scores, iou_threshold: float):
    """Greedy non-maximum suppression in plain torch; boxes are ``(N, 4)`` x1, y1, x2, y2."""
    import torch

    if boxes.numel() == 0:
        return torch.empty(0, dtype=torch.long, device=boxes.device)
    x1, y1, x2, y2 = boxes.unbind(1)
    areas = (x2 - x1).clamp(min=0) * (y2 - y1).clamp(min=0)
    order = scores.argsort(descending=True)
    keep = []
    suppressed = torch.zeros(len(boxes), dtype=torch.bool, device=boxes.device)
    for idx in order.tolist():
        if suppressed[idx]:
            continue
        keep.append(idx)
        xx1 = torch.maximum(x1[idx], x1)
        yy1 = torch.maximum(y1[idx], y1)
        xx2 = torch.minimum(x2[idx], x2)
        yy2 = torch.minimum(y2[idx], y2)
        inter = (xx2 - xx1).clamp(min=0) * (yy2 - yy1).clamp(min=0)
        iou = inter / (areas[idx] + areas - inter).clamp(min=1e-12)
        suppressed |= iou > iou_threshold
    return torch.tensor(keep, dtype=torch.long, device=boxes.device)


def _native_extension_loads() -> bool:
    import torch

    spec = importlib.util.find_spec("torchvision")
    if spec is None or not spec.submodule_search_locations:
        return True  # torchvision absent: nothing to guard
    folder = Path(list(spec.submodule_search_locations)[0])
    libs = sorted(folder.glob("_C*.so")) + sorted(folder.glob("_C*.pyd"))
    if not libs:
        return False
    try:
        torch.ops.load_library(str(libs[0]))
    except (OSError, RuntimeError, ImportError):
        return False
    return hasattr(torch.ops.torchvision, "nms")


def ensure_torchvision_ops() -> str:
    """Make ``import torchvision`` work; returns ``"native"``, ``"fallback"`` or ``"absent"``."""
    global _STATE, _LIBRARY
    if _STATE is not None:
        return _STATE
    if importlib.util.find_spec("torchvision") is None:
        _STATE = "absent"
        return _STATE
    if _native_extension_loads():
        _STATE = "native"
        return _STATE

    import torch

    lib = torch.library.Library("torchvision", "DEF")
    lib.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    lib.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")

    def _qnms(dets, scores, iou_threshold):
        return nms_reference(dets.dequantize(), scores.dequantize(), iou_threshold)

    lib.impl("nms", nms_reference, "CompositeExplicitAutograd")
    lib.impl("qnms", _qnms, "CompositeExplicitAutograd")
    _LIBRARY = lib
    _STATE = "fallback"
    return _STATE
