"""Serving benchmark: requests/s and latency of ``seq2seq serve`` under concurrent clients.

  python -m benchmarks.serve --translate runs/multi30k_de_en --caption runs/emoji_scratch \\
      --textgen runs/shakespeare_char

Starts the server twice in a child process (``python -m seq2seq serve``), with dynamic batching
and with ``--no-batching``, and drives it from this process with an async HTTP client (aiohttp):

1. translation, one sentence of the Multi30k test set per request, beam 5: 1, 8 and 64
   concurrent clients, batching on and off; greedy search at 8 clients;
2. captioning, one emoji image per request (greedy): 1, 8 and 64 clients, batching on and off;
3. 64 translation clients (beam 5) with 10% bad requests mixed in (malformed JSON, an unknown
   model, wrong types, an empty text, a beam out of range): server errors (5xx), good requests
   left unanswered or answered wrongly, and the throughput beside the clean run;
4. streaming generation: the time from sending a request to its first piece of text.

Each cell sends a bounded number of requests for at most ``--seconds`` and stops; only this
machine's loopback address is used. The last line is ``RESULT serve: key=value ...``.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import random
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import httpx

from benchmarks.common import Figures, result_line, say
from seq2seq.commands.common import exit_status

HOST = "127.0.0.1"


@dataclass
class Cell:
    """The outcome of one load: latencies of the good requests, and what went wrong."""

    latencies: list[float] = field(default_factory=list)
    seconds: float = 0.0
    server_errors: int = 0  # 5xx answers
    lost: int = 0  # good requests without a correct 200 answer
    bad_refused: int = 0  # bad requests answered with a 4xx

    @property
    def requests_per_second(self) -> float:
        return len(self.latencies) / self.seconds if self.seconds else 0.0

    def percentile(self, share: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else float("nan")


class Server:
    """``python -m seq2seq serve`` in a child process on a free loopback port."""

    def __init__(self, models: list[str], batching: bool) -> None:
        self.port = free_port()
        command = [sys.executable, "-m", "seq2seq", "serve", *models, "--host", HOST, "--port", str(self.port)]
        command += ["--max-lines", "64"] + ([] if batching else ["--no-batching"])
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.url = f"http://{HOST}:{self.port}"

    def wait_ready(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the server stopped: {self.process.stderr.read()[-2000:]}")  # type: ignore[union-attr]
            try:
                if httpx.get(self.url + "/health", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.2)
        raise RuntimeError("the server did not answer /health in time")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


# ---- load ---------------------------------------------------------------------------------------


@dataclass
class Request:
    """One request to send: JSON or uploaded files, and whether it is a good one."""

    path: str
    json_body: object | None = None
    raw_body: bytes | None = None
    image: tuple[str, bytes] | None = None  # (file name, PNG bytes), uploaded as "images"
    good: bool = True

    def body(self) -> dict[str, Any]:
        """The keyword arguments of aiohttp's ``post`` that send this request's body."""
        if self.raw_body is not None:
            return {"data": self.raw_body, "headers": {"content-type": "application/json"}}
        if self.image is not None:
            form = aiohttp.FormData()
            form.add_field("images", self.image[1], filename=self.image[0], content_type="image/png")
            return {"data": form}
        return {"json": self.json_body}


async def load(url: str, requests: list[Request], clients: int, seconds: float) -> Cell:
    """Send ``requests`` from ``clients`` concurrent clients, each one request at a time, until
    all are sent or ``seconds`` have passed. The client is aiohttp: on 2 cores shared with the
    server, a client that costs little CPU leaves the server what it needs."""
    cell, queue = Cell(), iter(requests)
    deadline = time.perf_counter() + seconds
    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(base_url=url, connector=connector, timeout=aiohttp.ClientTimeout(120)) as http:

        async def client() -> None:
            for request in queue:
                if time.perf_counter() > deadline:
                    return
                started = time.perf_counter()
                async with http.post(request.path, **request.body()) as response:
                    answer = await response.read()
                elapsed = time.perf_counter() - started
                cell.server_errors += response.status >= 500
                if request.good:
                    if response.status == 200 and json.loads(answer):
                        cell.latencies.append(elapsed)
                    else:
                        cell.lost += 1
                else:
                    cell.bad_refused += 400 <= response.status < 500

        started = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(clients)))
        cell.seconds = time.perf_counter() - started
    return cell


def sentences(data_dir: Path, count: int, seed: int = 0) -> list[str]:
    with gzip.open(data_dir / "test_2016_flickr.de.gz", "rt", encoding="utf-8") as file:
        lines = file.read().splitlines()
    rng = random.Random(seed)
    return [rng.choice(lines) for _ in range(count)]


def translation_requests(lines: list[str], beam: int) -> list[Request]:
    return [Request("/v1/translate", {"text": [line], "beam": beam}) for line in lines]


def bad_requests(count: int) -> list[Request]:
    kinds = [
        Request("/v1/translate", raw_body=b'{"text": ["ein', good=False),
        Request("/v1/translate", {"text": ["Ein Hund."], "model": "nobody"}, good=False),
        Request("/v1/translate", {"text": "not a list"}, good=False),
        Request("/v1/translate", {"text": [""]}, good=False),
        Request("/v1/translate", {"text": ["Ein Hund."], "beam": 1000}, good=False),
    ]
    return [kinds[index % len(kinds)] for index in range(count)]


def with_bad_requests(good: list[Request]) -> list[Request]:
    """``good`` with one bad request after every 9 good ones: 10% bad."""
    bad = bad_requests(len(good) // 9)
    mixed: list[Request] = []
    for index, request in enumerate(good):
        mixed.append(request)
        if index % 9 == 8:
            mixed.append(bad[index // 9])
    return mixed


def image_requests(images: list[Path], count: int) -> list[Request]:
    return [
        Request("/v1/caption", image=(path.name, path.read_bytes()))
        for path in (images[index % len(images)] for index in range(count))
    ]


async def first_piece_seconds(url: str, prime: str, count: int) -> list[float]:
    """Seconds from sending a streamed generation request to its first piece of text."""
    times = []
    async with aiohttp.ClientSession(base_url=url) as http:
        for seed in range(count):
            started = time.perf_counter()
            body = {"prime": prime, "length": 50, "seed": seed, "stream": True}
            async with http.post("/v1/generate", json=body) as response:
                async for line in response.content:
                    if line.startswith(b"data: "):
                        times.append(time.perf_counter() - started)
                        break
    return times


# ---- the benchmark -------------------------------------------------------------------------------


def describe(name: str, cell: Cell) -> None:
    say(
        f"  {name:<34} {cell.requests_per_second:7.1f} req/s  p50 {cell.percentile(0.5) * 1000:7.1f} ms  "
        f"p95 {cell.percentile(0.95) * 1000:7.1f} ms  p99 {cell.percentile(0.99) * 1000:7.1f} ms  "
        f"({len(cell.latencies)} good, {cell.server_errors} 5xx, {cell.lost} lost, {cell.bad_refused} bad refused)"
    )


def run_benchmark(args: argparse.Namespace) -> None:
    models = [f"--translate=de_en={args.translate}", f"--caption=emoji={args.caption}"]
    if args.textgen:
        models.append(f"--textgen=text={args.textgen}")
    lines = sentences(Path(args.data_dir), 4000)
    images = sorted(Path(args.images).glob("*.png"))[:200]
    if not images:
        raise FileNotFoundError(f"no PNG images in {args.images}: run python data_scripts/emoji.py first")
    figures: Figures = {}
    cells: dict[str, Cell] = {}
    for batching in (True, False):
        mode = "batched" if batching else "alone"
        say(f"server with {'dynamic batching' if batching else '--no-batching'}")
        server = Server(models, batching)
        try:
            server.wait_ready()
            asyncio.run(load(server.url, translation_requests(lines[:20], 5), 4, 30))  # warm-up
            for clients in (1, 8, 64):
                count = max(50, clients * 6)
                cell = asyncio.run(load(server.url, translation_requests(lines[:count], 5), clients, args.seconds))
                cells[f"translate_beam5_{clients}_{mode}"] = cell
                describe(f"translate beam 5, {clients} clients, {mode}", cell)
            cell = asyncio.run(load(server.url, translation_requests(lines[:400], 1), 8, args.seconds))
            cells[f"translate_greedy_8_{mode}"] = cell
            describe(f"translate greedy, 8 clients, {mode}", cell)
            for clients in (1, 8, 64):
                cell = asyncio.run(
                    load(server.url, image_requests(images, max(50, clients * 6)), clients, args.seconds)
                )
                cells[f"caption_{clients}_{mode}"] = cell
                describe(f"caption, {clients} clients, {mode}", cell)
            if batching:
                mixed = with_bad_requests(translation_requests(lines[:384], 5))  # the clean cell's good requests
                cell = asyncio.run(load(server.url, mixed, 64, args.seconds))
                cells["translate_beam5_64_batched_with_bad"] = cell
                describe("translate beam 5, 64 clients, 10% bad", cell)
                if args.textgen:
                    firsts = asyncio.run(first_piece_seconds(server.url, "ROMEO:", 20))
                    figures["first_piece_ms_p50"] = statistics.median(firsts) * 1000
                    figures["first_piece_ms_max"] = max(firsts) * 1000
                    say(f"  streaming: first piece after {figures['first_piece_ms_p50']:.1f} ms (median of 20), "
                        f"{figures['first_piece_ms_max']:.1f} ms at most")  # fmt: skip
        finally:
            server.stop()
    for name, cell in cells.items():
        figures[f"{name}_rps"] = cell.requests_per_second
        figures[f"{name}_p99_ms"] = cell.percentile(0.99) * 1000
    for clients in (1, 8, 64):
        for task in ("translate_beam5", "caption"):
            alone = cells[f"{task}_{clients}_alone"].requests_per_second
            figures[f"{task}_{clients}_batching_speedup"] = (
                cells[f"{task}_{clients}_batched"].requests_per_second / alone
            )
    with_bad, clean = cells["translate_beam5_64_batched_with_bad"], cells["translate_beam5_64_batched"]
    figures["bad_mix_5xx"] = with_bad.server_errors
    figures["bad_mix_lost"] = with_bad.lost
    figures["bad_mix_throughput_ratio"] = with_bad.requests_per_second / clean.requests_per_second
    say("targets: 64 clients beam 5 batching speed-up >= 5 and p99 <= 1500 ms; 8 clients greedy p99 <= 500 ms; "
        "10% bad: 0 5xx, 0 lost, throughput within 10%; first streamed piece <= 100 ms")  # fmt: skip
    Path(args.output).write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    say(result_line("serve", figures))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.serve", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--translate", default="runs/multi30k_de_en", help="a translation run directory")
    parser.add_argument("--caption", default="runs/emoji_scratch", help="a captioning run directory")
    parser.add_argument("--textgen", help="a text generation run directory (for the streaming figure)")
    parser.add_argument("--data-dir", default="data/multi30k", help="Multi30k files (the test set's German side)")
    parser.add_argument("--images", default="data/emoji/images", help="a folder of PNG images to caption")
    parser.add_argument("--seconds", type=float, default=20.0, help="the most one cell sends requests for")
    parser.add_argument("--output", default="serve_benchmark.json", help="where the figures go as JSON")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return exit_status(run_benchmark, args)


if __name__ == "__main__":
    sys.exit(main())
