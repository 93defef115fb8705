"""The cry federation on Flower: a ServerApp (coordinator) and a ClientApp (a family's device), SecAgg+ over
8-bit quantised adapter deltas packed into the smallest word the secure sum needs.

``tessera.cry.federation`` holds the arithmetic (local FedProx update, update checks, aggregation); this package is
the engine's side: Flower apps, the wire codec, the round gate and publisher, the in-process runtime.
"""
