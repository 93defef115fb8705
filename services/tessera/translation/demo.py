"""Demo scenario: a three-person conference, an English speaker heard in Spanish and Catalan."""

from __future__ import annotations

import asyncio
import wave
from pathlib import Path

import grpc

from tessera.translation.client import ConferenceClient, speech_wav
from tessera.translation.v1 import translation_pb2 as pb
from tessera.translation.v1 import translation_pb2_grpc as pb_grpc


def run(address: str, build_dir: Path) -> None:
    out_dir = build_dir / "demo" / "translation"
    out_dir.mkdir(parents=True, exist_ok=True)
    asyncio.run(_run(address, out_dir))


async def _run(address: str, out_dir: Path) -> None:
    async with grpc.aio.insecure_channel(address) as channel:
        stub = pb_grpc.ConferenceServiceStub(channel)
        conference = await stub.CreateConference(pb.CreateConferenceRequest(display_name="Tessera demo"))
        cid = conference.conference_id
        speaker = ConferenceClient(stub, cid, "alice", "en")
        listeners = [ConferenceClient(stub, cid, "bruno", "es"), ConferenceClient(stub, cid, "carme", "ca")]
        for client in (speaker, *listeners):
            await client.open()
        await speaker.send(pb.ClientEvent(request_floor=pb.RequestFloor()))
        pcm, rate = speech_wav("beckett.wav")
        print(f"conference {cid}: alice (en) speaks {len(pcm) / rate:.1f} s of Beckett; bruno (es), carme (ca) listen")
        await speaker.speak(pcm, rate, realtime=True)
        await speaker.send(pb.ClientEvent(release_floor=pb.ReleaseFloor()))
        await speaker.wait_for(
            lambda e: e.WhichOneof("event") == "floor" and e.floor.kind == pb.FLOOR_EVENT_KIND_RELEASED, 30
        )
        segments = (await stub.GetConference(pb.GetConferenceRequest(conference_id=cid))).segments_accepted
        for listener in listeners:
            await listener.wait_for(
                lambda e, n=segments: e.WhichOneof("event") == "latency" and e.latency.segment_id.endswith(f"{n:06d}"),
                120,
            )
        for transcript in speaker.of("transcript"):
            print(f"  [{transcript.seq}] en: {transcript.text}")
            for listener in listeners:
                for t in listener.of("translation"):
                    if t.seq == transcript.seq:
                        print(f"       {t.target_language}: {t.text}")
        for listener in listeners:
            chunks = listener.of("speech")
            path = out_dir / f"{listener.participant_id}_{listener.language}.wav"
            with wave.open(str(path), "wb") as writer:
                writer.setnchannels(1)
                writer.setsampwidth(2)
                writer.setframerate(chunks[0].audio.sample_rate_hz if chunks else 22050)
                writer.writeframes(b"".join(c.audio.data for c in chunks))
            totals = sorted(lat.total_ms for lat in listener.of("latency"))
            print(
                f"  {listener.language}: {len(chunks)} speech chunks -> {path}; end of speech to first audio: "
                f"p50 {totals[len(totals) // 2]:.0f} ms, max {totals[-1]:.0f} ms"
            )
        for client in (speaker, *listeners):
            await client.close()
        await stub.EndConference(pb.EndConferenceRequest(conference_id=cid))
