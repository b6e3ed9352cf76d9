"""How much does DRAW's one-sample test bound move with the posterior noise? The measurement behind
``lnlib.claims.NATS_RESOLUTION``: every DRAW checkpoint of the cpu profile that exists (runs still
training keep one per epoch) is evaluated four times on the 10,000 test images with other noise.

    .venv/bin/python scripts/draw_evaluation_noise.py
"""

import glob
import pathlib

import torch

from lnlib.data import binarized_mnist
from lnlib.experiments import draw, training

torch.set_num_threads(1)
test = torch.from_numpy(binarized_mnist.load().test)
found = sorted(glob.glob(str(training.run_folder("draw", "cpu", 0) / "*.pt")))
if not found:
    print("no DRAW checkpoint of the cpu profile: the measurement needs a run in training")
for path in found:
    key = pathlib.Path(path).stem
    spec = next(s for s in draw.specs(draw.PROFILES["cpu"], 0) if draw.run_key(s) == key)
    state = training.load_checkpoint(pathlib.Path(path), spec)
    model = draw.make_model(spec)
    model.load_state_dict(state["model"])
    model.eval()
    values = [draw.bound(model, test, seed=1000 + k)["bound"] for k in range(4)]
    print(f"{spec['variant']} seed {spec['seed']} epoch {state['epoch']}: bounds {[round(v, 3) for v in values]},"
          f" max - min {max(values) - min(values):.3f} nats", flush=True)
