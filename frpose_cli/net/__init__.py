"""The networks of the paper: one module per figure (GCB: Fig. 1b, SA-MFCD: Fig. 1c, network: Fig. 1a)."""
from .gcb import GlobalContextBlock
from .network import ArchSpec, PoseNet
from .sa_mfcd import SAMFCD, DecoderFusion

__all__ = ["ArchSpec", "DecoderFusion", "GlobalContextBlock", "PoseNet", "SAMFCD"]
