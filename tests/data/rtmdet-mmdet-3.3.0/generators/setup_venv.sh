#!/bin/sh
# The scratch venv the fixture was generated in (never a dependency of frpose). Run from a scratch
# directory that is not inside a git work tree (mmengine's Runner meta calls `git rev-parse HEAD`
# in the working directory; outside a repository it contributes '' to meta.mmengine_version).
#
# System: Python 3.11.7, torch 2.14.1 (+cu130 build, run on CPU) and torchvision 0.29.1,
# numpy 2.4.6, opencv-python 5.1.0.95, pycocotools 2.0.11, scipy 1.17.1, gcc 12.2.0, 2 CPU cores.
set -e
python -m venv --system-site-packages venv
venv/bin/pip install mmengine==0.10.7            # + addict yapf termcolor matplotlib ... as it pulls
venv/bin/pip install --no-deps mmdet==3.3.0
venv/bin/pip install shapely==2.2.0 terminaltables==3.1.10   # the rest of mmdet's runtime needs
                                                              # were already in the system site
venv/bin/pip install wheel ninja                 # for the --no-build-isolation source build below

# mmcv 2.1.0 (the newest mmcv that mmdet 3.3.0 accepts: mmcv>=2.0.0rc4,<2.2.0) exists only as a
# source distribution. Its setup.py compiles the CPU ops with -std=c++17, and torch 2.14's headers
# require C++20 ("#error C++20 or later compatible compiler is required to use ATen"): the plain
# `MMCV_WITH_OPS=1 pip install --no-build-isolation mmcv==2.1.0` fails. The one change made: that
# flag, line 207 of setup.py, -std=c++17 -> -std=c++20. No source file of mmcv is touched; the
# build compiles all 77 CPU op files (about 40 minutes on 2 cores) and installs the real mmcv._ext.
venv/bin/pip download --no-deps --no-binary :all: --no-build-isolation -d dl mmcv==2.1.0
# sha256 d387bcab66b467479b6660310e23746cfc79c6e57acf04094680adb499a5cd3f  dl/mmcv-2.1.0.tar.gz
mkdir -p src && tar xzf dl/mmcv-2.1.0.tar.gz -C src
sed -i "207s/-std=c++17/-std=c++20/" src/mmcv-2.1.0/setup.py
(cd src/mmcv-2.1.0 && MMCV_WITH_OPS=1 FORCE_CUDA=0 MAX_JOBS=2 \
    ../../venv/bin/pip install -v --no-build-isolation --no-deps .)
