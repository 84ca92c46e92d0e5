"""The optional LLM re-ranker against a local OpenAI-compatible stand-in server on 127.0.0.1."""

from __future__ import annotations

import json
from collections.abc import Iterator

import numpy as np
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from connectors.kit.server import BackgroundServer
from mappings.suggest.engine import Suggester
from mappings.suggest.profiles import FieldProfile, TableProfile
from mappings.suggest.rerank import Reranker, RerankError

API_KEY = "test-key-123"
SEEN: list[dict] = []


async def chat(request: Request) -> JSONResponse:
    if request.headers.get("authorization") != f"Bearer {API_KEY}":
        return JSONResponse({"error": "unauthorized"}, status_code=401)
    body = await request.json()
    SEEN.append(body)
    prompt = json.loads(body["messages"][-1]["content"])
    names = [c["name"] for c in prompt["candidates"]]
    # The stand-in model always prefers a candidate whose name contains "short".
    choice = next((n for n in names if "short" in n.lower()), "none")
    content = json.dumps({"choice": choice, "confidence": 0.9})
    return JSONResponse({"choices": [{"message": {"role": "assistant", "content": content}}]})


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    app = Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"])])
    with BackgroundServer(app, lifespan="off") as srv:
        yield f"{srv.url}/v1"


SRC = TableProfile(
    "erp",
    "customers",
    [
        FieldProfile("cust_abbr", "string", None, ["联创仪器", "奥维新材"]),
        FieldProfile("cust_title", "string", None, ["辽宁联创仪器仪表有限公司"]),
    ],
)
TGT = TableProfile(
    "crm",
    "accounts",
    [
        FieldProfile("name", "string", None, []),
        FieldProfile("short_name", "string", None, []),
    ],
)


def test_reranker_blends_the_chat_models_choice(server: str) -> None:
    sug = Suggester()
    scored = sug.score(SRC, TGT)
    rr = Reranker(base_url=server, api_key=API_KEY, low=0.0, high=1.01)
    out = rr.rerank(scored)
    assert SEEN, "the stand-in endpoint was called"
    assert SEEN[-1]["model"] == "gpt-4o-mini" and SEEN[-1]["temperature"] == 0
    j = [v.name for v in scored.tgt].index("short_name")
    assert np.all(out.p2[:, j] >= scored.p2[:, j] * 0.5)
    assert out.p2[0, j] > 0.4
    res = sug.suggest(SRC, TGT, scored=out)
    assert res.suggestions[0].candidates[0].target == "short_name"


def test_reranker_configuration_and_auth_errors(server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TONGBU_LLM_BASE_URL", raising=False)
    with pytest.raises(RerankError, match="TONGBU_LLM_BASE_URL"):
        Reranker.from_env()
    monkeypatch.setenv("TONGBU_LLM_BASE_URL", server)
    monkeypatch.delenv("TONGBU_LLM_API_KEY", raising=False)
    with pytest.raises(RerankError, match="TONGBU_LLM_API_KEY"):
        Reranker.from_env()
    monkeypatch.setenv("TONGBU_LLM_API_KEY", "wrong")
    rr = Reranker.from_env()
    rr.low, rr.high = 0.0, 1.01
    with pytest.raises(RerankError, match="chat endpoint failed"):
        rr.rerank(Suggester().score(SRC, TGT))


def test_reranker_key_comes_from_the_vault(monkeypatch: pytest.MonkeyPatch) -> None:
    from tongbu.vault import Vault
    from tongbu.vault.keys import default_key_file, write_key_file

    write_key_file(default_key_file())
    Vault.initialize().set("llm.api_key", "sk-canary-7f3a9")
    monkeypatch.setenv("TONGBU_LLM_BASE_URL", "http://127.0.0.1:9/v1")
    monkeypatch.delenv("TONGBU_LLM_API_KEY", raising=False)
    r = Reranker.from_env()
    assert r.api_key == "sk-canary-7f3a9" and "sk-canary" not in repr(r)
