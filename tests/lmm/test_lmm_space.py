"""The Space's vision-language backend (transformers) on a tiny random-weight LLaVA built here, and
the page's view of which LMM backends are reachable."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

transformers = pytest.importorskip("transformers")


def _tiny_llava(folder) -> None:
    """LLaVA-Interleave's architecture (SigLIP vision tower + Qwen2 LM), tiny and random, saved locally."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import (
        CLIPImageProcessor,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
        PreTrainedTokenizerFast,
        Qwen2Config,
        SiglipVisionConfig,
    )

    words = "where was this photo taken answer lat lon { } : , . 0 1 2 3 4 5 6 7 8 9 user assistant".split()
    vocab = {w: i for i, w in enumerate(["<unk>", "<pad>", "<|im_start|>", "<|im_end|>", "<image>", *words])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    template = ("{% for m in messages %}<|im_start|> {{ m['role'] }} {% for c in m['content'] %}"
                "{% if c['type'] == 'image' %}<image> {% else %}{{ c['text'] }} {% endif %}{% endfor %}"
                "<|im_end|> {% endfor %}{% if add_generation_prompt %}<|im_start|> assistant {% endif %}")
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", pad_token="<pad>",
                                        eos_token="<|im_end|>", extra_special_tokens={"image_token": "<image>"})
    image_processor = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    processor = LlavaProcessor(image_processor=image_processor, tokenizer=tokenizer, patch_size=8,
                               vision_feature_select_strategy="full", chat_template=template,
                               num_additional_image_tokens=0)
    config = LlavaConfig(
        vision_config=SiglipVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                         num_attention_heads=2, image_size=32, patch_size=8),
        text_config=Qwen2Config(vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=256,
                                eos_token_id=vocab["<|im_end|>"], pad_token_id=vocab["<pad>"]),
        image_token_index=vocab["<image>"], vision_feature_select_strategy="full", vision_feature_layer=-1,
    )
    torch.manual_seed(0)
    LlavaForConditionalGeneration(config).save_pretrained(folder)
    processor.save_pretrained(folder)


@pytest.fixture(scope="module")
def tiny_llava(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny-llava")
    _tiny_llava(folder)
    return folder


def test_space_backend_answers_about_the_photo(tiny_llava, monkeypatch):
    from geodemo.lmm.backends import create_backend
    from geodemo.lmm.backends.hf import DEFAULT_VLM_MODEL, TransformersVLMBackend, clear_model_cache

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    clear_model_cache()
    backend = create_backend("transformers", model=str(tiny_llava), device="cpu", max_tokens=6)
    assert isinstance(backend, TransformersVLMBackend) and backend.sees_image
    photo = Image.fromarray(np.random.default_rng(0).integers(0, 255, (48, 64, 3), dtype=np.uint8))
    first = backend.generate(photo, "where was this photo taken", n=2, temperature=0.8, seed=3)
    again = backend.generate(photo, "where was this photo taken", n=2, temperature=0.8, seed=3)
    assert len(first) == 2 and all(isinstance(a, str) for a in first)
    assert first == again  # seeded sampling repeats
    greedy = backend.generate(photo, "where was this photo taken", n=1, temperature=0.0)
    assert len(greedy) == 1
    # without a model the backend uses the configured small LLaVA, overridable by the environment
    assert TransformersVLMBackend(device="cpu").model == DEFAULT_VLM_MODEL
    monkeypatch.setenv("GEODEMO_VLM_MODEL", str(tiny_llava))
    assert TransformersVLMBackend(device="cpu").model == str(tiny_llava)
    assert TransformersVLMBackend.availability() is None  # a local folder is reachable


def test_unreachable_backends_say_how_to_enable_them(monkeypatch, tmp_path):
    from geodemo.lmm.backends import backend_availability

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("GEODEMO_VLM_MODEL", "nobody/not-downloaded-vlm")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setenv("OLLAMA_HOST", "http://127.0.0.1:9")  # discard port: nothing answers
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    status = backend_availability(timeout_s=0.5)
    assert status["gguf"] is None  # the Gemma wheel is installed here
    assert "ollama pull llava:7b" in status["ollama"] and "ollama serve" in status["ollama"]
    assert "OPENAI_API_KEY" in status["openai"]
    assert "nobody/not-downloaded-vlm" in status["transformers"]


def test_space_gpu_wrapper_is_a_no_op_without_spaces():
    from geodemo.lmm.backends.hf import on_space_gpu

    def f(x):
        return x + 1

    try:
        import spaces  # noqa: F401
    except ImportError:
        assert on_space_gpu(f) is f
    else:  # outside ZeroGPU, spaces.GPU leaves the function's behaviour alone
        assert on_space_gpu(f)(1) == 2
