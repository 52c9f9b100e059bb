"""A thin wrapper over ``ai_edge_litert`` interpreters for the real offline models in the shared folder."""

from __future__ import annotations

import os
import threading
import warnings
from pathlib import Path

import numpy as np

from geodemo import env
from geodemo.models.base import ModelUnavailableError
from geodemo.paths import MissingResourceError, find_resource

__all__ = ["TFLiteModel", "find_weights", "default_threads"]


def default_threads() -> int:
    """Interpreter threads: ``$GEODEMO_TFLITE_THREADS`` or min(4, cores)."""
    return env.get_int("GEODEMO_TFLITE_THREADS", max(1, min(4, os.cpu_count() or 1)))


def find_weights(model: str, filename: str, local_dir: str | os.PathLike | None, shared_subdir: str) -> Path:
    """``local_dir/filename`` if given, else ``$GEODEMO_SHARED/models/<shared_subdir>/filename``, else the
    embedded default ``assets/models/<shared_subdir>/filename`` (:func:`geodemo.paths.find_resource`)."""
    try:
        return find_resource("models", shared_subdir, filename,
                             explicit=Path(local_dir).expanduser() / filename if local_dir else None)
    except MissingResourceError as exc:
        raise ModelUnavailableError(
            f"weights for {model} not found: {exc.message}",
            hint=f"set GEODEMO_SHARED to the folder holding models/{shared_subdir}, pass local_dir=<folder>, "
                 f"or restore the embedded default with `git checkout -- assets`",
        ) from None


class TFLiteModel:
    """One loaded interpreter with a single input and a single output; ``run`` is thread-safe.

    The interpreter is created once per object; ``run`` resizes its batch dimension when the
    graph allows it (MobileNet does, DeepLab's XNNPack graph does not: then it loops).
    With ``preserve_all_tensors=True`` the intermediate activations stay readable after a run:
    ``run(batch, tensor=tensor_index("..."))`` returns one of them instead of the output.
    """

    def __init__(
        self, path: Path, num_threads: int | None = None, preserve_all_tensors: bool = False
    ) -> None:
        from ai_edge_litert.interpreter import Interpreter

        self.path = Path(path)
        with warnings.catch_warnings():  # "intended for debugging": here it is how tokens are read
            warnings.filterwarnings("ignore", message=".*experimental_preserve_all_tensors.*")
            self._interpreter = Interpreter(
                model_path=str(self.path),
                num_threads=num_threads or default_threads(),
                experimental_preserve_all_tensors=preserve_all_tensors,
            )
        self._interpreter.allocate_tensors()
        self._input = self._interpreter.get_input_details()[0]
        self._output = self._interpreter.get_output_details()[0]
        self._lock = threading.Lock()
        self._batchable = True

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(int(x) for x in self._input["shape"])

    def run_argmax(self, batch: np.ndarray, rows: int, cols: int) -> np.ndarray:
        """``argmax`` over the last axis of ``output[0, :rows, :cols]`` for one ``(1, ...)`` input, read in
        place: DeepLab's 513x513x151 logits (159 MB) are never copied out of the interpreter."""
        with self._lock:
            self._set_batch(1)
            self._interpreter.set_tensor(self._input["index"], batch.astype(self.input_dtype, copy=False))
            self._interpreter.invoke()
            return np.argmax(self._interpreter.tensor(self._output["index"])()[0, :rows, :cols], axis=-1)

    @property
    def input_dtype(self) -> type:
        return self._input["dtype"]

    def tensor_index(self, name: str) -> int:
        """Index of the tensor whose name (or first ``;``-separated alias) is ``name``."""
        for detail in self._interpreter.get_tensor_details():
            if name in (detail["name"], detail["name"].split(";")[0]):
                return int(detail["index"])
        raise KeyError(f"{self.path.name} has no tensor named {name!r}")

    def dequantize(self, values: np.ndarray, tensor: int | None = None) -> np.ndarray:
        """Values of the output (or of tensor ``tensor``) as float32, applying its scale and zero point."""
        if tensor is None:
            scale, zero_point = self._output["quantization"]
        else:
            detail = next(d for d in self._interpreter.get_tensor_details() if d["index"] == tensor)
            scale, zero_point = detail["quantization"]
        values = values.astype(np.float32)
        if scale:
            values = (values - zero_point) * scale
        return values

    def _set_batch(self, n: int) -> bool:
        """Resize the input to batch ``n``; False (and batch 1 kept) when the model cannot resize."""
        shape = list(self._input["shape"])
        if shape[0] == n:
            return True
        try:
            self._interpreter.resize_tensor_input(self._input["index"], [n, *shape[1:]])
            self._interpreter.allocate_tensors()
        except (RuntimeError, ValueError):
            self._interpreter.resize_tensor_input(self._input["index"], [1, *shape[1:]])
            self._interpreter.allocate_tensors()
            self._batchable = False
        self._input = self._interpreter.get_input_details()[0]
        self._output = self._interpreter.get_output_details()[0]
        return self._batchable

    def run(self, batch: np.ndarray, tensor: int | None = None) -> np.ndarray:
        """Run a ``(B, ...)`` input and read the output (or intermediate tensor ``tensor``, raw values).

        One invoke when the model can resize its batch, else one per row.
        """
        batch = batch.astype(self.input_dtype, copy=False)
        index = self._output["index"] if tensor is None else int(tensor)
        with self._lock:
            if self._batchable and self._set_batch(len(batch)):
                return self._invoke(batch, index)
            self._set_batch(1)
            return np.concatenate([self._invoke(row[None], index) for row in batch])

    def _invoke(self, batch: np.ndarray, index: int) -> np.ndarray:
        self._interpreter.set_tensor(self._input["index"], batch)
        self._interpreter.invoke()
        return self._interpreter.get_tensor(index).copy()
