"""Scalar codes with bits allocated per axis, scored through per-byte lookup tables.

A row's residual ``r`` (``d`` axes) is stored as one small integer per axis, ``bits[i]`` bits wide
(0 to ``max_bits``), packed back to back into ``nbytes`` bytes, plus a per-row scale ``rho``
(float16): axis ``i`` is quantised uniformly with step ``rho * step[i]`` around ``mean[i]``.

* **Allocation.** An error ``e`` in a row changes its inner product with a query ``q`` by ``q . e``,
  whose variance is ``sum_i E[q_i^2] var(e_i)``; a ``b``-bit uniform quantiser of an axis with
  spread ``s_i`` leaves ``var(e_i) ~ s_i^2 4^-b``. Bits are handed out one at a time to the axis where
  the next one removes the most of ``sum_i w_i s_i^2 4^-b_i`` (``w_i = E[q_i^2]``): reverse
  water-filling, exact for this separable convex sum. On principal axes with a decaying spectrum the
  leading axes get many bits and the tail few, which uniform codes (FAISS's scalar quantisers,
  RaBitQ) cannot do.
* **Per-row scale.** ``rho`` is the row's RMS spread in units of each axis's spread, so rows far
  from their list centre are not clipped and rows close to it get finer steps.
* **Scoring.** The estimate ``q . r_hat`` is linear in each code, hence in each bit: for one query,
  a table per byte gives the contribution of its 256 values, and a row's estimate is ``q . mean +
  rho * (sum_j table_j[code_j] - offset)``, one gather per byte as in product-quantiser ADC.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass
from functools import cached_property

import numpy as np

__all__ = ["AllocatedCodes", "allocate_bits"]

# Step of the mean-squared-error optimal uniform quantiser of a unit Gaussian, by bit count (Max 1960 up to
# 5 bits; beyond, extrapolated at about half the step per bit).
_GAUSS_STEP = {1: 1.596, 2: 0.996, 3: 0.586, 4: 0.335, 5: 0.188, 6: 0.104, 7: 0.057, 8: 0.031, 9: 0.017,
               10: 0.0093, 11: 0.0051, 12: 0.0028}
MAX_BITS = max(_GAUSS_STEP)
_BYTE_BITS = ((np.arange(256)[:, None] >> np.arange(8)) & 1).astype(np.float32)  # (256, 8), little-endian


def allocate_bits(weights: np.ndarray, spreads: np.ndarray, budget: int, max_bits: int = 8) -> np.ndarray:
    """Bits per axis summing to ``budget`` (or every axis at ``max_bits``), greedily minimising
    ``sum_i weights_i spreads_i^2 4^-bits_i``."""
    if not 0 <= max_bits <= MAX_BITS:
        raise ValueError(f"max_bits must be 0 to {MAX_BITS}, got {max_bits}")
    gains = np.asarray(weights, np.float64) * np.asarray(spreads, np.float64) ** 2
    bits = np.zeros(len(gains), dtype=np.int64)
    heap = [(-g, i) for i, g in enumerate(gains) if max_bits > 0]
    heapq.heapify(heap)
    for _ in range(int(budget)):
        if not heap:
            break
        gain, i = heapq.heappop(heap)
        bits[i] += 1
        if bits[i] < max_bits:
            heapq.heappush(heap, (gain / 4, i))
    return bits


@dataclass
class AllocatedCodes:
    """The quantiser: per-axis centre, spread and bit width; see the module docstring."""

    mean: np.ndarray  # (d,) float32: each axis's centre
    spread: np.ndarray  # (d,) float32: each axis's standard deviation in the fitting sample
    bits: np.ndarray  # (d,) int64, 0..MAX_BITS

    @classmethod
    def fit(cls, residuals: np.ndarray, weights: np.ndarray, budget_bits: int, max_bits: int = 8) -> AllocatedCodes:
        """Fit on sample residuals ``(n, d)``; ``weights`` are the queries' mean squares per axis."""
        x = np.asarray(residuals, dtype=np.float64)
        spread = np.maximum(x.std(0), 1e-12)
        bits = allocate_bits(weights, spread, budget_bits, max_bits)
        return cls(x.mean(0).astype(np.float32), spread.astype(np.float32), bits)

    # ------------------------------------------------------------------ layout (derived once, used per query)
    @property
    def dim(self) -> int:
        return len(self.bits)

    @property
    def nbytes(self) -> int:
        """Bytes per row of packed codes (the per-row scale is two more)."""
        return (int(self.bits.sum()) + 7) // 8

    @cached_property
    def step(self) -> np.ndarray:
        """Each axis's quantisation step at unit row scale (1 where an axis has no bits)."""
        gauss = np.array([_GAUSS_STEP.get(int(b), 0.0) for b in self.bits], dtype=np.float32)
        return np.where(self.bits > 0, gauss * self.spread, 1.0).astype(np.float32)

    @cached_property
    def _centre(self) -> np.ndarray:
        """The code value at an axis's centre (half a step below the middle level; 0 without bits)."""
        return (((1 << self.bits) / 2 - 0.5) * (self.bits > 0)).astype(np.float32)

    @cached_property
    def _bit_axis(self) -> np.ndarray:
        """The axis each stored bit belongs to."""
        return np.repeat(np.arange(self.dim), self.bits)

    @cached_property
    def _bit_shift(self) -> np.ndarray:
        """Each stored bit's position within its axis's code."""
        starts = np.cumsum(self.bits) - self.bits
        return np.arange(len(self._bit_axis)) - np.repeat(starts, self.bits)

    @cached_property
    def _bit_value(self) -> np.ndarray:
        """What each stored bit adds to its axis, at unit row scale (step times its place value)."""
        return self.step[self._bit_axis] * (1 << self._bit_shift).astype(np.float32)

    # ------------------------------------------------------------------ coding
    def encode(self, residuals: np.ndarray, block: int = 4096) -> tuple[np.ndarray, np.ndarray]:
        """``(n, d)`` residuals -> packed codes ``(n, nbytes)`` uint8 and row scales ``(n,)`` float16
        (``block`` rows at a time, so the unpacked bits stay small)."""
        residuals = np.asarray(residuals, dtype=np.float32)
        codes = np.zeros((len(residuals), self.nbytes), np.uint8)
        rho = np.zeros(len(residuals), np.float16)
        axis, shift = self._bit_axis, self._bit_shift.astype(np.uint16)
        top = ((1 << self.bits) - 1).astype(np.float32)
        for start in range(0, len(residuals), block):
            centred = residuals[start : start + block] - self.mean
            scale = np.maximum(np.sqrt(np.mean((centred / self.spread) ** 2, axis=1)), 1e-6).astype(np.float16)
            q = np.floor(centred / (scale.astype(np.float32)[:, None] * self.step) + self._centre + 0.5)
            q = np.clip(q, 0, top).astype(np.uint16)
            planes = np.zeros((len(q), self.nbytes * 8), np.uint8)
            planes[:, : len(axis)] = (q[:, axis] >> shift) & 1
            codes[start : start + block] = np.packbits(planes, axis=1, bitorder="little")
            rho[start : start + block] = scale
        return codes, rho

    def decode(self, codes: np.ndarray, rho: np.ndarray) -> np.ndarray:
        """Reconstructed residuals ``(n, d)`` (for tests and inspection; search uses :meth:`tables`)."""
        planes = np.unpackbits(codes, axis=1, bitorder="little")[:, : len(self._bit_axis)].astype(np.float32)
        q = np.zeros((len(codes), self.dim), np.float32)
        coded = self.bits > 0
        if coded.any():
            starts = (np.cumsum(self.bits) - self.bits)[coded]
            q[:, coded] = np.add.reduceat(planes * (1 << self._bit_shift), starts, axis=1)
        return self.mean + rho.astype(np.float32)[:, None] * (q - self._centre) * self.step

    def tables(self, query: np.ndarray) -> tuple[np.ndarray, float, float]:
        """Per-query lookup tables ``(nbytes, 256)``, the offset they carry and ``query . mean``."""
        query = np.asarray(query, dtype=np.float32)
        per_bit = np.zeros(self.nbytes * 8, np.float32)
        per_bit[: len(self._bit_axis)] = query[self._bit_axis] * self._bit_value
        tables = per_bit.reshape(self.nbytes, 8) @ _BYTE_BITS.T
        return tables, float(query @ (self._centre * self.step)), float(query @ self.mean)

    def scores(self, codes: np.ndarray, rho: np.ndarray, tables: tuple[np.ndarray, float, float]) -> np.ndarray:
        """Estimated ``query . residual`` of each row of ``codes`` (``tables`` from :meth:`tables`)."""
        lut, offset, base = tables
        flat = codes.astype(np.intp) + 256 * np.arange(codes.shape[1])
        return base + rho.astype(np.float32) * (lut.ravel()[flat].sum(axis=1) - offset)
