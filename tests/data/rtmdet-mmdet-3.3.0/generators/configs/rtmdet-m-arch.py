# frpose test fixture: mmpose's rtmdet_m_640-8xb32_coco-person.py (vendored beside this file,
# unchanged; its _base_ is mmdet 3.3.0's rtmdet_m_8xb32-300e_coco.py) with only the width reduced
# so the seeded checkpoint is tiny. Every structural option (plain convs, share_conv=True,
# exp_on_reg=True, num_csp_blocks=2, deepen 0.67, channel attention, SiLU, SyncBN->BN, strides,
# test_cfg, data_preprocessor, 640x640 test pipeline) is inherited from the real config.
_base_ = './rtmdet_m_640-8xb32_coco-person.py'

model = dict(
    backbone=dict(widen_factor=0.03125),  # real: 0.75 -> stage outs 4, 8, 16, 32 (stem 1, 1, 2)
    neck=dict(in_channels=[8, 16, 32], out_channels=8),  # real: [192, 384, 768] -> 192
    bbox_head=dict(in_channels=8, feat_channels=8))  # real: 192 / 192
