"""The HTTP API and the web page: FastAPI over the Python API.

    POST /v1/translate   JSON {"model", "text": [...], "beam", "n_best", ...} -> translations
    POST /v1/caption     multipart images (+ form fields) -> captions, and attention on request
    POST /v1/generate    JSON {"model", "prime", "length", ..., "stream"} -> text, or server-sent events
    GET  /v1/models      each model's task, vocabulary, parameters and decoding defaults
    GET  /health         liveness
    GET  /               the web page; /docs: the OpenAPI page

Every refused request gets a 4xx JSON ``{"error": "..."}`` that says what was wrong.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from importlib import resources
from typing import Any, Literal

from fastapi import FastAPI, File, Form, HTTPException, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from seq2seq import __version__
from seq2seq.inference import Hypothesis
from seq2seq.serving.limits import ServeLimits
from seq2seq.serving.models import BatchKey, CaptionOutcome, ServedModel, Upload

log = logging.getLogger("seq2seq.serve")
STATIC = resources.files("seq2seq.serving") / "static"


# ---- requests -------------------------------------------------------------------------------


class TranslateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str | None = Field(None, description="the model's name (default: the only translation model)")
    text: list[str] = Field(description="lines to translate")
    beam: int | None = Field(None, ge=1, description="beams (default: the model's decoding.beam_size)")
    greedy: bool = Field(False, description="greedy search (a beam of 1)")
    n_best: int | None = Field(None, ge=1, description="translations per line, best first")
    max_length: int | None = Field(None, ge=1)
    max_length_ratio: float | None = Field(None, ge=0)
    min_length: int | None = Field(None, ge=0)
    length_penalty: Literal["none", "gnmt", "average"] | None = None
    alpha: float | None = Field(None, ge=0)
    no_repeat_ngram: int | None = Field(None, ge=0)
    attention: bool = Field(False, description="each translation's attention over the source tokens")


class GenerateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str | None = Field(None, description="the model's name (default: the only text generation model)")
    prime: str = Field("\n", min_length=1, description="the text the generation continues")
    length: int | None = Field(None, ge=1, description="new tokens at most")
    temperature: float | None = Field(None, ge=0)
    top_k: int | None = Field(None, ge=0)
    top_p: float | None = Field(None, gt=0, le=1)
    repetition_penalty: float | None = Field(None, gt=0)
    seed: int | None = Field(None, ge=0)
    stop: list[str] | None = None
    greedy: bool = False
    unknown: Literal["error", "unk"] = Field("error", description="prime characters the model never saw")
    stream: bool = Field(False, description="server-sent events, one per piece of text as it is made")


# ---- the app --------------------------------------------------------------------------------


def create_app(models: list[ServedModel], limits: ServeLimits | None = None) -> FastAPI:
    """The ASGI app serving ``models`` (each task's models by name) within ``limits``
    (default: ``ServeLimits()``)."""
    limits = limits or ServeLimits()
    served = {model.name: model for model in models}

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        for model in served.values():
            model.batcher.close()

    app = FastAPI(title="seq2seq", version=__version__, description=__doc__, lifespan=lifespan)
    app.add_middleware(BodyLimit, max_bytes=limits.max_body_bytes)
    _add_error_handlers(app)

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "models": len(served)}

    @app.get("/v1/models")
    async def list_models() -> dict[str, Any]:
        return {"models": [model.describe() for model in served.values()]}

    @app.post("/v1/translate")
    async def translate(body: TranslateRequest) -> dict[str, Any]:
        model = _pick(served, "translate", body.model)
        _check_lines(body.text, limits)
        _check_at_most(limits.max_beam, beam=body.beam, n_best=body.n_best)
        _check_at_most(limits.max_length, max_length=body.max_length)
        options = body.model_dump(exclude={"model", "text", "attention"})
        options["max_length"] = _within(limits.max_length, body.max_length, model.model.config.decoding.max_length)
        decode = model.model.decode_config(**options)
        results = await _decoded(model, BatchKey.of(decode, body.attention), body.text, limits)
        translations = [
            {
                "source": line,
                "text": hypotheses[0].text,
                "hypotheses": [_hypothesis(h) for h in hypotheses],
                **({"source_tokens": model.model.source_tokens(line)} if body.attention else {}),
            }
            for line, hypotheses in zip(body.text, results)
        ]
        return {"model": model.name, "translations": translations}

    @app.post("/v1/caption")
    async def caption(
        images: list[UploadFile] = File(description="image files (JPEG, PNG, ...)"),
        model: str | None = Form(None),
        beam: int | None = Form(None, ge=1),
        greedy: bool = Form(False),
        n_best: int | None = Form(None, ge=1),
        sample: bool = Form(False),
        num_samples: int | None = Form(None, ge=1),
        temperature: float | None = Form(None, ge=0),
        top_k: int | None = Form(None, ge=0),
        top_p: float | None = Form(None, gt=0, le=1),
        seed: int | None = Form(None, ge=0),
        max_length: int | None = Form(None, ge=1),
        attention: bool = Form(False),
    ) -> dict[str, Any]:
        served_model = _pick(served, "caption", model)
        if len(images) > limits.max_images:
            raise HTTPException(413, f"at most {limits.max_images} images per request, got {len(images)}")
        _check_at_most(limits.max_beam, beam=beam, n_best=n_best, num_samples=num_samples)
        _check_at_most(limits.max_length, max_length=max_length)
        max_length = _within(limits.max_length, max_length, served_model.model.config.decoding.max_length)
        decode = served_model.model.decode_config(
            beam=beam, greedy=greedy, n_best=n_best, sample=sample, num_samples=num_samples,
            temperature=temperature, top_k=top_k, top_p=top_p, seed=seed, max_length=max_length,
        )  # fmt: skip
        uploads = [await _read_upload(image, limits) for image in images]
        outcomes: list[CaptionOutcome] = await _decoded(served_model, BatchKey.of(decode, attention), uploads, limits)
        unreadable = [outcome.error for outcome in outcomes if outcome.error is not None]
        if unreadable:
            raise HTTPException(400, "not an image that can be read: " + "; ".join(unreadable))
        captions = [
            {
                "image": upload.name,
                "text": outcome.hypotheses[0].text,
                "hypotheses": [_hypothesis(h) for h in outcome.hypotheses],
            }
            for upload, outcome in zip(uploads, outcomes)
        ]
        return {
            "model": served_model.name,
            "grid_size": served_model.model.config.image_encoder.grid_size,
            "captions": captions,
        }

    @app.post("/v1/generate", response_model=None)
    async def generate(body: GenerateRequest) -> dict[str, Any] | StreamingResponse:
        model = _pick(served, "textgen", body.model)
        if len(body.prime) > limits.max_line_chars:
            raise HTTPException(413, f"the prime has {len(body.prime):,} characters; at most {limits.max_line_chars:,}")
        _check_at_most(limits.max_length, length=body.length)
        options = body.model_dump(exclude={"model", "prime", "stream", "unknown"})
        options["length"] = _within(limits.max_length, body.length, model.model.config.decoding.max_length)
        model.model.decode_config(**options)  # checks every option
        model.model.prime_ids(body.prime, body.unknown)  # an unknown character is a 400, before anything starts
        arguments = {**options, "unknown": body.unknown}
        if body.stream:
            pieces = model.model.stream(body.prime, **arguments)
            return StreamingResponse(_events(pieces, limits.timeout_s), media_type="text/event-stream")
        texts = await asyncio.wait_for(
            model.batcher.run_alone(lambda: model.model.generate(body.prime, **arguments)), limits.timeout_s
        )
        return {"model": model.name, "prime": body.prime, "text": texts[0].text}

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(str(STATIC / "index.html"))

    app.mount("/static", StaticFiles(directory=str(STATIC)), name="static")
    return app


# ---- helpers --------------------------------------------------------------------------------


def _pick(served: dict[str, ServedModel], task: str, name: str | None) -> ServedModel:
    """The model named ``name`` (or the only one of ``task``), or a 404 that lists the others."""
    of_task = [model for model in served.values() if model.task == task]
    names = ", ".join(model.name for model in of_task) or "none"
    if name is None:
        if len(of_task) == 1:
            return of_task[0]
        if not of_task:
            raise HTTPException(404, f"this server holds no {task} model")
        raise HTTPException(400, f"this server holds several {task} models ({names}): name one with 'model'")
    model = served.get(name)
    if model is None or model.task != task:
        raise HTTPException(404, f"unknown {task} model {name!r}; {task} models here: {names}")
    return model


def _check_lines(lines: list[str], limits: ServeLimits) -> None:
    if not lines or not any(line.strip() for line in lines):
        raise HTTPException(400, "text holds no line to translate: send at least one non-empty line")
    if len(lines) > limits.max_lines:
        raise HTTPException(413, f"at most {limits.max_lines} lines per request, got {len(lines)}")
    for number, line in enumerate(lines, start=1):
        if len(line) > limits.max_line_chars:
            raise HTTPException(413, f"line {number} has {len(line):,} characters; at most {limits.max_line_chars:,}")


def _check_at_most(limit: int, **values: int | None) -> None:
    for name, value in values.items():
        if value is not None and value > limit:
            raise HTTPException(400, f"{name} must be at most {limit} on this server, got {value}")


def _within(limit: int, asked: int | None, default: int) -> int:
    """The length a request asked for (checked against ``limit`` already), or the model's
    default cut to ``limit``."""
    return asked if asked is not None else min(default, limit)


async def _read_upload(upload: UploadFile, limits: ServeLimits) -> Upload:
    data = await upload.read(limits.max_image_bytes + 1)
    name = upload.filename or "image"
    if len(data) > limits.max_image_bytes:
        raise HTTPException(413, f"{name} is larger than {limits.max_image_bytes:,} bytes")
    if not data:
        raise HTTPException(400, f"{name} is empty")
    return Upload(name, data)


async def _decoded(model: ServedModel, key: BatchKey, items: list[Any], limits: ServeLimits) -> list[Any]:
    try:
        return await asyncio.wait_for(model.batcher.submit(key, items), limits.timeout_s)
    except asyncio.TimeoutError:
        raise HTTPException(
            503, f"the request took longer than {limits.timeout_s:g} s; try fewer or shorter inputs"
        ) from None


def _hypothesis(hypothesis: Hypothesis) -> dict[str, Any]:
    described: dict[str, Any] = {
        "text": hypothesis.text,
        "tokens": list(hypothesis.tokens),
        "score": hypothesis.score if math.isfinite(hypothesis.score) else None,
    }
    if hypothesis.attention is not None:
        described["attention"] = [[round(w, 4) for w in row] for row in hypothesis.attention.tolist()]
    return described


async def _events(pieces: Iterator[str], timeout_s: float) -> AsyncIterator[str]:
    """Server-sent events: one ``data`` event per piece, then ``done`` (or ``error``)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    end = object()
    try:
        while True:
            piece = await asyncio.wait_for(loop.run_in_executor(None, next, pieces, end), deadline - loop.time())
            if piece is end:
                break
            yield f"data: {json.dumps({'text': piece})}\n\n"
        yield "event: done\ndata: {}\n\n"
    except asyncio.TimeoutError:
        yield f"event: error\ndata: {json.dumps({'error': f'generation took longer than {timeout_s:g} s'})}\n\n"
    finally:
        close = getattr(pieces, "close", None)
        if close is not None:
            await loop.run_in_executor(None, close)


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(HTTPException)
    async def http_error(_: Request, error: HTTPException) -> JSONResponse:
        return JSONResponse({"error": error.detail}, status_code=error.status_code)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, error: RequestValidationError) -> JSONResponse:
        problems = [f"{'.'.join(str(part) for part in problem['loc'])}: {problem['msg']}" for problem in error.errors()]
        return JSONResponse({"error": "; ".join(problems)}, status_code=422)

    @app.exception_handler(ValueError)
    async def bad_value(_: Request, error: ValueError) -> JSONResponse:
        return JSONResponse({"error": str(error)}, status_code=400)

    @app.exception_handler(Exception)
    async def unexpected(_: Request, error: Exception) -> JSONResponse:
        log.exception("unexpected error")
        return JSONResponse(
            {"error": f"internal error ({type(error).__name__}); see the server's log"}, status_code=500
        )


class BodyLimit:
    """Refuses a request body over ``max_bytes`` with 413, whether it says its length or not.

    A body without a length is read here up to the limit and handed on whole, so that the app
    never sees more than ``max_bytes``.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit():
            if int(declared) > self.max_bytes:
                await self._refuse(send)
                return
            await self.app(scope, receive, send)
            return
        body, more = b"", True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > self.max_bytes:
                await self._refuse(send)
                return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)

    async def _refuse(self, send: Send) -> None:
        body = json.dumps({"error": f"the request body is larger than {self.max_bytes:,} bytes"}).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body})
