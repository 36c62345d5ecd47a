"""Inference: person boxes, the pose model runtime, predict runs and their outputs."""
