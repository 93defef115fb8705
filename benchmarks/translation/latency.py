"""Per-segment latency at each listener, and where it went.

For segment k and a listener of language l, the latency is R - cut: the listener's receipt (``time.time()`` in
the client, when its Join stream yields the first SpeechChunk of k) minus the gateway's segment cut
(``StageTimes.cut_unix_ms``, read from the SegmentAudio message on NATS; same machine, same clock).

It splits into three parts, from the NATS timeline the observer recorded (cut, transcript T, text.l X, speech.l S)
and the stage times the workers measured (LatencyBreakdown asr/mt/tts: wall time of each Triton call, which
includes waiting inside Triton for a busy model instance):

* model compute on the segment's path: ASR + the MT calls up to and including l (the MT worker translates a
  segment's targets one after another, in the segment's target order) + TTS(l);
* model queueing: waiting for a stage whose handler slots were all busy with earlier messages. Each stage is a
  FIFO of ``concurrency`` slots (read from the worker factories): a message arriving at a can start no earlier
  than the c-th latest finish among the messages before it, so its wait is max(0, that finish - a). That is model
  work too (of other messages): it exists only when the models are slower than the speech arrives;
* platform overhead: everything else - NATS publish/fetch per hop, protobuf, the gateway's ordering and fan-out and
  the gRPC stream to the listener. Per-hop values carry a few ms of scheduling noise of the observing process
  (a hop can come out slightly negative); their sum is anchored on the cut and the listener's receipt.

``naive overhead`` is R - cut - (ASR + MT(l) + TTS(l)): total minus the listener's own chain, model queueing and
the other language's MT counted as overhead.
"""

from __future__ import annotations

from dataclasses import dataclass

from benchmarks.translation.observe import SegmentTrace
from benchmarks.translation.participants import Breakdown


@dataclass(frozen=True)
class Row:
    seq: int
    language: str
    listener: str
    total_ms: float  # client receipt of the first chunk - cut
    gateway_total_ms: float  # LatencyBreakdown.total_ms (cut -> the gateway fans the speech out)
    asr_ms: float
    mt_ms: float  # this language's MT hop(s)
    tts_ms: float
    queue_ms: float  # LatencyBreakdown.queue_ms
    model_path_ms: float
    model_wait_ms: float
    overhead_ms: float
    naive_overhead_ms: float
    asr_hop_ms: float  # platform overhead per hop
    mt_hop_ms: float
    tts_hop_ms: float
    delivery_ms: float  # speech on NATS -> first chunk read by the listener
    segment_s: float


def _waits(items: list[tuple[float, float, object]], slots: int) -> dict[object, float]:
    """FIFO stage with ``slots`` handlers: (arrival, finish, key) -> how long each waited for a free slot."""
    waits: dict[object, float] = {}
    finishes: list[float] = []
    for arrival, finish, key in sorted(items, key=lambda item: item[0]):
        free = sorted(finishes, reverse=True)[slots - 1] if len(finishes) >= slots else 0.0
        waits[key] = max(0.0, free - arrival)
        finishes.append(finish)
    return waits


def decompose(
    traces: dict[int, SegmentTrace],
    receipts: list[tuple[str, str, dict[int, float], dict[int, Breakdown]]],
    concurrency: dict[str, int],
) -> tuple[list[Row], list[int]]:
    """``receipts``: (listener id, language, seq -> first-chunk receipt, seq -> breakdown) per listener;
    ``concurrency``: handler slots of the asr, mt and tts workers.

    Returns the rows and the segments left out (no synthesised audio: an empty transcript, or not traced).
    """
    order = [seq for seq in sorted(traces) if traces[seq].cut_unix and traces[seq].transcript_seen]
    asr_waits = _waits([(traces[k].audio_seen, traces[k].transcript_seen, k) for k in order], concurrency.get("asr", 1))
    mt_waits = _waits(
        [(traces[k].transcript_seen, max(traces[k].text_seen.values()), k) for k in order if traces[k].text_seen],
        concurrency.get("mt", 1),
    )
    tts_waits = _waits(
        [
            (x, traces[k].speech_seen[lang], (k, lang))
            for k in order
            for lang, x in traces[k].text_seen.items()
            if lang in traces[k].speech_seen
        ],
        concurrency.get("tts", 1),
    )
    rows: list[Row] = []
    skipped: set[int] = {seq for seq in traces if seq not in order}
    for seq in order:
        trace = traces[seq]
        if not trace.transcript.strip():
            skipped.add(seq)
            continue
        cut, transcript_at = trace.cut_unix, trace.transcript_seen
        asr_wait = asr_waits.get(seq, 0.0)
        asr_s = _stage(trace, 0)
        asr_hop = transcript_at - cut - asr_wait - asr_s
        mt_wait = mt_waits.get(seq, 0.0)
        for listener, lang, firsts, breakdowns in receipts:
            if seq not in firsts or lang not in trace.speech_seen or not trace.speech_samples.get(lang):
                continue
            index = trace.targets.index(lang)
            mt_path = sum(trace.times[t][1] / 1000 for t in trace.targets[: index + 1] if t in trace.times)
            mt_hop = trace.text_seen[lang] - transcript_at - mt_wait - mt_path
            tts_s = trace.times[lang][2] / 1000
            tts_wait = tts_waits.get((seq, lang), 0.0)
            tts_hop = trace.speech_seen[lang] - trace.text_seen[lang] - tts_wait - tts_s
            delivery = firsts[seq] - trace.speech_seen[lang]
            total = firsts[seq] - cut
            own = asr_s + trace.times[lang][1] / 1000 + tts_s
            breakdown = breakdowns.get(seq)
            rows.append(
                Row(
                    seq=seq,
                    language=lang,
                    listener=listener,
                    total_ms=total * 1000,
                    gateway_total_ms=breakdown.total_ms if breakdown else float("nan"),
                    asr_ms=asr_s * 1000,
                    mt_ms=trace.times[lang][1],
                    tts_ms=tts_s * 1000,
                    queue_ms=breakdown.queue_ms if breakdown else float("nan"),
                    model_path_ms=(asr_s + mt_path + tts_s) * 1000,
                    model_wait_ms=(asr_wait + mt_wait + tts_wait) * 1000,
                    overhead_ms=(asr_hop + mt_hop + tts_hop + delivery) * 1000,
                    naive_overhead_ms=(total - own) * 1000,
                    asr_hop_ms=asr_hop * 1000,
                    mt_hop_ms=mt_hop * 1000,
                    tts_hop_ms=tts_hop * 1000,
                    delivery_ms=delivery * 1000,
                    segment_s=trace.duration_s,
                )
            )
    return rows, sorted(skipped)


def _stage(trace: SegmentTrace, index: int) -> float:
    for times in trace.times.values():
        return times[index] / 1000
    return 0.0
