"""The families' recordings (simulated devices) and the coordinator's own validation and test sets.

Device families (ids from 3000) are new voices, rooms, microphones and class mixes, never in the central training
set; validation (1000+) and test (2000+) are the central model's held-out families, so figures are comparable.
"""

from __future__ import annotations

import functools

from tessera.cry import corpus, training

DEVICE_FAMILY_BASE = 3000
DEVICE_CRIES, DEVICE_QUIET, DEVICE_DISTRACTORS = 30, 4, 4


@functools.cache
def device_batch(partition: int) -> training.Batch:
    """One family's recordings as log-mel (cached: the simulation runs every device in one process)."""
    family = training.families(DEVICE_FAMILY_BASE + partition, 1, corpus.TRAIN_BACKGROUNDS)
    return training.to_batch(training.recordings(family, DEVICE_CRIES, DEVICE_QUIET, DEVICE_DISTRACTORS))


@functools.cache
def validation_batch() -> training.Batch:
    recipe = training.Recipe()
    group = training.families(1000, recipe.val_families, corpus.EVAL_BACKGROUNDS)
    return training.to_batch(training.recordings(group, recipe.eval_cries_per_family, recipe.eval_quiet_per_family))


@functools.cache
def test_batch() -> training.Batch:
    recipe = training.Recipe()
    group = training.families(2000, recipe.test_families, corpus.EVAL_BACKGROUNDS)
    return training.to_batch(training.recordings(group, recipe.eval_cries_per_family, recipe.eval_quiet_per_family))


@functools.cache
def ood_batch() -> training.Batch:
    return training.to_batch(training.ood_recordings(training.Recipe().ood))
