"""``encode``: the photo's retrieval vector (a descriptor's, or the preset's image encoder's)."""

from __future__ import annotations

import numpy as np

from geodemo.models.descriptors import _encoder_outputs
from geodemo.pipeline.context import LocateContext
from geodemo.pipeline.stages import register_stage
from geodemo.pipeline.stages.base import Stage


@register_stage
class Encode(Stage):
    """With a ``"descriptor"`` section the descriptor gives the retrieval vector, the raw encoder
    features and (models with a GPS head) the image->GPS embedding; else the encoder's embedding is
    both the retrieval vector and the features. Precomputed vectors (batch prediction) are kept."""

    name = "encode"
    papers = frozenset({"g3", "dualgeo", "geoclip"})
    description = "retrieval vector of the photo (descriptor or encoder)"

    def run(self, ctx: LocateContext) -> None:
        if ctx.embedding is None and ctx.views is not None:
            ctx.embedding = np.asarray(ctx.views[0], dtype=np.float32)  # the whole-photo view
        if ctx.embedding is None:
            descriptor = ctx.components.descriptor
            if descriptor is not None:
                out = self._describe(ctx, descriptor)
                ctx.embedding = np.asarray(out.descriptor[0], dtype=np.float32)
                if out.features is not None:
                    ctx.features = np.asarray(out.features[0], dtype=np.float32)
                if out.gps is not None:
                    ctx.gps = np.asarray(out.gps[0], dtype=np.float32)
            else:
                ctx.embedding = np.asarray(ctx.components.encoder.encode_images([ctx.image])[0], dtype=np.float32)
        if ctx.features is None and ctx.components.descriptor is None:
            ctx.features = ctx.embedding

    @staticmethod
    def _describe(ctx: LocateContext, descriptor):
        """The descriptor's output; a dual-view descriptor reuses the ``segment`` stage's label map
        when both come from the same segmenter (one segmentation per photo)."""
        seg = ctx.result.segmentation
        own = getattr(descriptor, "segmenter", None)
        if seg is not None and seg.label_map is not None and own is not None and own is ctx.components.segmenter:
            feats, tokens = _encoder_outputs(descriptor.encoder, [ctx.image], descriptor.batch_size, tokens=True)
            return descriptor.describe_features(feats, tokens, [np.asarray(seg.label_map)])
        return descriptor.describe([ctx.image])
