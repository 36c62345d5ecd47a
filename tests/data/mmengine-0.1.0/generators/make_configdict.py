"""Meta objects training scripts of 2020-2022 left in checkpoints, pickled by the real classes:
mmengine 0.1.0's ConfigDict (an addict.Dict) and argparse.Namespace."""
import argparse, sys, torch
from mmengine.config import Config, ConfigDict
cfg = Config(dict(codec=dict(type='MSRAHeatmap', input_size=(192, 256), heatmap_size=(48, 64), sigma=2)))
meta = {"cfg_dict": cfg._cfg_dict, "args": argparse.Namespace(config="td-hm_res50.py", seed=0, launcher="none")}
assert type(meta["cfg_dict"]) is ConfigDict
torch.save(meta, sys.argv[1])
