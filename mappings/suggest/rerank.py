"""Optional re-ranking of uncertain fields through an OpenAI-compatible chat-completions endpoint.

The offline suggester stands on its own; the re-ranker only looks at source fields whose best
candidate is uncertain, asks the model to pick among the top candidates (or "none"), and blends its
answer into the match probabilities.  Configuration:

* ``TONGBU_LLM_BASE_URL`` — e.g. ``https://api.example.com/v1`` (``/chat/completions`` is appended);
* ``TONGBU_LLM_API_KEY`` — the key.  In production this value comes from the vault (a
  ``vault:<connection>.<field>`` reference resolved by the caller); here it is taken as given;
* ``TONGBU_LLM_MODEL`` — model name (default ``gpt-4o-mini``).

Nothing is sent unless ``--rerank`` is asked for; samples are truncated to a few short values.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field, replace
from typing import Any

import httpx
import numpy as np

from mappings.suggest.engine import ScoredPair
from mappings.suggest.features import FieldView


class RerankError(RuntimeError):
    """The re-ranker is not configured or the endpoint failed."""


@dataclass
class Reranker:
    """Asks a chat model to choose among the top candidates of uncertain source fields."""

    base_url: str
    api_key: str = field(repr=False)  # never in a repr, a log line or an error
    model: str = "gpt-4o-mini"
    top_k: int = 4
    max_fields: int = 40
    low: float = 0.05
    high: float = 0.9
    weight: float = 0.5
    timeout: float = 20.0
    transport: httpx.BaseTransport | None = None

    @classmethod
    def from_env(cls, api_key: str | None = None) -> Reranker:
        """Configuration from the environment (``TONGBU_LLM_BASE_URL``, ``TONGBU_LLM_API_KEY``, ``TONGBU_LLM_MODEL``)."""
        base = os.environ.get("TONGBU_LLM_BASE_URL")
        # The key is a vault reference by default (`tongbu vault set llm.api_key`); a plain value in
        # TONGBU_LLM_API_KEY is accepted for local stand-ins.
        key = api_key or os.environ.get("TONGBU_LLM_API_KEY") or "vault:llm.api_key"
        if not base:
            raise RerankError("TONGBU_LLM_BASE_URL is not set")
        if key.startswith("vault:"):
            from tongbu.vault.secrets import resolve_secrets

            try:
                key = resolve_secrets({"api_key": key})["api_key"]
            except Exception as exc:  # noqa: BLE001 - one clear message, the vault's own text has no value
                raise RerankError(
                    f"cannot read the re-ranker key {key!r} from the vault ({exc}); store it with "
                    f"`tongbu vault set {key.removeprefix('vault:')}` or set TONGBU_LLM_API_KEY"
                ) from None
        return cls(
            base_url=base.rstrip("/"), api_key=key, model=os.environ.get("TONGBU_LLM_MODEL", "gpt-4o-mini")
        )

    def uncertain_rows(self, sp: ScoredPair) -> list[int]:
        """Source rows worth asking about: best probability between ``low`` and ``high``."""
        if sp.p2.size == 0:
            return []
        best = sp.p2.max(axis=1)
        rows = [i for i in np.argsort(best) if self.low <= best[i] < self.high]
        return [int(i) for i in rows[: self.max_fields]]

    def rerank(self, sp: ScoredPair) -> ScoredPair:
        """A copy of ``sp`` whose probabilities blend in the chat model's choices."""
        rows = self.uncertain_rows(sp)
        if not rows:
            return sp
        p2 = sp.p2.copy()
        with httpx.Client(
            base_url=self.base_url,
            timeout=self.timeout,
            transport=self.transport,
            headers={"Authorization": f"Bearer {self.api_key}"},
        ) as client:
            for i in rows:
                order = [int(j) for j in np.argsort(-p2[i])[: self.top_k]]
                choice, conf = self._ask(client, sp.src[i], [sp.tgt[j] for j in order])
                for j in order:
                    llm = conf if sp.tgt[j].name == choice else (1.0 - conf) / max(len(order), 1) * 0.5
                    p2[i, j] = (1 - self.weight) * p2[i, j] + self.weight * llm
        return replace(sp, p2=p2)

    def _ask(self, client: httpx.Client, src: FieldView, cands: list[FieldView]) -> tuple[str | None, float]:
        prompt = {
            "task": "Pick the target CRM field that holds the same fact as the source field, or 'none'.",
            "source": _describe(src),
            "candidates": [_describe(c) for c in cands],
            "answer_format": {"choice": "<candidate name or none>", "confidence": "0..1"},
        }
        body = {
            "model": self.model,
            "temperature": 0,
            "messages": [
                {
                    "role": "system",
                    "content": "You map fields between business systems (ERP, WeCom, e-commerce, CRM). Answer with JSON only.",
                },
                {"role": "user", "content": json.dumps(prompt, ensure_ascii=False)},
            ],
        }
        try:
            r = client.post("/chat/completions", json=body)
            r.raise_for_status()
            content = r.json()["choices"][0]["message"]["content"]
        except (httpx.HTTPError, KeyError, IndexError, ValueError) as exc:
            raise RerankError(f"chat endpoint failed: {exc}") from None
        m = re.search(r"\{.*\}", content or "", re.S)
        try:
            ans = json.loads(m.group(0) if m else content)
        except (ValueError, TypeError):
            return None, 0.0
        choice = ans.get("choice")
        names = {c.name for c in cands}
        if choice not in names:
            return None, 0.0
        try:
            conf = float(ans.get("confidence", 0.5))
        except (TypeError, ValueError):
            conf = 0.5
        return choice, min(max(conf, 0.0), 1.0)


def _describe(v: FieldView) -> dict[str, Any]:
    samples = [str(s)[:40] for s in v.profile.samples[:3]]
    return {"name": v.name, "type": v.profile.type, "label": v.profile.label, "samples": samples}
