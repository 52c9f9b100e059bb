"""geodemo: worldwide photo geo-localization, G3 and DualGeo reproduced and explained."""

from geodemo._compat import ensure_torchvision_ops

ensure_torchvision_ops()

__version__ = "0.1.0"
