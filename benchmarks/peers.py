"""Peer toolkits measured beside us: run a peer's benchmark script and read its figures.

The scripts live outside the project (``--peer-scripts``, by default ``../shared/peers`` from
the project root): each installs its toolkit from the package registry into its own virtual
environment on first use, trains the comparison model for ``ONMT_STEPS`` steps with the
protocol of BENCHMARKS.md, translates the test set with beam 5 and greedy search, and ends by
printing one JSON line. A speed ratio is only true when both sides ran on the same machine in
the same hour, so the translation benchmark runs the peer before and after its own rounds.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from benchmarks.common import say

#: The peer scripts by the name ``--peer`` takes.
PEER_SCRIPTS = {"opennmt": "run_opennmt.py"}
#: Training steps of a peer run: as many as our throughput runs take, so that the decoded
#: models are equally trained and decoding speeds compare.
PEER_STEPS = 250
GIB = 2**30


@dataclass
class PeerRun:
    """One peer run's figures (OpenNMT-py's own logs and timings, read by its script)."""

    toolkit: str
    version: str
    tokens_per_second: float  # target tokens/s over steps 51-250
    peak_rss_gib: float  # of the training process
    beam5_sentences_per_second: float  # batch 64, the toolkit's own search time
    greedy_sentences_per_second: float
    bleu_beam5: float
    bleu_greedy: float


def run_peer(name: str, scripts: Path, log: Path, steps: int = PEER_STEPS) -> PeerRun:
    """Runs the peer's script with this Python as its base environment; its output goes to ``log``."""
    script = scripts / PEER_SCRIPTS[name]
    if not script.is_file():
        raise FileNotFoundError(
            f"the {name} peer script is not at {script}: give the folder that holds {PEER_SCRIPTS[name]} and "
            "prep_data.py with --peer-scripts"
        )
    environment = {**os.environ, "BENCH_VENV": sys.prefix, "ONMT_STEPS": str(steps)}
    prepared = Path(os.environ.get("PEERS_DATA", Path(os.environ.get("TMPDIR", "/tmp")) / "peers" / "data"))
    with log.open("a", encoding="utf-8") as output:
        if not (prepared / "spm.model").is_file():
            say(f"  preparing the peers' data (joint SentencePiece) with {scripts / 'prep_data.py'}")
            subprocess.run([sys.executable, str(scripts / "prep_data.py")], env=environment, stdout=output, check=True)
        finished = subprocess.run(
            [sys.executable, str(script)], env=environment, stdout=subprocess.PIPE, stderr=output, text=True
        )
        output.write(finished.stdout)
    if finished.returncode != 0:
        raise RuntimeError(f"{script} failed with exit status {finished.returncode}; see {log}")
    return parse_peer_result(finished.stdout.strip().splitlines()[-1])


def parse_peer_result(line: str) -> PeerRun:
    """The figures of a peer script's last (JSON) line."""
    result = json.loads(line)
    return PeerRun(
        toolkit=result["toolkit"],
        version=" ".join(result.get("version", [])),
        tokens_per_second=result["throughput"]["tgt_tok_per_s"],
        peak_rss_gib=result["train"]["max_rss_kb"] * 1024 / GIB,
        beam5_sentences_per_second=result["decode_beam5"]["sent_per_s_toolkit_time"],
        greedy_sentences_per_second=result["decode_greedy"]["sent_per_s_toolkit_time"],
        bleu_beam5=result["decode_beam5"]["bleu"],
        bleu_greedy=result["decode_greedy"]["bleu"],
    )


def describe(run: PeerRun) -> str:
    return (
        f"{run.toolkit} {run.version}: {run.tokens_per_second:,.0f} target tokens/s, peak RSS "
        f"{run.peak_rss_gib:.2f} GiB, beam 5 {run.beam5_sentences_per_second:.1f} and greedy "
        f"{run.greedy_sentences_per_second:.1f} sentences/s (BLEU {run.bleu_beam5:.2f} / {run.bleu_greedy:.2f})"
    )


def mean_peer(runs: list[PeerRun]) -> PeerRun:
    """The mean of several runs of one peer (peak memory: the largest)."""

    def mean(values: list[float]) -> float:
        return sum(values) / len(values)

    return PeerRun(
        toolkit=runs[0].toolkit,
        version=runs[0].version,
        tokens_per_second=mean([r.tokens_per_second for r in runs]),
        peak_rss_gib=max(r.peak_rss_gib for r in runs),
        beam5_sentences_per_second=mean([r.beam5_sentences_per_second for r in runs]),
        greedy_sentences_per_second=mean([r.greedy_sentences_per_second for r in runs]),
        bleu_beam5=mean([r.bleu_beam5 for r in runs]),
        bleu_greedy=mean([r.bleu_greedy for r in runs]),
    )
