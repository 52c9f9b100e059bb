"""A transcription of DualGeo's reference model (CJ310177/DualGeo ``utils/DualView_seg.py``), tests only.

Written from ``SemanticEncoder``, ``CrossAttentionFusion``, ``DualViewG3`` (``forward``, ``clip_loss``,
``extract_enhanced_features``) and ``IndexSearch_DualGeo.py`` (the index vector), independently of
geodemo's code. Differences: the CLIP tower is built from a config instead of ``from_pretrained`` (no
hub), tensors stay on the CPU, and the location encoder is the G3 transcription (DualGeo's
``CustomLocationEncoder`` is G3's, line for line).
"""

from __future__ import annotations

import torch
import torchvision.models as tv_models
from torch import nn
from torch.nn import functional as F

from tests.g3_reference import MercatorLocationEncoder


class SemanticEncoderRef(nn.Module):
    def __init__(self, output_dim: int = 768):
        super().__init__()
        self.resnet = tv_models.resnet18(weights=None)
        self.resnet.conv1 = nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.features = nn.Sequential(*list(self.resnet.children())[:-1])
        self.projection = nn.Linear(512, output_dim)

    def forward(self, x):
        return self.projection(torch.flatten(self.features(x), 1))


class CrossAttentionFusionRef(nn.Module):
    """DualGeo's fusion as written: ``view(B, heads, head_dim).transpose(0, 1)`` makes the batch the
    sequence axis, so each photo attends to every photo of the batch."""

    def __init__(self, embed_dim: int = 768, num_heads: int = 8):
        super().__init__()
        self.embed_dim, self.num_heads, self.head_dim = embed_dim, num_heads, embed_dim // num_heads
        self.q_proj_rgb = nn.Linear(embed_dim, embed_dim)
        self.k_proj_seg = nn.Linear(embed_dim, embed_dim)
        self.v_proj_seg = nn.Linear(embed_dim, embed_dim)
        self.q_proj_seg = nn.Linear(embed_dim, embed_dim)
        self.k_proj_rgb = nn.Linear(embed_dim, embed_dim)
        self.v_proj_rgb = nn.Linear(embed_dim, embed_dim)
        self.output_proj_rgb = nn.Linear(embed_dim, embed_dim)
        self.output_proj_seg = nn.Linear(embed_dim, embed_dim)
        self.norm_rgb = nn.LayerNorm(embed_dim)
        self.norm_seg = nn.LayerNorm(embed_dim)
        self.dropout = nn.Dropout(0.1)

    def _split(self, x):
        return x.view(x.size(0), self.num_heads, self.head_dim).transpose(0, 1)  # (heads, B, head_dim)

    def forward(self, rgb_feat, seg_feat):
        b = rgb_feat.size(0)
        q, k, v = self._split(self.q_proj_rgb(rgb_feat)), self._split(self.k_proj_seg(seg_feat)), self._split(self.v_proj_seg(seg_feat))
        w = F.softmax(q @ k.transpose(-2, -1) / self.head_dim**0.5, dim=-1)
        rgb_enh = self.output_proj_rgb((w @ v).transpose(0, 1).contiguous().view(b, self.embed_dim))
        q, k, v = self._split(self.q_proj_seg(seg_feat)), self._split(self.k_proj_rgb(rgb_feat)), self._split(self.v_proj_rgb(rgb_feat))
        w = F.softmax(q @ k.transpose(-2, -1) / self.head_dim**0.5, dim=-1)
        seg_enh = self.output_proj_seg((w @ v).transpose(0, 1).contiguous().view(b, self.embed_dim))
        return (self.norm_rgb(rgb_feat + self.dropout(rgb_enh)), self.norm_seg(seg_feat + self.dropout(seg_enh)))


def _two_layer(d_in, d_mid, d_out):
    return nn.Sequential(nn.Linear(d_in, d_mid), nn.ReLU(), nn.Linear(d_mid, d_out))


class DualViewReference(nn.Module):
    """``DualViewG3`` with the CLIP vision tower of ``clip_model``."""

    def __init__(self, clip_model):
        super().__init__()
        self.vision_model_rgb = clip_model.vision_model
        self.vision_projection_rgb = clip_model.visual_projection
        self.semantic_encoder = SemanticEncoderRef(output_dim=768)
        self.vision_projection_seg = nn.Linear(768, 768, bias=False)
        self.cross_attn_fusion = CrossAttentionFusionRef(embed_dim=768, num_heads=8)
        self.logit_scale_rgb = nn.Parameter(torch.tensor(3.99))
        self.logit_scale_seg = nn.Parameter(torch.tensor(3.99))
        self.location_encoder = MercatorLocationEncoder()
        self.rgb_projection_else = _two_layer(768, 768, 768)
        self.seg_projection_else = _two_layer(768, 768, 768)
        self.location_projection_else = _two_layer(512, 512, 768)
        self.vision_model_rgb.requires_grad_(False)
        self.vision_projection_rgb.requires_grad_(False)

    @staticmethod
    def clip_loss(similarity):
        n = len(similarity)
        return (F.cross_entropy(similarity, torch.arange(n)) + F.cross_entropy(similarity.t(), torch.arange(n))) / 2.0

    def extract_enhanced_features(self, rgb_images, seg_images):
        rgb = self.vision_projection_rgb(self.vision_model_rgb(rgb_images)[1])
        seg = self.vision_projection_seg(self.semantic_encoder(seg_images))
        return self.cross_attn_fusion(rgb, seg)

    def forward(self, rgb_images, seg_images, longitude, latitude):
        rgb, seg = self.extract_enhanced_features(rgb_images, seg_images)
        loc = self.location_encoder(torch.stack((latitude, longitude), dim=1))
        rgb_p, seg_p, loc_p = self.rgb_projection_else(rgb), self.seg_projection_else(seg), self.location_projection_else(loc)
        rgb_p = rgb_p / rgb_p.norm(p=2, dim=-1, keepdim=True)
        seg_p = seg_p / seg_p.norm(p=2, dim=-1, keepdim=True)
        loc_p = loc_p / loc_p.norm(p=2, dim=-1, keepdim=True)
        logits_rgb = rgb_p @ loc_p.t() * self.logit_scale_rgb.exp()
        logits_seg = seg_p @ loc_p.t() * self.logit_scale_seg.exp()
        loss_rgb, loss_seg = self.clip_loss(logits_rgb), self.clip_loss(logits_seg)
        return {"logits_per_rgb_with_gps": logits_rgb, "logits_per_seg_with_gps": logits_seg,
                "loss": loss_rgb + loss_seg, "rgb_image_embeds": rgb, "seg_image_embeds": seg}

    @torch.no_grad()
    def index_vector(self, rgb_images, seg_images):
        """``IndexSearch_DualGeo.py``: [unit enhanced RGB view, unit CLIP projection]."""
        rgb = F.normalize(self.vision_projection_rgb(self.vision_model_rgb(rgb_images)[1]), p=2, dim=-1)
        enhanced, _ = self.extract_enhanced_features(rgb_images, seg_images)
        return torch.cat([F.normalize(enhanced, p=2, dim=-1), rgb], dim=1)
