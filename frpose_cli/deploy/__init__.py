"""Deployment and speed: export to ONNX/TorchScript (also reduced precision), and ``frpose bench``."""
