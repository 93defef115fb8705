"""Demo: one synthetic fundus per grade, a mirrored eye, and a photograph that is not a fundus, through Assess."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np

from tessera.triage import cases, fundus
from tessera.triage.client import TriageClient
from tessera.triage.grading import CLASSES
from tessera.triage.v1 import triage_pb2 as pb


def run(address: str, build_dir: Path) -> None:
    asyncio.run(_run(address))


async def _run(address: str) -> None:
    rng = np.random.default_rng(11)
    print("synthetic fundus images (skimage's retina photograph with drawn lesions): decision support, not diagnosis")
    async with TriageClient.connect(address, timeout_s=120) as client:
        (task,) = await client.list_tasks()
        print(f"task {task.task}: classes {', '.join(task.classes)}; refer below {task.refer_threshold:.2f}")
        print(f"  models {dict(task.model_versions)}")
        for cls in CLASSES:
            sample = fundus.synthesise(cases.sample_counts(cls, rng), rng)
            reply = await client.assess([sample.image], case_reference=f"demo-{cls}")
            _show(f"truth {cls}{' (mirrored eye)' if sample.mirrored else ''}", reply)
        from skimage import data

        cat = np.asarray(data.chelsea())  # type: ignore[no-untyped-call]
        reply = await client.assess([cat], case_reference="demo-cat")
        _show("a photograph of a cat", reply)
        stored = await client.get_assessment(reply.assessment_id)
        print(f"\naudit: GetAssessment({reply.assessment_id}) returns the stored record: {stored == reply}")


def _show(title: str, reply: pb.AssessResponse) -> None:
    print(f"\n{title}")
    for line in (reply.findings_text or "(no findings)").splitlines():
        print(f"  {line}")
    if reply.HasField("decision"):
        print(f"  decision {reply.decision.class_name} ({reply.decision.uncertainty})")
    refer = pb.ReferReason.Name(reply.refer_reason).removeprefix("REFER_REASON_").lower() if reply.refer else "no"
    print(f"  refer: {refer}; in-distribution {reply.in_distribution_score:.2f}; {reply.latency_ms:.0f} ms")
    print(f"  rationale: {reply.rationale}")
