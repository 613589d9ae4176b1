#!/usr/bin/env bash
# The GPU check, as one prepared script for a lent GPU machine (it has torch but no internet).
# Carry `.gpu/` holding wheels/ (pydantic for that Python) and data/ (cifar10-jpeg.tar.gz, MNIST/raw/*.gz).
# Usage (on the GPU machine, repo root): bash bench/device_check.sh
set -u
DATA=${DATA:-.gpu/data}
python3 -m pip install -q --no-index --no-deps .gpu/wheels/*.whl 2>&1 | grep -v WARNING | tail -2
export PYTHONPATH=$PWD/src NNSTUDY_CACHE=/tmp/nnstudy-cache
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import torch, torchvision; print('torch', torch.__version__, 'torchvision', torchvision.__version__, 'cuda', torch.cuda.is_available())"
echo "== tests on CUDA"
timeout 180 python3 -m pytest -q -p no:cacheprovider tests/test_cuda.py tests/test_training.py tests/test_models.py 2>&1 | tail -25
echo "== seeds: 5 seeds stacked vs one at a time (cuda)"
timeout 150 python3 bench/seeds.py --device cuda --data-dir "$DATA" --limit 1500 2>&1 | tail -14
echo "== tutorial loop vs nnstudy (cuda)"
timeout 200 python3 bench/tutorial_vs_nnstudy.py --device cuda --data-dir "$DATA" --limit 20000 --extract-dir /tmp/cifar-extract 2>&1 | tail -14
