"""Capacity planning: queueing models of model pools and a planner that turns a workload mix into node counts."""
