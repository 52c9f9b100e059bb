"""The LMM stage: K prompts x N samples to one backend, cached, bounded, never raising on failure.

``LMMStage.from_config(preset["lmm"])`` builds it; ``run(image, LMMContext(...))`` returns one
:class:`~geodemo.result.LMMRecord` per answer (prompt kind, full prompt, raw answer, parsed
coordinate or rejection reason, latency, backend, model, cached flag, error). The locator turns
accepted records into candidates ``lmm:<prompt kind>`` for verification.

Time-outs are wall-clock budgets: ``timeout_s`` bounds the whole stage and ``call_timeout_s``
(default: ``timeout_s``) each prompt's call, retries included. A call still running when its budget
ends becomes an error record; it runs on a daemon thread, so it never keeps the process alive.
"""

from __future__ import annotations

import math
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from geodemo.errors import describe, is_not_installed
from geodemo.lmm.backends import LMMBackend, call_deadline, create_backend
from geodemo.lmm.cache import AnswerCache, answer_key, image_hash
from geodemo.lmm.parse import parse_coordinate
from geodemo.lmm.prompts import DEFAULT_PROMPTS, WORDINGS, Prompt, build_prompts, prompt_kinds_valid
from geodemo.result import ClueReport, LMMRecord, Neighbour

__all__ = ["LMMContext", "LMMConfig", "LMMStage"]

# Bump when the way answers are produced changes in a way the key fields do not show.
_CACHE_VERSION = 1


@dataclass
class LMMContext:
    """What the prompts may cite about one photo (the retrieved evidence and a text description)."""

    neighbours: list[Neighbour] = field(default_factory=list)  # similar, retrieval order
    dissimilar: list[Neighbour] = field(default_factory=list)
    main_cluster: list[Neighbour] = field(default_factory=list)  # re-ranked main cluster (DualGeo)
    description: str = ""  # segmentation shares + clues, for text-only backends
    clues: ClueReport | None = None


_STAGE_KEYS = ("backend", "model", "prompts", "samples", "temperature", "seed", "timeout_s", "call_timeout_s",
               "concurrency", "cache", "cluster_max", "wording")


@dataclass
class LMMConfig:
    """The preset's ``lmm`` section; keys not listed here go to the backend (host, base_url, max_tokens ...)."""

    backend: str = "ollama"
    model: str | None = None
    prompts: list[str] = field(default_factory=lambda: list(DEFAULT_PROMPTS))
    samples: int = 5
    temperature: float = 0.7  # G3: 0.7 with LLaVA, 1.2 with GPT-4V
    seed: int | None = 0
    timeout_s: float = 120.0  # the whole stage, wall clock
    call_timeout_s: float | None = None  # one prompt's call, retries included (None: timeout_s)
    concurrency: int = 2
    cache: bool = True
    cluster_max: int = 15
    wording: str = "ours"  # "g3": G3's own prompt text (llm_predict.py) for vision chat models
    backend_options: dict[str, Any] = field(default_factory=dict)

    @property
    def call_budget_s(self) -> float:
        """Seconds one prompt's call may take (never more than the stage's budget)."""
        return min(self.call_timeout_s or self.timeout_s, self.timeout_s)

    @classmethod
    def from_dict(cls, cfg: dict[str, Any]) -> LMMConfig:
        cfg = {k: v for k, v in (cfg or {}).items() if k != "enabled"}
        known = {k: cfg[k] for k in _STAGE_KEYS if k in cfg and cfg[k] is not None}
        if "prompts" in known:
            known["prompts"] = prompt_kinds_valid(list(known["prompts"]))
        for key, cast in (("samples", int), ("concurrency", int), ("cluster_max", int),
                          ("temperature", float), ("timeout_s", float), ("call_timeout_s", float)):
            if key in known:
                known[key] = cast(known[key])
        if known.get("wording", "ours") not in WORDINGS:
            raise ValueError(f"lmm.wording must be one of {WORDINGS}, got {known['wording']!r}")
        if known.get("samples", 1) < 1 or known.get("concurrency", 1) < 1:
            raise ValueError(f"lmm.samples and lmm.concurrency must be >= 1, got {cfg}")
        for key in ("timeout_s", "call_timeout_s"):
            if key in known and not (math.isfinite(known[key]) and known[key] > 0):
                raise ValueError(f"lmm.{key} must be a positive number of seconds, got {known[key]}")
        extra = {k: v for k, v in cfg.items() if k not in _STAGE_KEYS}
        return cls(**known, backend_options=extra)


class LMMStage:
    """Runs the configured prompts on one backend and records every answer."""

    def __init__(self, config: LMMConfig, backend: LMMBackend | None = None, cache: AnswerCache | None = None):
        self.config = config
        if backend is None:
            options = dict(config.backend_options)
            options.setdefault("timeout_s", config.call_budget_s)
            backend = create_backend(config.backend, model=config.model, **options)
        self.backend = backend
        self.cache = (cache or AnswerCache()) if config.cache else None

    @classmethod
    def from_config(cls, cfg: dict[str, Any]) -> LMMStage:
        """Build from a preset's ``lmm`` section (backend, model, prompts, samples, temperature, ...)."""
        return cls(LMMConfig.from_dict(cfg))

    # ------------------------------------------------------------------ helpers
    def _description(self, context: LMMContext) -> str:
        text = context.description.strip()
        clues = context.clues
        if clues is not None and clues.summary and clues.summary not in text:
            text = f"{text}. Text clues: {clues.summary}" if text else f"Text clues: {clues.summary}"
        return text

    def prompts_for(self, context: LMMContext) -> list[Prompt]:
        """The prompts this stage would send for ``context`` (kinds without evidence are left out)."""
        return build_prompts(
            self.config.prompts,
            neighbours=context.neighbours,
            dissimilar=context.dissimilar,
            main_cluster=context.main_cluster,
            description=self._description(context),
            sees_image=bool(getattr(self.backend, "sees_image", True)),
            completion=bool(getattr(self.backend, "completion", False)),
            cluster_max=self.config.cluster_max,
            wording=self.config.wording,
        )

    def _key_fields(self, img: str, prompt: Prompt, sample: int) -> dict[str, Any]:
        extra = {k: v for k, v in sorted(self.config.backend_options.items())
                 if k in ("max_tokens", "format", "gguf_file", "stop", "top_k", "top_p", "json_mode", "completion")}
        return {
            "v": _CACHE_VERSION,
            "image": img,
            "prompt": prompt.text,
            "backend": self.backend.name,
            "model": self.backend.model,
            "temperature": self.config.temperature,
            "seed": self.config.seed,
            "samples": self.config.samples,
            "sample": sample,
            "options": extra,
            # the server (OpenAI-compatible, Ollama): another server may serve another model under the
            # same name; absent for local backends, so their entries keep their keys
            **({"endpoint": endpoint} if (endpoint := getattr(self.backend, "endpoint", None)) else {}),
        }

    def _record(self, prompt: Prompt, sample: int, raw: str | None, latency: float, cached: bool,
                error: str | None = None, not_installed: bool = False) -> LMMRecord:
        rec = LMMRecord(prompt_kind=prompt.kind, prompt=prompt.text, sample=sample, raw_answer=None,
                        latency_s=round(float(latency), 4), backend=self.backend.name, model=self.backend.model,
                        cached=cached, error=error, not_installed=not_installed)
        if error is None and raw is None:
            error = "the backend returned no text"
        if error is not None:
            rec.error = error
            return rec
        text = prompt.answer_prefix + raw if prompt.answer_prefix else raw
        rec.raw_answer = text
        parsed = parse_coordinate(text)
        if parsed.ok:
            rec.lat, rec.lon = parsed.lat, parsed.lon
        else:
            rec.rejection = parsed.reason
        return rec

    def _generate(self, image: Image.Image | None, prompt: Prompt) -> tuple[list[str], float]:
        t0 = time.perf_counter()
        answers = self.backend.generate(image, prompt.text, n=self.config.samples,
                                        temperature=self.config.temperature, seed=self.config.seed)
        if len(answers) != self.config.samples:
            raise RuntimeError(f"backend returned {len(answers)} answers for {self.config.samples} samples")
        return list(answers), time.perf_counter() - t0

    # ------------------------------------------------------------------ run
    def run(self, image: Image.Image | None, context: LMMContext | None = None) -> list[LMMRecord]:
        """One record per (prompt, sample); backend failures become records with ``error`` set."""
        context = context or LMMContext()
        prompts = self.prompts_for(context)
        n = self.config.samples
        img = image_hash(image) if image is not None else "no-image"
        by_prompt: dict[int, list[LMMRecord]] = {}
        todo: list[tuple[int, Prompt, list[str]]] = []
        for i, prompt in enumerate(prompts):
            keys = [answer_key(**self._key_fields(img, prompt, s)) for s in range(n)]
            entries = [self.cache.get(k) for k in keys] if self.cache is not None else [None] * n
            if all(e is not None for e in entries):
                by_prompt[i] = [self._record(prompt, s, e["answer"], e["latency_s"], True)
                                for s, e in enumerate(entries)]
            else:
                todo.append((i, prompt, keys))
        if todo:
            self._run_calls(image, img, todo, by_prompt)
        return [rec for i in range(len(prompts)) for rec in by_prompt.get(i, [])]

    def _run_calls(self, image: Image.Image | None, img: str, todo: list[tuple[int, Prompt, list[str]]],
                   by_prompt: dict[int, list[LMMRecord]]) -> None:
        """Ask the backend for every prompt in ``todo``, at most ``concurrency`` at once, within the budgets."""
        cfg, n = self.config, self.config.samples
        load = getattr(self.backend, "load", None)
        if callable(load):
            try:
                load()  # loading a local model once is not part of the time budget
            except Exception as exc:  # noqa: BLE001 - a model that cannot load fails every call
                msg, missing = describe(exc)[0], is_not_installed(exc)  # plain words (the page shows it)
                for i, prompt, _ in todo:
                    by_prompt[i] = [self._record(prompt, s, None, 0.0, False, error=msg, not_installed=missing)
                                    for s in range(n)]
                return
        stage_end = time.monotonic() + cfg.timeout_s
        results: queue.Queue = queue.Queue()
        waiting = list(range(len(todo)))
        running: dict[int, tuple[float, float]] = {}  # slot -> (started, deadline)

        def call(slot: int, deadline: float) -> None:
            with call_deadline(deadline):
                try:
                    results.put((slot, self._generate(image, todo[slot][1]), None))
                except BaseException as exc:  # noqa: BLE001 - handed to the stage's thread
                    results.put((slot, None, exc))

        def give_up(slot: int, msg: str, latency: float, missing: bool = False) -> None:
            i, prompt, _ = todo[slot]
            by_prompt[i] = [self._record(prompt, s, None, latency, False, error=msg, not_installed=missing)
                            for s in range(n)]

        while waiting or running:
            now = time.monotonic()
            while waiting and len(running) < cfg.concurrency and now < stage_end:
                slot = waiting.pop(0)
                deadline = min(now + cfg.call_budget_s, stage_end)
                running[slot] = (now, deadline)
                # daemon: a call that overruns its budget is abandoned and never holds up the exit
                threading.Thread(target=call, args=(slot, deadline), daemon=True,
                                 name=f"geodemo-lmm-{slot}").start()
            if not running:
                break
            try:
                slot, value, exc = results.get(timeout=max(0.0, min(d for _, d in running.values()) - now))
            except queue.Empty:
                slot = None
            if slot is not None and slot in running:
                started, _ = running.pop(slot)
                i, prompt, keys = todo[slot]
                if exc is not None:
                    msg = describe(exc)[0]  # plain words (the page shows it)
                    give_up(slot, msg, time.monotonic() - started, is_not_installed(exc))
                    continue
                answers, latency = value
                per_answer = latency / n
                by_prompt[i] = [self._record(prompt, s, a, per_answer, False) for s, a in enumerate(answers)]
                if self.cache is not None:
                    for s, a in enumerate(answers):
                        self.cache.put(keys[s], a, per_answer, self._key_fields(img, prompt, s))
            now = time.monotonic()
            for slot, (started, deadline) in list(running.items()):
                if now >= deadline:
                    del running[slot]
                    budget = "lmm.timeout_s" if deadline >= stage_end else "lmm.call_timeout_s"
                    give_up(slot, f"{self.backend.name} ({self.backend.model}) gave no answer within "
                                  f"{deadline - started:.3g} s ({budget})", now - started)
        for slot in waiting:  # never started: the stage's budget was spent
            give_up(slot, f"not asked: the LMM stage's {cfg.timeout_s:g} s budget (lmm.timeout_s) was spent "
                          "on the prompts before it", 0.0)
