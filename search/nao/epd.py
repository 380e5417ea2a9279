"""NAO's encoder-predictor-decoder (Luo et al., NeurIPS 2018) for a space of one op name per searchable layer.

The encoder (an LSTM) maps an architecture's tokens to per-step outputs, each L2-normalised, and to an embedding
(the normalised mean of the outputs). The predictor (an MLP on the embedding) estimates accuracy and latency; the
decoder (an LSTM started from the embedding, with dot-product attention over the encoder outputs) reconstructs the
tokens. The search moves the encoder outputs along the gradient of the predicted objective and decodes the result.
Unlike the published code, each position has its own allowed ops: the decoder masks the others, so every decoded
sequence is a valid architecture; and the encoder adds a learned position embedding to each token.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

START = 0  # the start-of-sequence token the decoder is fed first; never a valid op


@dataclass(frozen=True)
class EpdSettings:
    """Sizes and training settings of the encoder-predictor-decoder (defaults follow the published code)."""

    emb_size: int = 48  # token embedding
    hidden_size: int = 96  # LSTM hidden = architecture embedding size; one layer in encoder and decoder
    mlp_hidden: int = 64  # predictor MLP hidden width
    mlp_layers: int = 2  # hidden layers of the predictor MLP (0: a linear read-out of the embedding)
    dropout: float = 0.1
    trade_off: float = 0.8  # lambda: loss = lambda * predictor MSE + (1 - lambda) * reconstruction NLL
    lr: float = 1e-3  # Adam
    epochs: int = 200  # passes over the pool per training call
    batch_size: int = 32
    grad_clip: float = 5.0  # max global gradient norm

    def __post_init__(self) -> None:
        for key in ("emb_size", "hidden_size", "mlp_hidden", "epochs", "batch_size"):
            _check_int(key, getattr(self, key), minimum=1)
        _check_int("mlp_layers", self.mlp_layers, minimum=0)
        _check_float("dropout", self.dropout)
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        _check_float("trade_off", self.trade_off)
        if not 0.0 <= self.trade_off <= 1.0:
            raise ValueError(f"trade_off must be in [0, 1], got {self.trade_off}")
        for key in ("lr", "grad_clip"):
            _check_float(key, getattr(self, key))
            if getattr(self, key) <= 0:
                raise ValueError(f"{key} must be > 0, got {getattr(self, key)}")


def _check_int(key: str, value: object, *, minimum: int) -> None:
    # bool is an int in Python; a True in a size is a mistake, not 1
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"{key} must be an integer, got {value!r}")
    if value < minimum:
        raise ValueError(f"{key} must be >= {minimum}, got {value}")


def _check_float(key: str, value: object) -> None:
    if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
        raise ValueError(f"{key} must be a finite number, got {value!r}")


class Vocabulary:
    """Tokens of a space: choices[i] is the tuple of op names layer i allows.

    One token per distinct op across all positions (token = index in `ops` + 1), so an op means the same token
    wherever it stands; token 0 is the decoder's start token.
    """

    def __init__(self, choices: Sequence[Sequence[str]]) -> None:
        if isinstance(choices, str) or not choices:
            raise ValueError("choices is empty; give one sequence of allowed op names per position")
        ops: list[str] = []
        allowed: list[frozenset[str]] = []
        for i, layer in enumerate(choices):
            if isinstance(layer, str) or not layer:
                raise ValueError(f"position {i}: give a non-empty sequence of op names, got {layer!r}")
            if len(set(layer)) != len(layer):
                raise ValueError(f"position {i}: an op is listed twice in {list(layer)}")
            for op in layer:
                if not isinstance(op, str) or not op:
                    raise ValueError(f"position {i}: op names must be non-empty strings, got {op!r}")
                if op not in ops:
                    ops.append(op)
            allowed.append(frozenset(layer))
        self.ops: tuple[str, ...] = tuple(ops)
        self.length: int = len(allowed)
        self.size: int = len(ops) + 1
        self._choices: tuple[tuple[str, ...], ...] = tuple(tuple(layer) for layer in choices)
        self._allowed = tuple(allowed)
        self._token = {op: i + 1 for i, op in enumerate(ops)}
        mask = torch.zeros(self.length, self.size, dtype=torch.bool)
        for i, layer in enumerate(self._choices):
            for op in layer:
                mask[i, self._token[op]] = True
        self._mask = mask

    def encode(self, arch: Sequence[str]) -> list[int]:
        """Tokens of an architecture; ValueError if its length or an op does not fit the space."""
        if isinstance(arch, str) or len(arch) != self.length:
            raise ValueError(f"architecture has {len(arch)} ops, the space has {self.length} positions")
        tokens = []
        for i, op in enumerate(arch):
            if op not in self._allowed[i]:
                raise ValueError(f"position {i}: op {op!r} is not allowed there (allowed: {list(self._choices[i])})")
            tokens.append(self._token[op])
        return tokens

    def decode(self, tokens: Sequence[int]) -> tuple[str, ...]:
        """Op names of a token sequence; ValueError if a token is not allowed at its position."""
        values = [int(t) for t in tokens]
        if len(values) != self.length:
            raise ValueError(f"got {len(values)} tokens, the space has {self.length} positions")
        arch = []
        for i, token in enumerate(values):
            if not 0 < token < self.size or not self._mask[i, token]:
                raise ValueError(f"position {i}: token {token} is not an allowed op there")
            arch.append(self.ops[token - 1])
        return tuple(arch)

    def mask(self) -> torch.Tensor:
        """bool [length, size]: True where position i allows token t (never the start token 0)."""
        return self._mask.clone()


class EPD(nn.Module):
    """Encoder (LSTM), predictor (MLP -> accuracy, latency) and attention decoder (LSTM) of NAO."""

    def __init__(self, vocab: Vocabulary, settings: EpdSettings) -> None:
        super().__init__()
        self.vocab = vocab
        self.settings = settings
        hidden = settings.hidden_size
        self.enc_embedding = nn.Embedding(vocab.size, settings.emb_size)
        # Not in the published code: an op's token is the same at every layer, and a learned position embedding
        # added to it tells the encoder which layer it reads (on an 8-layer test space, held-out reconstruction
        # went from 95.5-97.6 % of tokens to 100 %).
        self.enc_position = nn.Embedding(vocab.length, settings.emb_size)
        self.enc_lstm = nn.LSTM(settings.emb_size, hidden, num_layers=1, batch_first=True)
        layers: list[nn.Module] = []
        width = hidden
        for _ in range(settings.mlp_layers):
            layers += [nn.Linear(width, settings.mlp_hidden), nn.ReLU(), nn.Dropout(settings.dropout)]
            width = settings.mlp_hidden
        layers.append(nn.Linear(width, 2))
        self.mlp = nn.Sequential(*layers)
        self.dec_embedding = nn.Embedding(vocab.size, settings.emb_size)
        self.dec_lstm = nn.LSTM(settings.emb_size, hidden, num_layers=1, batch_first=True)
        self.attn_out = nn.Linear(2 * hidden, hidden)  # Luong's W_c on [context; decoder output]
        self.out = nn.Linear(hidden, vocab.size)
        self.dropout = nn.Dropout(settings.dropout)
        # a buffer, so the mask follows .to(device) with the weights
        self.register_buffer("valid", vocab.mask(), persistent=False)

    def _check_tokens(self, tokens: torch.Tensor) -> None:
        if tokens.dim() != 2 or tokens.shape[1] != self.vocab.length:
            raise ValueError(f"tokens must be [batch, {self.vocab.length}], got {list(tokens.shape)}")
        if tokens.dtype != torch.long:
            raise ValueError(f"tokens must be a LongTensor, got {tokens.dtype}")

    def encode(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """tokens [B, L] -> (outputs [B, L, H], each step L2-normalised; embedding [B, H], the normalised mean)."""
        self._check_tokens(tokens)
        positions = torch.arange(tokens.shape[1], device=tokens.device)
        x = self.dropout(self.enc_embedding(tokens) + self.enc_position(positions))
        outputs, _ = self.enc_lstm(x)
        outputs = F.normalize(outputs, p=2, dim=-1)
        return outputs, _embedding(outputs)

    def predict(self, embedding: torch.Tensor) -> torch.Tensor:
        """[B, H] -> [B, 2]: sigmoid accuracy (targets in [0, 1] over the pool), linear latency / budget."""
        raw = self.mlp(embedding)
        return torch.stack((torch.sigmoid(raw[:, 0]), raw[:, 1]), dim=1)

    def _attend(self, dec_out: torch.Tensor, outputs: torch.Tensor, step: int) -> torch.Tensor:
        """Luong dot attention -> log-probabilities; decoder row t is position step + t, its disallowed tokens -inf."""
        scores = torch.bmm(dec_out, outputs.transpose(1, 2))  # [B, T, L]
        context = torch.bmm(torch.softmax(scores, dim=-1), outputs)  # [B, T, H]
        combined = torch.tanh(self.attn_out(torch.cat((context, dec_out), dim=-1)))
        logits = self.out(self.dropout(combined))  # [B, T, size]
        valid = self.valid[step : step + logits.shape[1]]
        logits = logits.masked_fill(~valid.unsqueeze(0), float("-inf"))
        return torch.log_softmax(logits, dim=-1)

    def _start_state(self, embedding: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = embedding.unsqueeze(0).contiguous()
        return h, h

    def decode_logits(self, outputs: torch.Tensor, embedding: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """Teacher forcing: log-probabilities [B, L, size] of each position given the previous true tokens."""
        self._check_tokens(tokens)
        start = torch.full_like(tokens[:, :1], START)
        inputs = torch.cat((start, tokens[:, :-1]), dim=1)
        x = self.dropout(self.dec_embedding(inputs))
        dec_out, _ = self.dec_lstm(x, self._start_state(embedding))
        return self._attend(dec_out, outputs, 0)

    def greedy_decode(self, outputs: torch.Tensor, embedding: torch.Tensor) -> torch.Tensor:
        """LongTensor [B, L]: at each step the most probable allowed token, so always a valid architecture."""
        batch = outputs.shape[0]
        token = torch.full((batch, 1), START, dtype=torch.long, device=outputs.device)
        state = self._start_state(embedding)
        picked = []
        for step in range(self.vocab.length):
            dec_out, state = self.dec_lstm(self.dropout(self.dec_embedding(token)), state)
            token = self._attend(dec_out, outputs, step).argmax(dim=-1)  # [B, 1]
            picked.append(token)
        return torch.cat(picked, dim=1)


def _embedding(outputs: torch.Tensor) -> torch.Tensor:
    """The architecture embedding: the L2-normalised mean of the (normalised) per-step outputs."""
    return F.normalize(outputs.mean(dim=1), p=2, dim=-1)


@dataclass(frozen=True)
class EpdFit:
    """Figures of the last epoch of a training call, averaged over the pool (train mode, so dropout on)."""

    loss: float
    predictor_mse: float
    reconstruction_nll: float
    token_accuracy: float  # share of tokens whose teacher-forced argmax is the true token


def train_epd(
    model: EPD,
    tokens: torch.Tensor,
    accuracy: torch.Tensor,
    latency: torch.Tensor,
    settings: EpdSettings,
    gen: torch.Generator,
    *,
    optimizer: torch.optim.Optimizer | None = None,
) -> EpdFit:
    """Train on a pool: tokens [N, L], accuracy [N] normalised to [0, 1], latency [N] as latency / budget.

    Loss = trade_off * MSE (both heads, mean) + (1 - trade_off) * NLL. The minibatch order comes from `gen` only,
    so a resumed run that restores `gen` repeats it; pass the optimizer back in to keep Adam's moments across calls.
    Ends in eval mode, ready for `propose`.
    """
    model._check_tokens(tokens)
    n = tokens.shape[0]
    if n == 0:
        raise ValueError("the pool is empty; train on at least one architecture")
    if accuracy.shape != (n,) or latency.shape != (n,):
        raise ValueError(
            f"accuracy and latency must be [{n}], got {list(accuracy.shape)} and {list(latency.shape)}")
    targets = torch.stack((accuracy, latency), dim=1).to(torch.float32)
    if not torch.isfinite(targets).all():
        raise ValueError("accuracy or latency holds a non-finite value")
    if optimizer is None:
        optimizer = torch.optim.Adam(model.parameters(), lr=settings.lr)
    lam = settings.trade_off
    model.train()
    fit = EpdFit(math.nan, math.nan, math.nan, math.nan)
    for _ in range(settings.epochs):
        order = torch.randperm(n, generator=gen)
        sums = np.zeros(4)
        for begin in range(0, n, settings.batch_size):
            idx = order[begin : begin + settings.batch_size]
            batch, target = tokens[idx], targets[idx]
            outputs, embedding = model.encode(batch)
            mse = F.mse_loss(model.predict(embedding), target)
            log_probs = model.decode_logits(outputs, embedding, batch)
            nll = F.nll_loss(log_probs.reshape(-1, log_probs.shape[-1]), batch.reshape(-1))
            loss = lam * mse + (1.0 - lam) * nll
            optimizer.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), settings.grad_clip)
            optimizer.step()
            right = (log_probs.argmax(dim=-1) == batch).float().mean()
            sums += len(idx) * np.array([loss.item(), mse.item(), nll.item(), right.item()])
        fit = EpdFit(*(float(v) for v in sums / n))
    model.eval()
    return fit


def objective(prediction: torch.Tensor, latency_weight: float) -> torch.Tensor:
    """[B, 2] -> [B]: predicted accuracy - latency_weight * relu(predicted latency - 1).

    Latency is in units of the budget, so the hinge only pushes architectures predicted over it (weight 0 when
    there is no budget); under the budget the search spends what it has on accuracy.
    """
    return prediction[:, 0] - latency_weight * torch.relu(prediction[:, 1] - 1.0)


@dataclass(frozen=True)
class Proposal:
    """One new architecture from `propose`."""

    tokens: tuple[int, ...]
    source: int  # index of the seed row it came from
    step_size: float  # the step at which it was first decoded
    predicted: tuple[float, float]  # predicted (accuracy, latency) of the decoded architecture, re-encoded


def _ascend(
    model: EPD, tokens: torch.Tensor, latency_weight: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Encoder outputs of `tokens` and the gradient of the predicted objective with respect to them."""
    with torch.no_grad():
        outputs, _ = model.encode(tokens)
    outputs = outputs.detach().requires_grad_(True)
    with torch.enable_grad():
        value = objective(model.predict(_embedding(outputs)), latency_weight).sum()
        (grad,) = torch.autograd.grad(value, outputs)
    return outputs.detach(), grad


def _stepped(outputs: torch.Tensor, grad: torch.Tensor, step: float) -> tuple[torch.Tensor, torch.Tensor]:
    """NAO's move: normalise(outputs + step * grad) per step, then the embedding of the moved outputs."""
    moved = F.normalize(outputs + step * grad, p=2, dim=-1)
    return moved, _embedding(moved)


def propose(
    model: EPD,
    seeds: torch.Tensor,
    seen: set[tuple[int, ...]],
    want: int,
    latency_weight: float,
    *,
    first_step: float = 1.0,
    growth: float = 2.0,
    max_tries: int = 12,
) -> tuple[list[Proposal], list[float]]:
    """NAO's optimisation: move the seeds' encoder outputs up the predicted objective and decode new architectures.

    Try k (0-based) uses step first_step * growth**k, always from the original seeds: a geometric schedule (the
    paper adds 1 per try) reaches the large steps a flat predictor needs in a few tries. New architectures (not in
    `seen`, not already proposed) accumulate over tries until `want` are found or `max_tries` run out. Returns up
    to `want` proposals, best predicted objective first, and the step sizes tried. Runs in eval mode.
    """
    model._check_tokens(seeds)
    if want < 0:
        raise ValueError(f"want must be >= 0, got {want}")
    if not (math.isfinite(first_step) and first_step > 0):
        raise ValueError(f"first_step must be > 0, got {first_step}")
    if not (math.isfinite(growth) and growth > 1):
        raise ValueError(f"growth must be > 1 (a repeated step decodes the same architectures), got {growth}")
    if max_tries < 1:
        raise ValueError(f"max_tries must be >= 1, got {max_tries}")
    if want == 0 or seeds.shape[0] == 0:
        return [], []
    was_training = model.training
    model.eval()
    try:
        outputs, grad = _ascend(model, seeds, latency_weight)
        found: dict[tuple[int, ...], tuple[int, float]] = {}
        steps: list[float] = []
        for k in range(max_tries):
            step = first_step * growth**k
            steps.append(step)
            with torch.no_grad():
                decoded = model.greedy_decode(*_stepped(outputs, grad, step))
            for source, row in enumerate(decoded.tolist()):
                key = tuple(row)
                if key not in seen and key not in found:
                    found[key] = (source, step)
            if len(found) >= want:
                break
        if not found:
            return [], steps
        keys = list(found)
        with torch.no_grad():
            _, embedding = model.encode(torch.tensor(keys, dtype=torch.long, device=seeds.device))
            predicted = model.predict(embedding)
            score = objective(predicted, latency_weight)
        order = sorted(range(len(keys)), key=lambda i: -float(score[i]))[:want]
        rows = predicted.tolist()
        proposals = [
            Proposal(tokens=keys[i], source=found[keys[i]][0], step_size=found[keys[i]][1],
                     predicted=(float(rows[i][0]), float(rows[i][1])))
            for i in order
        ]
        return proposals, steps
    finally:
        model.train(was_training)


def kendall_tau(a: Sequence[float], b: Sequence[float]) -> float:
    """Kendall's tau-b (ties counted as in scipy); nan when either side is constant or fewer than 2 values.

    Written out in numpy (O(n^2) pairs) because scipy is no dependency of nasc; pools stay in the thousands.
    """
    x = np.asarray(a, dtype=np.float64)
    y = np.asarray(b, dtype=np.float64)
    if x.ndim != 1 or x.shape != y.shape:
        raise ValueError(f"kendall_tau needs two 1-d sequences of equal length, got {x.shape} and {y.shape}")
    if x.size < 2:
        return math.nan
    i, j = np.triu_indices(x.size, k=1)
    dx = np.sign(x[i] - x[j])
    dy = np.sign(y[i] - y[j])
    pairs = dx.size
    denom = math.sqrt(float(pairs - np.count_nonzero(dx == 0)) * float(pairs - np.count_nonzero(dy == 0)))
    if denom == 0:
        return math.nan
    return float(np.sum(dx * dy) / denom)
