"""The fusion worker's per-room state: a reconnected camera's evidence does not mix with the previous stream's."""

from __future__ import annotations

import numpy as np

from tessera.monitoring.evidence import AudioObs, FrameObs
from tessera.monitoring.workers import RoomState


def test_each_stream_has_its_own_evidence_and_old_streams_are_forgotten() -> None:
    state = RoomState()
    loud = AudioObs(2200, 3182, np.ones(521, np.float32), np.zeros(1024, np.float32), -3.0, 3000.0, seq=1)
    state.evidence(1_000).add_audio(loud)  # the first stream heard something at 3.2 s
    state.evidence(1_000).add_frame(FrameObs(3000, (), seq=2))
    # The camera reconnects: a new stream whose time restarts at 0.
    later = state.evidence(60_000).context(3182)
    assert later.audio == () and later.frames == ()
    assert state.evidence(1_000).context(3182).audio == (loud,)
    for start in (120_000, 180_000, 240_000):
        state.evidence(start)
    assert list(state.streams) == [120_000, 180_000, 240_000]
