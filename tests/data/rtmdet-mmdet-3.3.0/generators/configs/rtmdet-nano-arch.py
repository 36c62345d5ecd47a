# frpose test fixture: mmpose's rtmdet_nano_320-8xb32_coco-person.py (vendored beside this file,
# unchanged) with only the width reduced so the seeded checkpoint is tiny. Every structural option
# (depthwise convs, share_conv=False, exp_on_reg=False, num_csp_blocks=1, deepen 0.33, channel
# attention, SiLU, SyncBN->BN, strides, test_cfg, data_preprocessor, 320x320 test pipeline) is
# inherited from the real config.
_base_ = './rtmdet_nano_320-8xb32_coco-person.py'

model = dict(
    backbone=dict(widen_factor=0.03125),  # real: 0.25 -> stage outs 4, 8, 16, 32 (stem 1, 1, 2)
    neck=dict(in_channels=[8, 16, 32], out_channels=8),  # real: [64, 128, 256] -> 64
    bbox_head=dict(in_channels=8, feat_channels=8))  # real: 64 / 64
