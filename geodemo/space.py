"""Deploy the checkout to a Hugging Face Space: ``geodemo space-deploy your-name/geodemo``.

:func:`deploy` copies the files a Space runs (:data:`SPACE_PATHS`, as git tracks them: no caches,
no tests) into a staging folder, writes the Space's ``requirements.txt`` for its hardware
(:func:`space_requirements`), then ``HfApi.create_repo(..., repo_type="space")`` and
``HfApi.upload_folder``: binaries go through Xet/LFS as ``.gitattributes`` says, and no git history is
sent (the hub refuses a push whose history holds a binary over 1 MB outside LFS). A binary over
1 MB that ``.gitattributes`` does not cover stops the deploy before anything is uploaded.
"""

from __future__ import annotations

import fnmatch
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from geodemo.errors import GeodemoError
from geodemo.paths import REPO_ROOT

__all__ = ["SPACE_PATHS", "CPU_TORCH_INDEX", "DeployReport", "space_files", "space_requirements", "lfs_patterns",
           "uncovered_binaries", "deploy"]

#: What a Space needs: the app, its front matter (README.md), requirements, Debian packages, the
#: library and the embedded default bundle.
SPACE_PATHS = ("app.py", "README.md", "requirements.txt", "packages.txt", ".gitattributes", "geodemo/", "assets/")
CPU_TORCH_INDEX = "https://download.pytorch.org/whl/cpu"
LARGE_BINARY = 1 << 20  # the hub refuses binaries above 1 MB outside Xet/LFS


class DeployError(GeodemoError, RuntimeError):
    """The checkout cannot be deployed as it is (no git, a binary .gitattributes misses)."""


@dataclass
class DeployReport:
    repo_id: str
    hardware: str
    files: list[str]
    requirements: str
    uploaded: bool = False
    url: str = ""
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        head = (f"uploaded {len(self.files)} files to {self.url or self.repo_id}" if self.uploaded
                else f"dry run: {len(self.files)} files would go to Space {self.repo_id}")
        torch_line = next((ln for ln in self.requirements.splitlines() if ln.startswith("torch==")), "")
        cpu = any(ln.startswith("--extra-index-url") and CPU_TORCH_INDEX in ln for ln in self.requirements.splitlines())
        index = "CPU wheel index" if cpu else "CUDA wheel from the package index"
        return "\n".join([head, f"hardware {self.hardware}: {torch_line} ({index})", *self.notes])


def is_cpu_hardware(hardware: str) -> bool:
    """``cpu-basic``, ``cpu-upgrade``, ... (every Space hardware that is not a GPU)."""
    return hardware.startswith("cpu")


def space_requirements(hardware: str, root: Path = REPO_ROOT) -> str:
    """The Space's ``requirements.txt``: ours, with PyTorch's CPU index first on CPU hardware (torch==X
    then resolves to X+cpu, without the CUDA wheels); on a GPU Space the package index's CUDA wheel."""
    text = (root / "requirements.txt").read_text()
    if not is_cpu_hardware(hardware):
        return text
    return f"# CPU Space: PyTorch's CPU wheels (geodemo space-deploy --hardware {hardware})\n" \
           f"--extra-index-url {CPU_TORCH_INDEX}\n{text}"


def space_files(root: Path = REPO_ROOT) -> list[str]:
    """The tracked files under :data:`SPACE_PATHS` that exist in the working tree, sorted."""
    try:
        out = subprocess.run(["git", "ls-files", "-z", "--", *SPACE_PATHS], cwd=root, capture_output=True,
                             check=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        raise DeployError(f"{root} is not a git checkout: the Space's files are the ones git tracks",
                          hint="deploy from a clone of the repository") from exc
    names = [n for n in out.stdout.decode().split("\0") if n]
    return sorted(n for n in names if (root / n).is_file())


def lfs_patterns(root: Path = REPO_ROOT) -> list[str]:
    """The patterns ``.gitattributes`` stores through LFS/Xet (``filter=lfs``)."""
    path = root / ".gitattributes"
    if not path.is_file():
        return []
    out = []
    for line in path.read_text().splitlines():
        parts = line.split()
        if len(parts) > 1 and not parts[0].startswith("#") and "filter=lfs" in parts[1:]:
            out.append(parts[0])
    return out


def _covered(name: str, patterns: list[str]) -> bool:
    base = name.rsplit("/", 1)[-1]
    return any(fnmatch.fnmatch(base if "/" not in p else name, p) for p in patterns)


def _is_binary(path: Path) -> bool:
    head = path.read_bytes()[:8192]
    if b"\0" in head:
        return True
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        return exc.start < len(head) - 4  # a character cut at the block's end is still text
    return False


def uncovered_binaries(files: list[str], root: Path = REPO_ROOT, limit: int = LARGE_BINARY) -> list[str]:
    """Binary files above ``limit`` bytes that no ``.gitattributes`` LFS pattern covers."""
    patterns = lfs_patterns(root)
    return [f for f in files
            if (root / f).stat().st_size > limit and _is_binary(root / f) and not _covered(f, patterns)]


def deploy(repo_id: str, hardware: str = "cpu-basic", private: bool = False, dry_run: bool = False,
           api: Any = None, root: Path = REPO_ROOT) -> DeployReport:
    """Create (or update) Space ``repo_id`` with this checkout's Space files; see the module docstring."""
    files = space_files(root)
    missing = [p for p in SPACE_PATHS if not any(f == p or f.startswith(p) for f in files)]
    if missing:
        raise DeployError(f"the checkout lacks {', '.join(missing)}, which a Space needs")
    bad = uncovered_binaries(files, root)
    if bad:
        raise DeployError(f"binaries over 1 MB that .gitattributes does not store through LFS/Xet: {', '.join(bad)}",
                          hint="add their extensions to .gitattributes (the hub refuses them otherwise)")
    requirements = space_requirements(hardware, root)
    report = DeployReport(repo_id, hardware, files, requirements)
    if dry_run:
        return report
    if api is None:
        from huggingface_hub import HfApi

        api = HfApi()
    with tempfile.TemporaryDirectory(prefix="geodemo-space-") as tmp:
        stage = Path(tmp)
        for name in files:
            (stage / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(root / name, stage / name)
        (stage / "requirements.txt").write_text(requirements)
        url = api.create_repo(repo_id, repo_type="space", space_sdk="gradio", private=private, exist_ok=True,
                              space_hardware=None if hardware == "cpu-basic" else hardware)
        api.upload_folder(folder_path=str(stage), repo_id=repo_id, repo_type="space", delete_patterns=["*"],
                          commit_message=f"geodemo {_git_version(root)}")
    report.uploaded, report.url = True, str(url)
    return report


def _git_version(root: Path) -> str:
    try:
        out = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=root, capture_output=True, text=True)
        return out.stdout.strip() or "checkout"
    except OSError:
        return "checkout"
