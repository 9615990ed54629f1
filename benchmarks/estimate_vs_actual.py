"""Estimate vs actual cost on the emulator's deterministic usage (no server, nothing sent).

    .venv/bin/python benchmarks/estimate_vs_actual.py

For a few request files (the shipped example, short and long chat prompts with and without
``max_tokens``, embeddings), prints the estimate ``batchyard estimate`` gives and the actual
cost of the usage the emulator answers with (the answers are deterministic: a function of
the request), both at gpt-4o-mini / text-embedding-3-small batch rates from the pinned table.
"""

from __future__ import annotations

import importlib.resources
import tempfile
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson

from batchyard.config import Settings
from batchyard.deployments import DeploymentRegistry
from batchyard.domain.pricing import Price, request_cost
from batchyard.emulator.outputs import chat_completion, embedding_list
from batchyard.services.container import build_services
from batchyard.services.costs import estimate_chunks

WORDS = "the quick brown fox jumps over the lazy dog while batch jobs run overnight "


def chat(n: int, chars: int, max_tokens: int | None) -> list[dict[str, Any]]:
    out = []
    for i in range(n):
        body: dict[str, Any] = {"model": "gpt-4o-mini", "messages": [
            {"role": "user", "content": (f"question {i}: " + WORDS * 400)[:chars]}]}
        if max_tokens:
            body["max_tokens"] = max_tokens
        out.append({"custom_id": f"r{i}", "method": "POST", "url": "/v1/chat/completions",
                    "body": body})
    return out


def embeddings(n: int, chars: int) -> list[dict[str, Any]]:
    return [{"custom_id": f"e{i}", "method": "POST", "url": "/v1/embeddings",
             "body": {"model": "text-embedding-3-small", "input": (WORDS * 400)[:chars]}}
            for i in range(n)]


def example() -> list[dict[str, Any]]:
    text = importlib.resources.files("batchyard").joinpath("examples/facts.jsonl").read_bytes()
    return [orjson.loads(line) for line in text.splitlines() if line.strip()]


def actual(svc: Any, lines: list[dict[str, Any]]) -> Decimal:
    total = Decimal(0)
    for line in lines:
        body = line["body"]
        if line["url"].endswith("embeddings"):
            _, inp, out = embedding_list(body, 8)
        else:
            _, inp, out = chat_completion(body, azure=False)
        price = svc.prices.lookup(deployment_id=None, model=body["model"], provider="openai")
        assert isinstance(price, Price)
        total += request_cost(price, input_tokens=inp, output_tokens=out)
    return total


def main() -> None:
    cases = {
        "shipped example (facts.jsonl)": example(),
        "100 chats, 200 chars, no max_tokens": chat(100, 200, None),
        "100 chats, 200 chars, max_tokens 50": chat(100, 200, 50),
        "100 chats, 4,000 chars, max_tokens 50": chat(100, 4_000, 50),
        "100 chats, 20,000 chars, max_tokens 200": chat(100, 20_000, 200),
        "100 embeddings, 1,000 chars": embeddings(100, 1_000),
    }
    with tempfile.TemporaryDirectory() as tmp:
        svc = build_services(Settings(data_dir=Path(tmp)), nudge=lambda *_: None,
                             deployments=DeploymentRegistry([]))
        print("| input | requests | estimate (USD) | actual (USD) | estimate / actual |")
        print("|---|---|---|---|---|")
        for name, lines in cases.items():
            data = b"".join(orjson.dumps(line) + b"\n" for line in lines)
            est = estimate_chunks(svc, [data])
            act = actual(svc, lines)
            assert est.cost is not None
            ratio = est.cost / act if act else Decimal(0)
            print(f"| {name} | {len(lines)} | {est.cost:.6f} | {act:.6f} | {ratio:.2f} |")
        svc.close()


if __name__ == "__main__":
    main()
