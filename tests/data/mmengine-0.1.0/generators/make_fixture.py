"""Build a real mmengine-0.1.0 checkpoint (Runner.save_checkpoint) of a toy SimpleBaseline-named
model, then strip it the way mmpose 1.0.0rc0's tools/misc/publish_model.py did (drops 'optimizer')."""
import sys, torch, torch.nn as nn
import mmengine
from mmengine.model import BaseModel
from mmengine.runner import Runner
from torch.utils.data import Dataset

class Toy(BaseModel):
    def __init__(self):
        super().__init__(data_preprocessor=dict(type='ImgDataPreprocessor', mean=[123.675, 116.28, 103.53],
                                                std=[58.395, 57.12, 57.375], bgr_to_rgb=True))
        self.backbone = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1))
        self.head = nn.Sequential(nn.Conv2d(4, 2, 1))
    def forward(self, inputs, data_samples=None, mode='tensor'):
        out = self.head(self.backbone(inputs))
        if mode == 'loss':
            return dict(loss_kpt=out.pow(2).mean())
        return out

class Data(Dataset):
    metainfo = dict(dataset_name='coco', num_keypoints=17)
    def __len__(self): return 8
    def __getitem__(self, i):
        g = torch.Generator().manual_seed(i)
        return dict(inputs=torch.randint(0, 255, (3, 16, 12), generator=g, dtype=torch.uint8), data_samples=i)

runner = Runner(model=Toy(), work_dir=sys.argv[1], experiment_name='td-hm_res50_toy',
                train_dataloader=dict(dataset=Data(), sampler=dict(type='DefaultSampler', shuffle=True),
                                      batch_size=2, num_workers=0, collate_fn=dict(type='pseudo_collate')),
                optim_wrapper=dict(optimizer=dict(type='Adam', lr=5e-4)),
                param_scheduler=[dict(type='LinearLR', begin=0, end=4, start_factor=0.001, by_epoch=False),
                                 dict(type='MultiStepLR', begin=0, end=3, milestones=[2, 3], gamma=0.1, by_epoch=True)],
                train_cfg=dict(by_epoch=True, max_epochs=3, val_interval=10),
                default_hooks=dict(checkpoint=dict(type='CheckpointHook', interval=3)),
                randomness=dict(seed=0))
runner.train()
