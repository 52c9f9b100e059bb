"""A thin wrapper over ``ai_edge_litert`` interpreters for the real offline models in the shared folder."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np

from geodemo.models.base import ModelUnavailableError
from geodemo.paths import shared_path

__all__ = ["TFLiteModel", "find_weights", "default_threads"]


def default_threads() -> int:
    """Interpreter threads: ``$GEODEMO_TFLITE_THREADS`` or min(4, cores)."""
    env = os.environ.get("GEODEMO_TFLITE_THREADS")
    return int(env) if env else max(1, min(4, os.cpu_count() or 1))


def find_weights(model: str, filename: str, local_dir: str | os.PathLike | None, shared_subdir: str) -> Path:
    """``local_dir/filename`` if given, else ``$GEODEMO_SHARED/models/<shared_subdir>/filename``."""
    folder = Path(local_dir).expanduser() if local_dir else shared_path("models", shared_subdir)
    path = folder / filename
    if not path.is_file():
        where = "local_dir" if local_dir else f"$GEODEMO_SHARED/models/{shared_subdir}"
        raise ModelUnavailableError(
            f"weights for {model} not found: looked for {filename} in {folder} ({where}); "
            f"set GEODEMO_SHARED to the folder holding models/{shared_subdir}, or pass local_dir=<folder>"
        )
    return path


class TFLiteModel:
    """One loaded interpreter with a single input and a single output; ``run`` is thread-safe."""

    def __init__(self, path: Path, num_threads: int | None = None) -> None:
        from ai_edge_litert.interpreter import Interpreter

        self.path = Path(path)
        self._interpreter = Interpreter(
            model_path=str(self.path), num_threads=num_threads or default_threads()
        )
        self._interpreter.allocate_tensors()
        self._input = self._interpreter.get_input_details()[0]
        self._output = self._interpreter.get_output_details()[0]
        self._lock = threading.Lock()

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(int(x) for x in self._input["shape"])

    @property
    def input_dtype(self) -> type:
        return self._input["dtype"]

    def dequantize(self, values: np.ndarray) -> np.ndarray:
        """Output values as float32 (applies the output's scale and zero point when quantized)."""
        scale, zero_point = self._output["quantization"]
        values = values.astype(np.float32)
        if scale:
            values = (values - zero_point) * scale
        return values

    def run(self, batch: np.ndarray) -> np.ndarray:
        """Run one input tensor of the model's input shape; returns the raw output (a copy)."""
        with self._lock:
            self._interpreter.set_tensor(self._input["index"], batch.astype(self.input_dtype, copy=False))
            self._interpreter.invoke()
            return self._interpreter.get_tensor(self._output["index"]).copy()
