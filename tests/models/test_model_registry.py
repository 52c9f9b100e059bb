"""Model registry: names, families, loaders, device/dtype choice and fast, clear failures offline."""

from __future__ import annotations

import importlib
import time

import pytest

import geodemo  # noqa: F401
from geodemo.models import (
    ModelSpec,
    ModelUnavailableError,
    create_model,
    get_spec,
    list_models,
    register_model,
)
from geodemo.models.loading import hub_reachable, resolve_device, resolve_dtype

OURS = {
    "clip-vit-l14": "image-encoder",
    "hf-clip-vit-l14": "image-encoder",
    "mobilenet-v1-imagenet": "image-encoder",
    "mobilenet-v2-imagenet-classifier": "classifier",
    "segformer-b5-ade": "segmenter",
    "deeplab-mnv2-ade": "segmenter",
}
HUB_MODELS = {
    "clip-vit-l14": "timm/vit_large_patch14_clip_224.openai",
    "hf-clip-vit-l14": "openai/clip-vit-large-patch14",
    "segformer-b5-ade": "nvidia/segformer-b5-finetuned-ade-640-640",
}


def test_registered_names_families_and_loaders():
    names = list_models()
    for name, family in OURS.items():
        assert name in names
        spec = get_spec(name)
        assert spec.family == family and spec.description
        module, func = spec.loader.split(":")
        assert callable(getattr(importlib.import_module(module), func))
    assert set(list_models("segmenter")) >= {"segformer-b5-ade", "deeplab-mnv2-ade"}
    assert "deeplab-mnv2-ade" not in list_models("image-encoder")
    with pytest.raises(KeyError, match="mobilenet-v1-imagenet"):  # the error lists the known names
        get_spec("no-such-model")


def test_register_a_new_model_by_config(shared):
    from geodemo.models import registry

    list_models()  # built-in configs first
    spec = ModelSpec(
        name="test-mobilenet-2-threads",
        family="image-encoder",
        loader="geodemo.models.mobilenet:load_mobilenet_v1_encoder",
        config={"num_threads": 2},
    )
    register_model(spec)
    try:
        assert "test-mobilenet-2-threads" in list_models("image-encoder")
        enc = create_model("test-mobilenet-2-threads", num_threads=1)  # overrides replace config entries
        assert enc.embed_dim == 1024
    finally:
        registry.MODELS.remove(spec.name)
    assert "test-mobilenet-2-threads" not in list_models()


def test_device_and_dtype_choice():
    import torch

    expected = "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
    assert resolve_device("auto") == resolve_device(None) == expected
    assert resolve_device("cuda:1") == "cuda:1"
    assert resolve_dtype("auto", "cpu") is torch.float32
    assert resolve_dtype("bf16", "cuda") is torch.bfloat16
    assert resolve_dtype("fp16", "cpu") is torch.float16
    assert resolve_dtype(torch.float64, "cpu") is torch.float64
    with pytest.raises(ValueError, match="unknown dtype"):
        resolve_dtype("int3", "cpu")


@pytest.fixture()
def empty_hub_cache(tmp_path, monkeypatch):
    """An empty Hugging Face cache, so a developer's downloaded weights cannot make the test pass."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    return tmp_path / "hub"


@pytest.mark.parametrize("name", sorted(HUB_MODELS))
def test_hub_models_fail_fast_and_clearly_offline(name, empty_hub_cache, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.perf_counter()
    with pytest.raises(ModelUnavailableError) as info:
        create_model(name)
    elapsed = time.perf_counter() - start
    message = str(info.value)
    print(f"{name}: {elapsed:.2f} s: {message[:160]}")
    assert elapsed < 5.0
    assert name in message and HUB_MODELS[name] in message
    assert "HF_HUB_OFFLINE" in message and "local_dir" in message


def test_unreachable_hub_without_offline_flag_fails_fast(empty_hub_cache, monkeypatch):
    """No HF_HUB_OFFLINE, but the endpoint refuses connections: one probe, cache only, no retry loop."""
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "https://127.0.0.1:9")
    assert not hub_reachable()
    start = time.perf_counter()
    with pytest.raises(ModelUnavailableError, match="hub unreachable"):
        create_model("segformer-b5-ade")
    assert time.perf_counter() - start < 5.0


def test_missing_tflite_weights_name_the_model_path_and_fix(tmp_path, monkeypatch):
    """A model the embedded default does not carry (MobileNet V2's classifier) fails with the place
    looked and the fix; the two the bundle carries fall back to assets/ when the shared folder lacks them."""
    monkeypatch.setenv("GEODEMO_SHARED", str(tmp_path))
    with pytest.raises(ModelUnavailableError) as info:
        create_model("mobilenet-v2-imagenet-classifier")
    message = str(info.value)  # the technical message names the places looked; the hint, the fix
    assert "mobilenet-v2-imagenet-classifier" in message and str(tmp_path / "models" / "mobilenet-imagenet") in message
    assert "GEODEMO_SHARED" in info.value.hint
    for name in ("mobilenet-v1-imagenet", "deeplab-mnv2-ade"):
        assert create_model(name) is not None


def test_missing_local_dir_is_named(tmp_path):
    missing = tmp_path / "nowhere"
    for name in ("hf-clip-vit-l14", "segformer-b5-ade", "clip-vit-l14"):
        with pytest.raises(ModelUnavailableError, match="nowhere"):
            create_model(name, local_dir=missing)


def test_mobilenet_v2_classifier_labels_a_street_view(shared):
    from geodemo.imageio import load_image

    clf = create_model("mobilenet-v2-imagenet-classifier")
    assert len(clf.labels) == 1001 and clf.labels[0] == "background"
    photos = sorted((shared / "data" / "osv5m-sample" / "images").glob("*.jpg"))[:3]
    for path in photos:
        top = clf.classify(load_image(path), top=5)
        assert len(top) == 5 and all(label != "background" for label, _ in top)
        probs = [p for _, p in top]
        assert probs == sorted(probs, reverse=True) and 0 < probs[0] <= 1
        print(path.name, top[:3])


def test_hub_model_loads_from_the_local_hub_cache_offline(empty_hub_cache, monkeypatch):
    """What a Space does after its first download: offline, the cached snapshot is found and loaded."""
    from geodemo.models.segmentation import ADE20K_CLASSES

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    tiny = {"depths": [1, 1, 1, 1], "hidden_sizes": [8, 16, 24, 32], "num_attention_heads": [1, 1, 2, 2],
            "decoder_hidden_size": 16, "num_labels": 150}  # fmt: skip
    built = create_model("segformer-b5-ade", random_init=True, config=tiny, image_size=64, device="cpu")
    snapshot = empty_hub_cache / "models--nvidia--segformer-b5-finetuned-ade-640-640" / "snapshots" / "abc123"
    built.model.save_pretrained(snapshot)
    (snapshot.parent.parent / "refs").mkdir()
    (snapshot.parent.parent / "refs" / "main").write_text("abc123")
    loaded = create_model("segformer-b5-ade", image_size=64, device="cpu")
    assert loaded.model.config.depths == [1, 1, 1, 1]
    assert loaded.model.config.id2label[0] == ADE20K_CLASSES[1] == "wall"
    for a, b in zip(built.model.parameters(), loaded.model.parameters(), strict=True):
        assert (a == b).all()
