"""Train the small ZFNet-shaped network (``tiny-zfnet``) on generated shapes and textures, one checkpoint per epoch.

A real training run for ``deconv evolution`` (Zeiler & Fergus 2014, Fig. 4) that needs no
download: the data is drawn from a seeded generator, 8 classes of 64x64 pictures
(horizontal, vertical and diagonal stripes, checkerboard, disc, ring, square outline,
cross) in random colours, sizes, positions and noise. On 2 CPU cores it takes about a
minute. Writes::

    OUT/checkpoints/epoch_00.safetensors ... epoch_NN.safetensors   (00: the initialization)
    OUT/images/<class>_<k>.png                                      held-out pictures to scan
    OUT/log.json                                                    loss and accuracy per epoch

Then::

    deconv evolution --model tiny-zfnet --layer conv2 OUT/checkpoints OUT/images -o OUT/evolution

Usage: python scripts/train_tiny.py [--out runs/tiny] [--epochs 6] [--train 4000] [--seed 0]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from safetensors.torch import save_file

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from deconvnet.fileio import save_image_atomic, write_json_atomic  # noqa: E402
from deconvnet.models.tiny_zfnet import TINY_SIDE, TINY_TRANSFORM, TinyZFNet  # noqa: E402

CLASSES = ("hstripes", "vstripes", "dstripes", "checker", "disc", "ring", "square", "cross")


def draw(label: int, rng: np.random.Generator, side: int = TINY_SIDE) -> np.ndarray:
    """One (side, side, 3) uint8 picture of class ``label``."""
    yy, xx = np.mgrid[0:side, 0:side].astype(np.float32)
    background, foreground = rng.uniform(0, 1, 3), rng.uniform(0, 1, 3)
    while np.abs(background - foreground).sum() < 0.6:  # keep the figure visible
        foreground = rng.uniform(0, 1, 3)
    period = rng.uniform(6, 14)
    phase = rng.uniform(0, period)
    cy, cx = rng.uniform(side * 0.3, side * 0.7, 2)
    radius = rng.uniform(side * 0.15, side * 0.3)
    name = CLASSES[label]
    if name == "hstripes":
        mask = ((yy + phase) % period) < period / 2
    elif name == "vstripes":
        mask = ((xx + phase) % period) < period / 2
    elif name == "dstripes":
        mask = ((xx + yy + phase) % period) < period / 2
    elif name == "checker":
        mask = (((yy + phase) // (period / 2)) + ((xx + phase) // (period / 2))) % 2 == 0
    elif name == "disc":
        mask = (yy - cy) ** 2 + (xx - cx) ** 2 < radius**2
    elif name == "ring":
        distance = np.sqrt((yy - cy) ** 2 + (xx - cx) ** 2)
        mask = np.abs(distance - radius) < max(radius * 0.25, 2.0)
    elif name == "square":
        edge = np.maximum(np.abs(yy - cy), np.abs(xx - cx))
        mask = np.abs(edge - radius) < max(radius * 0.2, 2.0)
    else:  # cross
        width = max(radius * 0.3, 2.5)
        mask = ((np.abs(yy - cy) < width) & (np.abs(xx - cx) < radius * 1.3)) | \
               ((np.abs(xx - cx) < width) & (np.abs(yy - cy) < radius * 1.3))
    picture = np.where(mask[..., None], foreground, background) + rng.normal(0, 0.05, (side, side, 3))
    return (np.clip(picture, 0, 1) * 255 + 0.5).astype(np.uint8)


def dataset(count: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``count`` pictures (balanced classes) as model inputs (N, 3, 64, 64) and labels (N,)."""
    rng = np.random.default_rng(seed)
    labels = np.arange(count) % len(CLASSES)
    inputs = torch.stack([TINY_TRANSFORM(Image.fromarray(draw(int(label), rng))) for label in labels])
    return inputs, torch.from_numpy(labels)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/tiny", help="output folder (default runs/tiny)")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--train", type=int, default=4000, help="training pictures (default 4000)")
    parser.add_argument("--images", type=int, default=64, help="held-out pictures written for the scan (default 64)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    out = Path(args.out)
    (out / "checkpoints").mkdir(parents=True, exist_ok=True)
    (out / "images").mkdir(parents=True, exist_ok=True)
    torch.manual_seed(args.seed)
    inputs, labels = dataset(args.train, args.seed)
    test_inputs, test_labels = dataset(512, args.seed + 1)
    rng = np.random.default_rng(args.seed + 2)
    for k in range(args.images):
        label = k % len(CLASSES)
        save_image_atomic(out / "images" / f"{CLASSES[label]}_{k // len(CLASSES):02d}.png", draw(label, rng))

    model = TinyZFNet()
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.05)
    log = []

    def save(epoch: int) -> None:
        state = {key: value.contiguous() for key, value in model.state_dict().items()}
        save_file(state, str(out / "checkpoints" / f"epoch_{epoch:02d}.safetensors"))

    def accuracy() -> float:
        model.eval()
        with torch.no_grad():
            return float((model(test_inputs).argmax(1) == test_labels).float().mean())

    save(0)
    print(f"epoch 0: held-out accuracy {accuracy():.3f}")
    generator = torch.Generator().manual_seed(args.seed)
    for epoch in range(1, args.epochs + 1):
        started = time.perf_counter()
        model.train()
        order = torch.randperm(len(inputs), generator=generator)
        total = 0.0
        for start in range(0, len(order), 64):
            batch = order[start:start + 64]
            loss = torch.nn.functional.cross_entropy(model(inputs[batch]), labels[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * len(batch)
        save(epoch)
        log.append({"epoch": epoch, "loss": total / len(inputs), "accuracy": accuracy(),
                    "seconds": time.perf_counter() - started})
        print(f"epoch {epoch}: loss {log[-1]['loss']:.3f}, held-out accuracy {log[-1]['accuracy']:.3f} "
              f"({log[-1]['seconds']:.1f}s)")
    write_json_atomic(out / "log.json", {"classes": CLASSES, "seed": args.seed, "epochs": log})
    print(f"wrote {out}/checkpoints, {out}/images and {out}/log.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
