"""``ivfsplit``: an IVF shortlist on the leading principal axes, re-ranked with bit-allocated codes of the rest.

Rows are turned onto their principal axes (uncentred, so inner products are unchanged) and put in
``nlist`` lists by the nearest k-means centre. Each row is then stored twice, in two parts that
add up to its inner product with a query:

1. the leading ``lead_axes`` coordinates of its residual from the centre, in FAISS ``lead_bits``-bit
   scalar codes inside inverted lists (``IndexIVFScalarQuantizer``): the lists probed for a query give a
   shortlist of ``shortlist`` rows by these axes alone (on embeddings with a decaying spectrum
   they carry most of what separates neighbours: on the README's MP16-like vectors, 1M rows, the
   top 256 rows by 64 axes at 8 bits hold 99.95% of the true top-20);
2. re-ranking codes (:class:`~geodemo.retrieval.allocated.AllocatedCodes`, ``refine_bits`` bits) of
   the remaining axes' residual and of the leading axes' rounding error, with bits allocated
   across all of them by how much each moves inner products (the first leading axes get a few, most
   get none): the shortlist is re-ranked by adding this part's estimate.

The FAISS part answers ``search(x, k)`` like any FAISS index, so :class:`RetrievalDatabase` uses this
class where it would use one. Saved as ``index.faiss`` (the lists) + ``split.npz`` (projection,
centres, list of each row, re-ranking codes, row scales and their quantiser).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from geodemo.paths import MissingResourceError
from geodemo.retrieval.allocated import AllocatedCodes
from geodemo.storage import atomic_path, save_npz

__all__ = ["SplitIVFIndex"]

LEAD_AXES = 64  # default leading axes in the lists
LEAD_CODES = {4: "QT_4bit", 6: "QT_6bit", 8: "QT_8bit"}  # FAISS scalar codes for the leading axes
ASSIGN_AXES = 256  # rows go to the centre nearest on this many leading axes (the rest barely move it)
REFINE_BITS_PER_AXIS = 3.4  # default re-ranking budget per non-leading axis


class SplitIVFIndex:
    """See the module docstring. ``capacity`` pre-allocates the per-row arrays for that many rows."""

    def __init__(self, dim: int, nlist: int, lead_axes: int | None = None, refine_bits: int | None = None,
                 shortlist: int = 256, nprobe: int = 16, kmeans_iters: int = 10, capacity: int = 0,
                 lead_bits: int = 8):
        lead_axes = min(LEAD_AXES, dim) if lead_axes is None else int(lead_axes)
        if not 0 < lead_axes <= dim:
            raise ValueError(f"ivfsplit: lead_axes must be in 1..{dim}, got {lead_axes}")
        if not 0 < nlist <= 65_536:
            raise ValueError(f"ivfsplit: nlist must be in 1..65536 (lists are stored as uint16), got {nlist}")
        if lead_bits not in LEAD_CODES:
            raise ValueError(f"ivfsplit: lead_bits must be one of {sorted(LEAD_CODES)}, got {lead_bits}")
        if shortlist < 1:
            raise ValueError(f"ivfsplit: shortlist must be positive, got {shortlist}")
        default = int(round(REFINE_BITS_PER_AXIS * (dim - lead_axes)))
        self.refine_bits = default if refine_bits is None else int(refine_bits)
        if self.refine_bits < 0:
            raise ValueError(f"ivfsplit: refine_bits must be >= 0, got {refine_bits}")
        self.d, self.nlist, self.lead_axes, self.lead_bits = dim, int(nlist), int(lead_axes), int(lead_bits)
        self.shortlist, self.kmeans_iters = int(shortlist), int(kmeans_iters)
        self._nprobe = int(nprobe)
        self.is_trained = False
        self.ntotal = 0
        self.axes = np.zeros((dim, dim), np.float32)  # columns: principal axes
        self.centres = np.zeros((nlist, dim), np.float32)
        self.refine: AllocatedCodes | None = None
        self.ivf = None
        self._assigner = None
        self._lists = np.zeros(capacity, np.uint16)
        self._codes = np.zeros((capacity, 0), np.uint8)
        self._rho = np.zeros(capacity, np.float16)

    # ------------------------------------------------------------------ settings
    @property
    def nprobe(self) -> int:
        return self._nprobe

    @nprobe.setter
    def nprobe(self, value: int) -> None:
        """Lists probed per query; FAISS reads that many columns of the probe table search() passes it."""
        self._nprobe = int(value)
        if self.ivf is not None:
            self.ivf.nprobe = min(self._nprobe, self.nlist)

    # ------------------------------------------------------------------ building
    def _new_ivf(self):
        import faiss

        quantizer = faiss.IndexFlatIP(self.lead_axes)  # holds the centres; lists are probed by search()
        quantizer.add(np.ascontiguousarray(self.centres[:, : self.lead_axes]))
        code = getattr(faiss.ScalarQuantizer, LEAD_CODES[self.lead_bits])
        ivf = faiss.IndexIVFScalarQuantizer(quantizer, self.lead_axes, self.nlist, code,
                                            faiss.METRIC_INNER_PRODUCT, True)
        ivf.nprobe = min(self._nprobe, self.nlist)
        return ivf

    def _make_assigner(self):
        import faiss

        a = min(ASSIGN_AXES, self.d)
        assigner = faiss.IndexFlatL2(a)
        assigner.add(np.ascontiguousarray(self.centres[:, :a]))
        return assigner

    def _lists_of(self, projected: np.ndarray) -> np.ndarray:
        a = self._assigner.d
        return self._assigner.search(np.ascontiguousarray(projected[:, :a]), 1)[1][:, 0]

    def _to_refine(self, projected: np.ndarray, lists: np.ndarray) -> np.ndarray:
        """What the re-ranking codes hold: the leading axes' rounding error, then the other axes' residual."""
        residual = projected - self.centres[lists]
        lead = np.ascontiguousarray(residual[:, : self.lead_axes])
        lead_error = lead - self.ivf.sq.decode(self.ivf.sq.compute_codes(lead))
        return np.concatenate([lead_error, residual[:, self.lead_axes:]], axis=1)

    def train(self, x: np.ndarray) -> None:
        """Principal axes, list centres (k-means), the leading codes' ranges and the re-ranking quantiser, from ``x``."""
        import faiss

        x = np.ascontiguousarray(x, dtype=np.float32)
        if len(x) < self.nlist:
            raise ValueError(f"ivfsplit needs at least nlist={self.nlist} training rows, got {len(x)}")
        _, vecs = np.linalg.eigh(x.astype(np.float64).T @ x)
        self.axes = np.ascontiguousarray(vecs[:, ::-1], dtype=np.float32)
        p = x @ self.axes
        kmeans = faiss.Kmeans(self.d, self.nlist, niter=self.kmeans_iters, seed=1234)
        kmeans.train(p)
        self.centres = np.ascontiguousarray(kmeans.centroids, dtype=np.float32)
        self._assigner = self._make_assigner()
        lists = self._lists_of(p)
        self.ivf = self._new_ivf()
        self.ivf.sq.train(np.ascontiguousarray(p[:, : self.lead_axes] - self.centres[lists, : self.lead_axes]))
        self.ivf.is_trained = True
        weights = np.mean(p.astype(np.float64) ** 2, axis=0)  # queries look like rows
        self.refine = AllocatedCodes.fit(self._to_refine(p, lists), weights, self.refine_bits)
        self._codes = np.zeros((len(self._lists), self.refine.nbytes), np.uint8)
        self.is_trained = True

    def _reserve(self, n: int) -> None:
        if n <= len(self._lists):
            return
        size = max(n, 2 * len(self._lists))
        for name in ("_lists", "_codes", "_rho"):
            old = getattr(self, name)
            new = np.zeros((size, *old.shape[1:]), old.dtype)
            new[: self.ntotal] = old[: self.ntotal]
            setattr(self, name, new)

    def add(self, x: np.ndarray) -> None:
        import faiss

        if not self.is_trained:
            raise RuntimeError("ivfsplit: train before adding rows")
        p = np.ascontiguousarray(x, dtype=np.float32) @ self.axes
        lists = self._lists_of(p)
        lead = np.ascontiguousarray(p[:, : self.lead_axes])
        codes, rho = self.refine.encode(self._to_refine(p, lists))
        self._reserve(self.ntotal + len(p))
        end = self.ntotal + len(p)
        ids = np.arange(self.ntotal, end, dtype=np.int64)
        self.ivf.add_core(len(p), faiss.swig_ptr(lead), faiss.swig_ptr(ids), faiss.swig_ptr(lists))
        self._lists[self.ntotal:end], self._codes[self.ntotal:end], self._rho[self.ntotal:end] = lists, codes, rho
        self.ntotal = end

    # ------------------------------------------------------------------ searching
    def search(self, x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` inner products and row numbers, FAISS-style (missing slots: ``-inf`` and ``-1``)."""
        p = np.ascontiguousarray(x, dtype=np.float32) @ self.axes
        lead = np.ascontiguousarray(p[:, : self.lead_axes])
        # Probe the lists whose centres are nearest (L2, as rows were assigned; unit rows: nearest is most
        # similar); the lists' coarse term is then q . centre on the leading axes.
        probe = self._assigner.search(np.ascontiguousarray(p[:, : self._assigner.d]), min(self._nprobe, self.nlist))[1]
        coarse = np.einsum("qd,qpd->qp", lead, self.centres[probe, : self.lead_axes]).astype(np.float32)
        lead_sims, shortlist = self.ivf.search_preassigned(lead, max(self.shortlist, k), probe, coarse)
        sims = np.full((len(p), k), -np.inf, np.float32)
        ids = np.full((len(p), k), -1, np.int64)
        tail_centres = self.centres[:, self.lead_axes:]
        for row in range(len(p)):
            found = shortlist[row] >= 0
            rows = shortlist[row, found]
            total = lead_sims[row, found] + tail_centres[self._lists[rows]] @ p[row, self.lead_axes:]
            total += self.refine.scores(self._codes[rows], self._rho[rows], self.refine.tables(p[row]))
            best = np.argsort(-total, kind="stable")[:k]
            sims[row, : len(best)], ids[row, : len(best)] = total[best], rows[best]
        return sims, ids

    # ------------------------------------------------------------------ size and persistence
    @property
    def nbytes(self) -> int:
        """Bytes the index holds: the FAISS lists as serialised, the per-row arrays, projection and centres."""
        import faiss

        n = self.ntotal
        return (int(faiss.serialize_index(self.ivf).nbytes) + self._lists[:n].nbytes + self._codes[:n].nbytes
                + self._rho[:n].nbytes + self.axes.nbytes + self.centres.nbytes)

    def write(self, directory: Path) -> None:
        import faiss

        with atomic_path(directory / "index.faiss") as tmp:
            faiss.write_index(self.ivf, str(tmp))
        n = self.ntotal
        save_npz(directory / "split.npz", axes=self.axes, centres=self.centres, lists=self._lists[:n],
                 codes=self._codes[:n], rho=self._rho[:n], refine_mean=self.refine.mean,
                 refine_spread=self.refine.spread, refine_bits=self.refine.bits)

    @classmethod
    def read(cls, directory: Path, lead_axes: int | None, lead_bits: int, shortlist: int, nprobe: int) -> SplitIVFIndex:
        import faiss

        if not (directory / "split.npz").is_file():
            raise MissingResourceError(f"retrieval database at {directory} lacks split.npz (the ivfsplit "
                                       "index's re-ranking codes); rebuild it")
        with np.load(directory / "split.npz", allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
        ivf = faiss.read_index(str(directory / "index.faiss"))
        bits = arrays["refine_bits"]
        index = cls(arrays["axes"].shape[0], ivf.nlist, lead_axes, int(bits.sum()), shortlist, nprobe,
                    lead_bits=lead_bits)
        index.axes, index.centres = arrays["axes"], arrays["centres"]
        index.refine = AllocatedCodes(arrays["refine_mean"], arrays["refine_spread"], bits)
        index._lists, index._codes, index._rho = arrays["lists"], arrays["codes"], arrays["rho"]
        index.ntotal = len(index._lists)
        index.ivf, index._assigner, index.is_trained = ivf, index._make_assigner(), True
        index.nprobe = nprobe
        if ivf.ntotal != index.ntotal:
            raise ValueError(f"{directory}: {ivf.ntotal} rows in index.faiss but {index.ntotal} in split.npz")
        return index
