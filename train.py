#!/usr/bin/env python
"""Train, validate, test or predict with any latentnav experiment.

    python train.py fit --config configs/classifier/demo.yaml
    python train.py fit --config configs/classifier/demo.yaml --ckpt_path runs/.../last.ckpt
    python train.py --help
"""

from latentnav.commands.cli import main

if __name__ == "__main__":
    main()
