"""The Space's configuration stays in step: README front matter, requirements, packages.txt,
.gitattributes, and what ``geodemo space-deploy`` uploads (``HfApi`` replaced by a recorder)."""

from __future__ import annotations

import fnmatch
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib
import yaml

from geodemo.space import CPU_TORCH_INDEX, DeployError, deploy, space_requirements

REPO_ROOT = Path(__file__).resolve().parent.parent
# Space hardware names (huggingface_hub.SpaceHardware)
HARDWARE = {"cpu-basic", "cpu-upgrade", "t4-small", "t4-medium", "l4x1", "a10g-small", "a10g-large", "zero-a10g"}
TRAINING_ONLY = {"tensorboard"}


def _front_matter() -> dict:
    text = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    block = re.match(r"^---\n(.*?)\n---\n", text, re.DOTALL)
    assert block, "README.md has no front matter"
    return yaml.safe_load(block.group(1))


def _pins(name: str = "requirements.txt") -> dict[str, str]:
    lines = (REPO_ROOT / name).read_text().splitlines()
    return dict(line.split("==", 1) for line in lines if "==" in line and not line.startswith("#"))


def _tracked() -> list[str]:
    out = subprocess.run(["git", "ls-files", "-z"], cwd=REPO_ROOT, capture_output=True, check=True).stdout
    return [n for n in out.decode().split("\0") if n and (REPO_ROOT / n).is_file()]


def _lfs_globs() -> list[str]:
    return [line.split()[0] for line in (REPO_ROOT / ".gitattributes").read_text().splitlines()
            if line.strip() and not line.startswith("#") and "filter=lfs" in line]


def _binary(path: Path) -> bool:
    return b"\0" in path.read_bytes()[:8192]


def test_front_matter_matches_requirements_and_the_tested_python():
    meta = _front_matter()
    assert meta["sdk"] == "gradio" and meta["sdk_version"] == _pins()["gradio"]
    assert (REPO_ROOT / meta["app_file"]).is_file()
    assert meta["python_version"] == f"{sys.version_info.major}.{sys.version_info.minor}"
    assert meta["suggested_hardware"] in HARDWARE


def test_preload_from_hub_holds_the_default_presets_hub_models():
    """Every hub repo the default presets' models load, and the page's VLM, are fetched at build time."""
    from geodemo.lmm.backends.hf import DEFAULT_VLM_MODEL
    from geodemo.pipeline.choice import DEFAULT_ORDER

    preload = {entry.split()[0]: (entry.split()[1].split(",") if len(entry.split()) > 1 else None)
               for entry in _front_matter()["preload_from_hub"]}
    configs = REPO_ROOT / "geodemo" / "models" / "configs"
    needed = set()
    for name in DEFAULT_ORDER:
        preset = json.loads((REPO_ROOT / "geodemo" / "pipeline" / "presets" / f"{name}.json").read_text())
        models = [preset.get("encoder"), *(preset.get("descriptor") or {}).values()]
        for model in filter(None, models):
            path = configs / f"{model}.json"
            if path.is_file():
                pretrained = json.loads(path.read_text())["config"].get("pretrained")
                if isinstance(pretrained, str) and pretrained.count("/") == 1:
                    needed.add(pretrained)
    assert "openai/clip-vit-large-patch14" in needed  # geoclip-plus's backbone
    assert needed | {DEFAULT_VLM_MODEL} <= set(preload)
    clip_files = preload["openai/clip-vit-large-patch14"]
    assert {"config.json", "model.safetensors", "preprocessor_config.json"} <= set(clip_files)
    assert not any(f.endswith((".bin", ".h5", ".msgpack")) for f in clip_files)  # one copy of the weights


def test_packages_txt_is_what_setup_installs():
    packages = [p.strip() for p in (REPO_ROOT / "packages.txt").read_text().splitlines() if p.strip()]
    setup = (REPO_ROOT / "scripts" / "setup.sh").read_text()
    assert packages and all(re.search(rf"\b{re.escape(p)}\b", setup) for p in packages)


def test_training_packages_are_an_extra_not_the_spaces_install():
    runtime, train = _pins(), _pins("requirements-train.txt")
    assert TRAINING_ONLY <= set(train) and not TRAINING_ONLY & set(runtime)
    pyproject = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    dynamic = pyproject["tool"]["setuptools"]["dynamic"]
    assert dynamic["dependencies"]["file"] == ["requirements.txt"]
    assert dynamic["optional-dependencies"]["train"]["file"] == ["requirements-train.txt"]
    dev = (REPO_ROOT / "requirements-dev.txt").read_text().split()
    assert {"requirements.txt", "requirements-train.txt"} <= set(dev)  # this machine still installs both
    assert runtime["torch"] == "2.13.0"  # setup.sh keeps this machine's torch (CPU wheel from its wheel folder)


def test_cpu_space_gets_the_cpu_torch_wheel_and_a_gpu_space_the_cuda_one():
    cpu = [ln for ln in space_requirements("cpu-basic").splitlines() if not ln.startswith("#")]
    gpu = [ln for ln in space_requirements("t4-small").splitlines() if not ln.startswith("#")]
    assert f"--extra-index-url {CPU_TORCH_INDEX}" in cpu
    assert cpu.index(f"--extra-index-url {CPU_TORCH_INDEX}") < cpu.index("torch==2.13.0")
    assert not any(CPU_TORCH_INDEX in line for line in gpu) and "torch==2.13.0" in gpu
    assert [ln for ln in cpu if "==" in ln] == [ln for ln in gpu if "==" in ln]  # the same pins


def test_every_shipped_binary_over_1mb_is_stored_through_lfs():
    globs = _lfs_globs()
    large = [f for f in _tracked() if (REPO_ROOT / f).stat().st_size > 1 << 20 and _binary(REPO_ROOT / f)]
    assert large  # the bundle has several (views.npy, the TFLite models, the verifier)
    uncovered = [f for f in large if not any(fnmatch.fnmatch(Path(f).name, g) for g in globs)]
    assert not uncovered
    for ext in ("*.npy", "*.tflite", "*.safetensors", "*.pth", "*.gguf", "*.jpg"):
        assert ext in globs


class RecordingApi:
    """Stands for ``huggingface_hub.HfApi``: records the calls and the files of the uploaded folder."""

    def __init__(self):
        self.calls: list[tuple[str, tuple, dict]] = []
        self.uploaded: dict[str, bytes] = {}

    def create_repo(self, *args, **kwargs):
        self.calls.append(("create_repo", args, kwargs))
        return f"https://huggingface.co/spaces/{args[0]}"

    def upload_folder(self, **kwargs):
        self.calls.append(("upload_folder", (), kwargs))
        root = Path(kwargs["folder_path"])
        self.uploaded = {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_deploy_uploads_exactly_the_spaces_files():
    api = RecordingApi()
    report = deploy("someone/geodemo", hardware="cpu-basic", api=api)
    (create, _, create_kw), (upload, _, upload_kw) = api.calls
    assert create == "create_repo" and create_kw["repo_type"] == "space" and create_kw["space_sdk"] == "gradio"
    assert upload == "upload_folder" and upload_kw["repo_type"] == "space" and upload_kw["repo_id"] == "someone/geodemo"
    top = ("app.py", "README.md", "requirements.txt", "packages.txt", ".gitattributes")
    expected = {f for f in _tracked() if f in top or f.startswith(("geodemo/", "assets/"))}
    assert set(api.uploaded) == expected == set(report.files)
    assert not any(f.startswith(("tests/", "scripts/", ".ci/")) for f in api.uploaded)
    assert api.uploaded["requirements.txt"].decode() == space_requirements("cpu-basic")
    assert api.uploaded["app.py"] == (REPO_ROOT / "app.py").read_bytes()
    globs = _lfs_globs()
    for name, data in api.uploaded.items():
        if len(data) > 1 << 20 and b"\0" in data[:8192]:
            assert any(fnmatch.fnmatch(Path(name).name, g) for g in globs), name
    assert report.uploaded and "someone/geodemo" in report.summary()


def test_deploy_refuses_a_large_binary_gitattributes_misses(tmp_path):
    def git(*args):
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=tmp_path, check=True,
                       capture_output=True)

    for name in ("app.py", "README.md", "requirements.txt", "packages.txt", "geodemo/__init__.py"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("torch==2.13.0\n" if name == "requirements.txt" else "")
    (tmp_path / ".gitattributes").write_text("*.npy filter=lfs diff=lfs merge=lfs -text\n")
    (tmp_path / "assets").mkdir()
    (tmp_path / "assets" / "table.npy").write_bytes(b"\0" * (2 << 20))  # covered
    (tmp_path / "assets" / "weights.data").write_bytes(b"\0" * (2 << 20))  # not covered
    git("init", "-q")
    git("add", "-A")
    api = RecordingApi()
    with pytest.raises(DeployError, match="weights.data"):
        deploy("someone/x", api=api, root=tmp_path)
    assert not api.calls  # nothing created or uploaded


def test_cli_dry_run_lists_without_uploading(capsys):
    from geodemo.cli import main

    assert main(["space-deploy", "someone/geodemo", "--hardware", "zero-a10g", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "dry run" in out and "CUDA wheel" in out


def test_image_towers_and_lmm_generation_run_inside_spaces_gpu(tmp_path):
    """With a ``spaces`` package present (ZeroGPU), the CLIP towers' forward passes and LMM generation
    are wrapped by ``spaces.GPU``; without it (here) they are the plain functions."""
    fake = tmp_path / "spaces"
    fake.mkdir()
    (fake / "__init__.py").write_text(
        "WRAPPED = []\n"
        "def GPU(duration=60):\n"
        "    def wrap(fn):\n"
        "        WRAPPED.append(fn.__qualname__)\n"
        "        return fn\n"
        "    return wrap\n")
    code = ("import spaces, geodemo.models.clip, geodemo.lmm.backends.hf; print(','.join(spaces.WRAPPED))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True,
                         env={**__import__("os").environ, "PYTHONPATH": f"{tmp_path}:{REPO_ROOT}"})
    assert out.returncode == 0, out.stderr[-2000:]
    wrapped = set(out.stdout.strip().split(","))
    assert {"CLIPEncoder.encode_image_outputs", "CLIPEncoder.encode_pixels", "_generate_on_gpu"} <= wrapped
