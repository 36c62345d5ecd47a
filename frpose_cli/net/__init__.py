"""The networks of the paper: one module per figure (GCB: Fig. 1b, SA-MFCD: Fig. 1c, network: Fig. 1a)."""
from frpose_cli.net.gcb import GlobalContextBlock
from frpose_cli.net.network import ArchSpec, PoseNet
from frpose_cli.net.sa_mfcd import SAMFCD, DecoderFusion

__all__ = ["ArchSpec", "DecoderFusion", "GlobalContextBlock", "PoseNet", "SAMFCD"]
