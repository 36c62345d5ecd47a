"""Deployment and speed: export, precisions, the accuracy gate, hardware, benchmarks."""
