"""Training pieces every strategy shares: seeded batches, the cosine schedule, one weight step, accuracy."""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from .data import Split

EVAL_BATCH = 256


def batches(split: Split, batch_size: int, gen: torch.Generator) -> list[torch.Tensor]:
    """Shuffled index batches; a last batch of one image is dropped (batch norm needs two)."""
    order = torch.randperm(len(split), generator=gen)
    parts = list(torch.split(order, batch_size))
    if len(parts) > 1 and len(parts[-1]) < 2:
        parts.pop()
    return parts


def cycle(parts: list[torch.Tensor]) -> Iterator[torch.Tensor]:
    """The batches again and again (architecture steps draw from the validation split as they need)."""
    while True:
        yield from parts


def cosine(base: float, step: int, total: int) -> float:
    """Cosine-decayed learning rate at `step` of `total`."""
    return 0.5 * base * (1 + math.cos(math.pi * min(step, total) / max(total, 1)))


def set_lr(opt: torch.optim.Optimizer, lr: float) -> None:
    """Set every parameter group's learning rate."""
    for group in opt.param_groups:
        group["lr"] = lr


def weight_step(model: nn.Module, opt: torch.optim.Optimizer, split: Split, idx: torch.Tensor) -> tuple[float, int]:
    """One SGD step on the batch `idx` of `split`; returns (summed loss, correct predictions)."""
    model.train()
    x, y = split.x[idx], split.y[idx]
    logits = model(x)
    loss = F.cross_entropy(logits, y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return float(loss.detach()) * len(idx), int((logits.argmax(1) == y).sum())


@torch.no_grad()
def accuracy(model: nn.Module, split: Split, train_mode_bn: bool = False) -> float:
    """Top-1 accuracy on `split`. `train_mode_bn` uses batch statistics (supernet paths) and
    leaves the running statistics untouched."""
    saved = {k: v.clone() for k, v in model.named_buffers()} if train_mode_bn else None
    model.train(train_mode_bn)
    correct = 0
    for start in range(0, len(split), EVAL_BATCH):
        x, y = split.x[start : start + EVAL_BATCH], split.y[start : start + EVAL_BATCH]
        correct += int((model(x).argmax(1) == y).sum())
    if saved is not None:
        for name, buf in model.named_buffers():
            buf.copy_(saved[name])
    return correct / max(len(split), 1)


def epoch_summary(record: dict[str, object]) -> str:
    """One line for an epoch's history record (the strategy's own figures after the common ones)."""
    parts = [f"{record['stage']} {record['epoch']}", f"loss {record['train_loss']:.3f}",
             f"valid acc {record['valid_accuracy']:.3f}"]
    if "expected_ms" in record:
        parts += [f"expected {record['expected_ms']:.4f} ms", str(record["derived"])]
    return "  ".join(parts)
