"""Tiny Flower spike app: linear regression on random data, FedAvg / SecAgg+."""
