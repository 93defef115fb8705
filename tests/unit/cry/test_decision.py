from __future__ import annotations

import numpy as np

from tessera.cry.decision import call

PROBS = np.array([0.1, 0.6, 0.2, 0.05, 0.05], np.float32)


def test_no_cry_names_nothing_and_an_unknown_cry_abstains() -> None:
    quiet = call(0.2, PROBS, -9.0, cry_threshold=0.5, energy_threshold=-5.0)
    assert not quiet.cry_detected and quiet.ranked == () and quiet.reason is None and not quiet.abstained
    unknown = call(0.9, PROBS, -3.0, cry_threshold=0.5, energy_threshold=-5.0)
    assert unknown.cry_detected and unknown.abstained and unknown.reason is None and unknown.ranked == ()


def test_a_known_cry_ranks_the_reasons_and_gives_the_top_one_with_its_probability() -> None:
    known = call(0.9, PROBS, -9.0, cry_threshold=0.5, energy_threshold=-5.0)
    assert known.cry_detected and not known.abstained
    assert [i for i, _ in known.ranked] == [1, 2, 0, 3, 4] and known.reason == 1
    assert abs(known.confidence - 0.6) < 1e-6 and abs(sum(p for _, p in known.ranked) - 1.0) < 1e-5
    assert call(0.5, PROBS, -5.0, cry_threshold=0.5, energy_threshold=-5.0).reason == 1  # both bounds inclusive
