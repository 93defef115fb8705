"""Load tests of Tessera's services on loopback, with a direct-Triton baseline and planner validation."""
