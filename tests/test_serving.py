"""The HTTP API over tiny trained models: each endpoint, dynamic batching, and every kind of bad
request answered with a 4xx JSON error while the server keeps serving."""

from __future__ import annotations

import asyncio
import io
import json
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from seq2seq import Translator, train
from seq2seq.serving.app import create_app
from seq2seq.serving.batching import DynamicBatcher
from seq2seq.serving.limits import ServeLimits
from seq2seq.serving.models import ServedModel
from tests.conftest import TINY_TEXTGEN, make_text
from tests.test_caption_recipe import TINY_CAPTION, draw, write_dataset
from tests.test_translate_recipe import LOSS_ONLY, TINY_TRANSLATE, write_corpus

LIMITS = ServeLimits(max_lines=8, max_line_chars=200, max_images=3, max_image_bytes=50_000, max_image_pixels=10_000,
                     max_length=60, max_beam=6, max_body_bytes=200_000, batch_wait_ms=20)  # fmt: skip


@pytest.fixture(scope="module")
def run_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("serving")
    translate_data = write_corpus(folder / "pairs")
    train(
        "translate",
        "multi30k_de_en",
        [*TINY_TRANSLATE, *translate_data, *LOSS_ONLY, "train.max_steps=30"],
        folder / "translate",
    )
    train("caption", "emoji_scratch", [*TINY_CAPTION, *write_dataset(folder / "shapes")], folder / "caption")
    (folder / "tiny.txt").write_text(make_text(8_000), encoding="utf-8")
    train("textgen", "shakespeare_char", [*TINY_TEXTGEN, f"data.path={folder / 'tiny.txt'}"], folder / "textgen")
    return {"translate": folder / "translate", "caption": folder / "caption", "textgen": folder / "textgen"}


def served(run_dirs: dict[str, Path], limits: ServeLimits = LIMITS) -> list[ServedModel]:
    return [ServedModel.load(f"tiny_{task}", task, str(path), limits, device="cpu") for task, path in run_dirs.items()]  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def client(run_dirs: dict[str, Path]) -> TestClient:
    with TestClient(create_app(served(run_dirs), LIMITS)) as test_client:
        yield test_client


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


# ---- the endpoints ----------------------------------------------------------------------------


def test_health_and_models(client: TestClient) -> None:
    assert client.get("/health").json() == {"status": "ok", "models": 3}
    models = {model["name"]: model for model in client.get("/v1/models").json()["models"]}
    assert {model["task"] for model in models.values()} == {"translate", "caption", "textgen"}
    translation = models["tiny_translate"]
    assert translation["parameters"] > 0 and set(translation["vocabulary"]) == {"source", "target"}
    assert translation["decoding"]["method"] == "beam" and models["tiny_caption"]["grid_size"] == 2
    assert client.get("/docs").status_code == 200 and "/v1/translate" in client.get("/openapi.json").text


def test_translate_gives_the_api_results_with_scores_and_attention(
    client: TestClient, run_dirs: dict[str, Path]
) -> None:
    lines = ["ein mann sieht der hund .", "", "der ball rot mag ein kind ."]
    response = client.post("/v1/translate", json={"text": lines, "beam": 3, "n_best": 2, "attention": True})
    assert response.status_code == 200, response.text
    translations = response.json()["translations"]
    expected = Translator.from_checkpoint(run_dirs["translate"], device="cpu").translate(lines, beam=3, n_best=2)
    assert [t["text"] for t in translations] == [e.text for e in expected]
    first = translations[0]
    assert len(first["hypotheses"]) == 2 and first["source_tokens"] == lines[0].split()
    assert len(first["hypotheses"][0]["attention"][0]) == len(first["source_tokens"])
    assert first["hypotheses"][0]["score"] == pytest.approx(expected[0].hypotheses[0].score, abs=1e-3)


def test_caption_uploads(client: TestClient) -> None:
    files = [("images", ("red.png", png(draw("red", "circle")), "image/png")),
             ("images", ("blue.png", png(draw("blue", "square")), "image/png"))]  # fmt: skip
    response = client.post("/v1/caption", files=files, data={"beam": "2", "attention": "true"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert [caption["image"] for caption in body["captions"]] == ["red.png", "blue.png"]
    attention = body["captions"][0]["hypotheses"][0]["attention"]
    assert len(attention[0]) == body["grid_size"] ** 2


def test_generate_and_stream_give_the_same_text(client: TestClient) -> None:
    request = {"prime": "ROMEO:", "length": 30, "seed": 1, "temperature": 0.8}
    whole = client.post("/v1/generate", json=request)
    assert whole.status_code == 200, whole.text
    with client.stream("POST", "/v1/generate", json={**request, "stream": True}) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        events = [block for block in response.read().decode().split("\n\n") if block]
    pieces = [json.loads(event[len("data: ") :])["text"] for event in events if event.startswith("data: ")]
    assert events[-1].startswith("event: done") and len(pieces) > 1
    assert "".join(pieces) == whole.json()["text"]


# ---- bad requests --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "request_body", "status", "says"),
    [
        ("/v1/translate", b"{not json", 422, "JSON"),
        ("/v1/translate", {"text": "not a list"}, 422, "text"),
        ("/v1/translate", {"text": ["a"], "beam": "five"}, 422, "beam"),
        ("/v1/translate", {"text": ["a"], "colour": "red"}, 422, "colour"),
        ("/v1/translate", {"text": []}, 400, "no line"),
        ("/v1/translate", {"text": ["  "]}, 400, "no line"),
        ("/v1/translate", {"text": ["a"] * 9}, 413, "at most 8 lines"),
        ("/v1/translate", {"text": ["a" * 201]}, 413, "characters"),
        ("/v1/translate", {"text": ["a"], "beam": 7}, 400, "beam must be at most 6"),
        ("/v1/translate", {"text": ["a"], "beam": 2, "n_best": 3}, 400, "n_best=3 needs a beam"),
        ("/v1/translate", {"text": ["a"], "max_length": 61}, 400, "max_length must be at most 60"),
        ("/v1/translate", {"text": ["a"], "model": "nope"}, 404, "unknown translate model 'nope'"),
        ("/v1/translate", {"text": ["a"], "model": "tiny_textgen"}, 404, "tiny_translate"),
        ("/v1/generate", {"prime": ""}, 422, "prime"),
        ("/v1/generate", {"prime": "§§"}, 400, "not in the vocabulary: '§'"),
        ("/v1/generate", {"prime": "a", "length": 61}, 400, "length must be at most 60"),
        ("/v1/generate", {"prime": "a", "top_p": 1.5}, 422, "top_p"),
        ("/v1/generate", {"prime": "a" * 201}, 413, "characters"),
    ],
)
def test_bad_json_requests_get_4xx_json_errors(
    client: TestClient, path: str, request_body: object, status: int, says: str
) -> None:
    if isinstance(request_body, bytes):
        response = client.post(path, content=request_body, headers={"content-type": "application/json"})
    else:
        response = client.post(path, json=request_body)
    assert response.status_code == status, response.text
    assert says in response.json()["error"]


def test_bad_uploads_get_4xx_json_errors(client: TestClient) -> None:
    def post(*files: tuple[str, bytes]) -> httpx.Response:
        return client.post("/v1/caption", files=[("images", (name, data, "image/png")) for name, data in files])

    good = png(draw("red", "bar"))
    cases = [
        (post(("notes.txt", b"just some text")), 400, "notes.txt"),
        (post(("good.png", good), ("cut.png", good[: len(good) // 2])), 400, "cut.png"),
        (post(("big.png", png(Image.new("RGB", (200, 100))))), 400, "too large"),
        (post(("huge.png", b"\x89PNG" + bytes(60_000))), 413, "larger than 50,000 bytes"),
        (post(*[("x.png", good)] * 4), 413, "at most 3 images"),
        (post(("empty.png", b"")), 400, "empty"),
        (client.post("/v1/caption", data={"beam": "2"}), 422, "images"),
    ]
    for response, status, says in cases:
        assert response.status_code == status, response.text
        assert says in response.json()["error"], response.text
    assert post(("good.png", good)).status_code == 200  # still serving


def test_bodies_over_the_limit_are_refused_with_or_without_a_length(client: TestClient) -> None:
    big = json.dumps({"text": ["a " * 60_000]}).encode()
    assert client.post("/v1/translate", content=big, headers={"content-type": "application/json"}).status_code == 413

    def chunks():  # no content-length: a chunked body
        for _ in range(30):
            yield b" " * 10_000

    response = client.post("/v1/translate", content=chunks(), headers={"content-type": "application/json"})
    assert response.status_code == 413 and "larger than 200,000 bytes" in response.json()["error"]


# ---- dynamic batching -------------------------------------------------------------------------


def test_concurrent_requests_share_batches_and_each_gets_its_own_result(run_dirs: dict[str, Path]) -> None:
    models = served(run_dirs)
    app = create_app(models, LIMITS)
    lines = ["ein mann sieht der hund .", "der ball rot mag ein kind .", "ein kind jagt der katze .", "der hund ."]

    async def run() -> list[dict]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            requests = [http.post("/v1/translate", json={"text": [lines[i % 4]], "beam": 2}) for i in range(12)]
            return [response.json() for response in await asyncio.gather(*requests)]

    results = asyncio.run(run())
    translator = models[0].model
    alone = {line: translator.translate([line], beam=2)[0].text for line in lines}
    assert [r["translations"][0]["text"] for r in results] == [alone[lines[i % 4]] for i in range(12)]
    assert models[0].batcher.batches < 12


def test_the_batcher_groups_by_key_bounds_batches_and_reports_errors() -> None:
    seen: list[tuple[str, list[int]]] = []

    def decode(key: str, items: list[int]) -> list[int]:
        if key == "bad":
            raise ValueError("bad settings")
        seen.append((key, items))
        return [item * 10 for item in items]

    async def run() -> tuple[list[object], int]:
        batcher = DynamicBatcher(decode, max_items=4, quiet_s=0.05, max_wait_s=0.2)
        jobs = [batcher.submit("a", [1, 2]), batcher.submit("b", [3]), batcher.submit("a", [4]),
                batcher.submit("a", [5, 6]), batcher.submit("bad", [7])]  # fmt: skip
        results = await asyncio.gather(*jobs, return_exceptions=True)
        batcher.close()
        return results, batcher.batches

    results, batches = asyncio.run(run())
    assert results[:4] == [[10, 20], [30], [40], [50, 60]]
    assert isinstance(results[4], ValueError)
    # the first gathering stops at 4 items: a+a share a batch, b has its own; the rest come next
    assert seen == [("a", [1, 2, 4]), ("b", [3]), ("a", [5, 6])] and batches == 3


def test_without_batching_every_request_is_decoded_alone(run_dirs: dict[str, Path]) -> None:
    alone = ServeLimits(max_batch=1, batch_quiet_ms=0, batch_wait_ms=0)
    models = served({"translate": run_dirs["translate"]}, alone)

    async def run() -> None:
        transport = httpx.ASGITransport(app=create_app(models, alone))
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            await asyncio.gather(*[http.post("/v1/translate", json={"text": ["der hund ."]}) for _ in range(5)])

    asyncio.run(run())
    assert models[0].batcher.batches == 5
