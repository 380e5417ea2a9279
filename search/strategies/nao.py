"""NAO: Neural Architecture Optimization with weight sharing (Luo et al., NeurIPS 2018), hardware-aware.

A pool of architectures shares one supernet's weights (each weight step trains a path drawn from the
pool). Each round scores the whole pool on the validation split with the shared weights, trains the
encoder-predictor-decoder (nasc.search.nao.epd) on it (accuracy, and the device latency the latency
predictor gives, in units of the budget), moves the embeddings of the best architectures along the
gradient of ``predicted accuracy - latency_weight * max(0, predicted LAT / T - 1)``, decodes them into new
architectures, scores those and adds them to the pool. The runtime then picks among the scored pool
within the budget (budget_pick.pick_among), each candidate checked against the latency table.

The published NAO-WS scores a candidate on one batch of 500 images; here the whole validation split
(or [search.nao] eval_images of it, a fixed subset) scores it, and every round records the noise: the
same architectures scored twice (batch composition matters to batch statistics), and for comparison
the spread between two disjoint 500-image subsets.

One runtime epoch is one supernet epoch; a round runs at the end of every ``epochs_per_round``-th epoch
after the warm-up, so a checkpoint sits between any two rounds. Every draw goes through the context's
generator, and torch's global generator (dropout, initialisation) is reseeded from it each epoch, so a
resumed search repeats an uninterrupted one.
"""

from __future__ import annotations

import json
import math
from typing import Any

import torch

from nasc.errors import SearchError
from nasc.events import ProgressEvent

from ..context import SearchContext
from ..data import Split
from ..nao.epd import EPD, EpdSettings, Vocabulary, kendall_tau, propose, train_epd
from ..nao.equivalent import canonical, equivalents, interchangeable_runs
from ..objective import predicted_ms
from ..settings import NaoSettings
from ..space import ArchSpec, Network
from ..supernet import Supernet, inherit_weights
from ..training import accuracy, batches, cosine, set_lr, weight_step

PUBLISHED_EVAL_IMAGES = 500  # NAO-WS's published code scores each candidate on one batch of this many
NOISE_ARCHS = 3  # the pool's best, scored a second time each round
EQUIVALENTS_PER_ARCH = 4  # equivalent encodings added to the encoder-predictor-decoder's training set, at most


class Nao:
    """The NAO strategy (see the module docstring)."""

    stage = "nao"  # history records and progress of the rounds

    def __init__(self, ctx: SearchContext, settings: NaoSettings | None = None) -> None:
        self.ctx = ctx
        self.settings = settings or ctx.settings.nao
        shared = ctx.settings
        self.layers = ctx.space.layers()
        self.supernet = Supernet(ctx.space, share_weights=True)
        self.weight_opt = torch.optim.SGD(
            self.supernet.weight_parameters(), lr=shared.weight_lr, momentum=0.9, nesterov=True,
            weight_decay=shared.weight_decay,
        )
        self.vocab = Vocabulary([layer.ops for layer in self.layers])
        self.runs = interchangeable_runs(self.layers)  # where equivalent encodings exist (equivalent.py)
        s = self.settings
        self.epd_settings = EpdSettings(emb_size=s.emb_size, hidden_size=s.hidden_size, mlp_hidden=s.mlp_hidden,
                                        trade_off=s.trade_off, lr=s.epd_lr, epochs=s.epd_epochs)
        self.epd = EPD(self.vocab, self.epd_settings)
        self.epd_opt = torch.optim.Adam(self.epd.parameters(), lr=s.epd_lr)
        self.pool: list[tuple[str, ...]] = self._initial_pool()
        self.scores: dict[tuple[str, ...], float] = {}
        self.rounds: list[dict[str, Any]] = []
        self.search_epochs = s.warmup_epochs + s.rounds * s.epochs_per_round
        self.eval_split = self._eval_split()

    # --- set-up -------------------------------------------------------------------------------
    def _initial_pool(self) -> list[tuple[str, ...]]:
        """`initial_pool` distinct random architectures (fewer if the space holds fewer)."""
        total = math.prod(len(layer.ops) for layer in self.layers)
        want = min(self.settings.initial_pool, total)
        return self._random_new(want, set())

    def _eval_split(self) -> Split:
        """The validation split, or a fixed subset of eval_images of it (drawn with the seed, not the run's
        generator, so it never changes the run's draws)."""
        return self.ctx.data.valid.fixed_subset(self.settings.eval_images, self.ctx.settings.seed)

    # --- resume -------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "supernet": self.supernet.state_dict(), "weight_opt": self.weight_opt.state_dict(),
            "epd": self.epd.state_dict(), "epd_opt": self.epd_opt.state_dict(),
            "pool": json.dumps([list(a) for a in self.pool]),
            "scores": json.dumps([[list(a), v] for a, v in self.scores.items()]),
            "rounds": json.dumps(self.rounds),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.supernet.load_state_dict(state["supernet"])
        self.weight_opt.load_state_dict(state["weight_opt"])
        self.epd.load_state_dict(state["epd"])
        self.epd_opt.load_state_dict(state["epd_opt"])
        self.pool = [tuple(a) for a in json.loads(state["pool"])]
        self.scores = {tuple(a): float(v) for a, v in json.loads(state["scores"])}
        self.rounds = json.loads(state["rounds"])

    # --- scoring ------------------------------------------------------------------------------
    def score(self, ops: tuple[str, ...], split: Split | None = None) -> float:
        """Validation accuracy of `ops` with the shared weights (batch statistics, running ones untouched)."""
        self.supernet.choose(ArchSpec(self.ctx.space, ops))
        return accuracy(self.supernet, split if split is not None else self.eval_split, train_mode_bn=True)

    def latency_ms(self, ops: tuple[str, ...]) -> float:
        """The latency predictor's figure for the whole network (the one the budget is checked against)."""
        return predicted_ms(ArchSpec(self.ctx.space, ops), self.ctx.predictor)

    def _latency_scale(self) -> tuple[float, float]:
        """(ms per unit of the predictor's latency target, the penalty's weight): the budget and
        latency_weight, or without a budget the pool's slowest and no penalty."""
        budget = self.ctx.settings.latency_ms
        if budget is not None:
            return budget, self.settings.latency_weight
        return max(self.latency_ms(a) for a in self.pool), 0.0

    def _noise(self) -> dict[str, float | None]:
        """The same best architectures scored again in another batch order, and on two disjoint
        500-image subsets (the published protocol's spread, where the split is big enough)."""
        best = sorted(self.pool, key=lambda a: -self.scores[a])[:NOISE_ARCHS]
        split = self.eval_split
        order = torch.randperm(len(split), generator=self.ctx.gen)
        again = [abs(self.score(a, Split(split.x[order], split.y[order])) - self.scores[a]) for a in best]
        published = None
        if len(split) >= 2 * PUBLISHED_EVAL_IMAGES:
            a_half, b_half = order[:PUBLISHED_EVAL_IMAGES], order[PUBLISHED_EVAL_IMAGES:2 * PUBLISHED_EVAL_IMAGES]
            published = sum(abs(self.score(a, Split(split.x[a_half], split.y[a_half]))
                                - self.score(a, Split(split.x[b_half], split.y[b_half]))) for a in best) / len(best)
        return {"rescore_abs_diff": round(sum(again) / len(again), 6),
                "subsets_500_abs_diff": None if published is None else round(published, 6)}

    # --- epochs -------------------------------------------------------------------------------
    def search_epoch(self, epoch: int) -> dict[str, Any]:
        s, shared, ctx = self.settings, self.ctx.settings, self.ctx
        torch.manual_seed(int(torch.randint(0, 2**62, (1,), generator=ctx.gen)))
        warm = epoch < s.warmup_epochs
        train = batches(ctx.data.train, shared.batch_size, ctx.gen)
        total_steps = self.search_epochs * len(train)
        stage = "warmup" if warm else self.stage
        round_index = (epoch - s.warmup_epochs) // s.epochs_per_round
        label = f"epoch {epoch + 1}/{self.search_epochs}" + ("" if warm else f" (round {round_index + 1}/{s.rounds})")
        loss_sum = correct = seen = 0.0
        for i, idx in enumerate(train):
            set_lr(self.weight_opt, cosine(shared.weight_lr, epoch * len(train) + i, total_steps))
            pick = int(torch.randint(len(self.pool), (1,), generator=ctx.gen))
            self.supernet.choose(ArchSpec(ctx.space, self.pool[pick]))
            loss, right = weight_step(self.supernet, self.weight_opt, ctx.data.train, idx)
            loss_sum, correct, seen = loss_sum + loss, correct + right, seen + len(idx)
            ctx.progress(ProgressEvent(stage, i + 1, len(train), label=label))
        record: dict[str, Any] = {"stage": stage, "epoch": epoch + 1, "train_loss": round(loss_sum / seen, 6),
                                  "train_accuracy": round(correct / seen, 6)}
        ends_round = not warm and (epoch - s.warmup_epochs + 1) % s.epochs_per_round == 0
        if ends_round:
            record.update(self._round(round_index))
        best = max(self.scores, key=self.scores.__getitem__) if self.scores else self.pool[0]
        record["valid_accuracy"] = round(self.scores[best] if ends_round else self.score(best), 6)
        record["derived"] = str(ArchSpec(ctx.space, best))
        record["derived_ops"] = list(best)
        record["derived_predicted_ms"] = round(self.latency_ms(best), 6)
        return record

    def _round(self, index: int) -> dict[str, Any]:
        """Score the pool, train the encoder-predictor-decoder, propose new architectures, score them."""
        ctx, s = self.ctx, self.settings
        for n, arch in enumerate(self.pool):
            self.scores[arch] = self.score(arch)
            ctx.progress(ProgressEvent(f"{self.stage}-score", n + 1, len(self.pool), label=f"round {index + 1}"))
        decoded, figures = self._decode_new(index)
        explored = self._random_new(s.new_per_round - len(decoded), {*self.pool, *decoded}) if s.fill_random else []
        new = decoded + explored
        for n, arch in enumerate(new):
            ArchSpec(ctx.space, arch)  # the decoder masks what the space forbids; a slip is a bug, not a result
            self.scores[arch] = self.score(arch)
            ctx.progress(ProgressEvent(f"{self.stage}-score", n + 1, len(new), label=f"round {index + 1}: new"))
        heldout = self._heldout_tau(new)
        self.pool.extend(new)
        if not self.pool:
            raise SearchError(f"{self.stage}: the pool is empty")
        best_new = max(decoded, key=self.scores.__getitem__) if decoded else None
        summary = {
            "round": index + 1,
            "pool_size": len(self.pool),
            "new": len(new),
            "decoded": len(decoded),
            "random": len(explored),
            **figures,
            "heldout_kendall_tau": None if heldout is None else round(heldout, 6),
            "best_decoded_accuracy": round(self.scores[best_new], 6) if best_new else None,
            "best_evaluated_accuracy": round(max(self.scores[a] for a in self.pool), 6),
            "noise": self._noise(),
        }
        self.rounds.append(summary)
        steps = ", ".join(f"{x:g}" for x in figures.get("step_sizes", []))
        ctx.progress(ProgressEvent.note(self.stage, f"round {index + 1}: {len(decoded)} decoded"
                                                    f"{f' (step sizes {steps})' if steps else ''}, {len(explored)} "
                                                    f"random, pool {len(self.pool)}, best "
                                                    f"{summary['best_evaluated_accuracy']:.3f}"))
        return {"pool_round": summary}

    def _decode_new(self, index: int) -> tuple[list[tuple[str, ...]], dict[str, Any]]:
        """Train the encoder-predictor-decoder on the scored pool and decode new architectures from the
        best ones' stepped embeddings; returns them and the round's figures of the model."""
        ctx, s = self.ctx, self.settings
        scale_ms, weight = self._latency_scale()
        tokens = torch.tensor([self.vocab.encode(a) for a in self.pool], dtype=torch.long)
        raw = torch.tensor([self.scores[a] for a in self.pool], dtype=torch.float32)
        low, high = float(raw.min()), float(raw.max())
        acc = (raw - low) / max(high - low, 1e-6)
        lat = torch.tensor([self.latency_ms(a) / scale_ms for a in self.pool], dtype=torch.float32)
        # Augmented with equivalent encodings (same targets), as the paper augments with swapped branches.
        extra = [(e, i) for i, a in enumerate(self.pool) for e in equivalents(a, self.runs, EQUIVALENTS_PER_ARCH)]
        train_tokens = torch.cat([tokens, torch.tensor([self.vocab.encode(e) for e, _ in extra],
                                                       dtype=torch.long).reshape(-1, tokens.shape[1])])
        rows = torch.tensor([i for _, i in extra], dtype=torch.long)
        ctx.progress(ProgressEvent.note(self.stage, f"round {index + 1}: training the encoder-predictor-decoder on "
                                                    f"{len(self.pool)} architectures (+{len(extra)} equivalent "
                                                    f"encodings)"))
        fit = train_epd(self.epd, train_tokens, torch.cat([acc, acc[rows]]), torch.cat([lat, lat[rows]]),
                        self.epd_settings, ctx.gen, optimizer=self.epd_opt)
        self.epd.eval()
        with torch.no_grad():
            predicted = self.epd.predict(self.epd.encode(tokens)[1])
        true_objective = acc - weight * torch.relu(lat - 1)
        seeds = tokens[torch.argsort(true_objective, descending=True)[: s.seeds]]
        seen = {tuple(int(t) for t in row) for row in train_tokens}
        proposals, steps = propose(self.epd, seeds, seen, s.new_per_round, weight, max_tries=s.max_step_tries)
        known = {canonical(a, self.runs) for a in self.pool}
        decoded, latency_errors = [], []
        for proposal in proposals:  # an encoding equivalent to one of the pool (or to another new one) is not new
            arch = self.vocab.decode(proposal.tokens)
            if canonical(arch, self.runs) not in known:
                known.add(canonical(arch, self.runs))
                decoded.append(arch)
                table_ms = self.latency_ms(arch)  # the latency table's word, which the pick will use
                latency_errors.append(abs(proposal.predicted[1] * scale_ms - table_ms) / table_ms)
        return decoded, {
            "latency_head_mape": round(sum(latency_errors) / len(latency_errors), 6) if latency_errors else None,
            "step_sizes": [round(x, 6) for x in steps],
            "epd_loss": round(fit.loss, 6),
            "epd_predictor_mse": round(fit.predictor_mse, 6),
            "epd_reconstruction_nll": round(fit.reconstruction_nll, 6),
            "epd_token_accuracy": round(fit.token_accuracy, 6),
            "predictor_kendall_tau": round(kendall_tau(predicted[:, 0].tolist(), acc.tolist()), 6),
            "equivalent_encodings": len(extra),
            "best_predicted_accuracy": (round(proposals[0].predicted[0] * (high - low) + low, 6)
                                        if proposals else None),
        }

    def _heldout_tau(self, new: list[tuple[str, ...]]) -> float | None:
        """Kendall tau between the predictor's accuracy and the shared-weight score of the round's new
        architectures: none of them was in the pool the predictor was trained on."""
        if len(new) < 2:
            return None
        with torch.no_grad():
            tokens = torch.tensor([self.vocab.encode(a) for a in new], dtype=torch.long)
            predicted = self.epd.predict(self.epd.encode(tokens)[1])[:, 0]
        tau = kendall_tau(predicted.tolist(), [self.scores[a] for a in new])
        return None if math.isnan(tau) else tau

    def _random_new(self, count: int, taken: set[tuple[str, ...]]) -> list[tuple[str, ...]]:
        """Up to `count` random architectures none of `taken` is equivalent to (the decoder, trained on a small
        pool, may map every stepped embedding back onto the pool; exploring keeps the pool growing)."""
        found: list[tuple[str, ...]] = []
        known = {canonical(a, self.runs) for a in taken}
        for _ in range(50 * max(count, 0)):
            if len(found) == count:
                break
            picks = [int(torch.randint(len(layer.ops), (1,), generator=self.ctx.gen)) for layer in self.layers]
            arch = tuple(layer.ops[i] for layer, i in zip(self.layers, picks, strict=True))
            if canonical(arch, self.runs) not in known:
                known.add(canonical(arch, self.runs))
                found.append(arch)
        return found

    # --- results ------------------------------------------------------------------------------
    def scored_candidates(self) -> list[tuple[tuple[str, ...], float]]:
        return [(a, self.scores[a]) for a in self.pool if a in self.scores]

    def derive(self) -> ArchSpec:
        """The best scored architecture the latency predictor puts within the budget (else the fastest)."""
        scored = self.scored_candidates() or [(a, 0.0) for a in self.pool]
        budget = self.ctx.settings.latency_ms
        fits = [(a, v) for a, v in scored if budget is None or self.latency_ms(a) <= budget]
        if not fits:
            return ArchSpec(self.ctx.space, min((a for a, _ in scored), key=self.latency_ms))
        return ArchSpec(self.ctx.space, max(fits, key=lambda item: item[1])[0])

    def layer_scores(self) -> list[list[float]]:
        """Per layer, the log share of each op among the pool's best (add-one smoothed)."""
        best = sorted(self.scored_candidates(), key=lambda item: -item[1])[: self.settings.seeds]
        rows = []
        for i, layer in enumerate(self.layers):
            counts = [1 + sum(a[i] == op for a, _ in best) for op in layer.ops]
            rows.append([math.log(c / sum(counts)) for c in counts])
        return rows

    def init_final(self, net: Network, arch: ArchSpec) -> None:
        if self.settings.final_init == "inherit":
            inherit_weights(net, self.supernet, arch)

    def result_figures(self) -> dict[str, Any]:
        pool = [{"ops": list(a), "valid_accuracy": round(v, 6), "predicted_ms": round(self.latency_ms(a), 6)}
                for a, v in self.scored_candidates()]
        return {"pool_size": len(self.pool), "rounds": list(self.rounds), "pool": pool,
                "latency_weight": self._latency_scale()[1]}


STRATEGY = Nao
