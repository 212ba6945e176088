"""Sparsified-SGD training of a small language model: embedding -> LSTM -> linear -> softmax.

Only the LSTM layer's backward is sparsified (``|dnet| < threshold -> 0``, DESIGN.md §1); that is
the layer the hardware accelerates. The gradient of a step can come from the numpy reference
(``backend="numpy"``, the default) or from the torch layer (``backend="torch"``, autograd with a
threshold hook); both feed the same optimizer, so the two paths train the same model (equal
gradients to rounding; over hundreds of iterations rounding moves a few elements across the
threshold, so long runs agree in their figures, not in every bit).

The loss is the mean cross-entropy over the B x T symbols of a batch (nats per symbol), so
``dnet`` and the threshold the LSTM applies are on that scale; ``threshold_scale="sum"`` gives the
threshold on the scale of the summed loss instead: see :func:`threshold_scale_note`.

A run trains ``iterations`` iterations, or with ``epochs`` N > 0 to convergence: N whole passes
over the training split (the recurrent state reset at each one's start), the whole validation
split evaluated after each (a row of ``evals`` with its ``epoch`` and ``lr``), the learning rate
decayed after an epoch by ``lr_decay`` (from epoch ``decay_after`` on, or when the epoch did not
improve on the best validation loss if it is 0), early stopping after ``patience`` epochs without
improvement, and the final losses those of the best epoch's weights.

MAC accounting covers the whole training step, forward and backward, per symbol:

* LSTM forward ``net = W a``: 4HK; LSTM backward ``dW += dnet a^T`` and ``da = W^T dnet``: 4HK each;
* output layer forward, weight gradient and input gradient: VH each.

A zero ``dnet_j`` skips 2K MACs (its ``dW`` row update and its ``da`` update); element-wise work,
bias updates and the embedding's scatter are not MACs and are not counted.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import asdict, dataclass, field, fields

import numpy as np
import torch

from . import lstm
from .config import BACKENDS, OPTIMIZERS, TrainConfig
from .corpus import Corpus, load_corpus
from .metrics import normalised_inner_product

__all__ = ["TrainConfig", "LanguageModel", "train", "step_macs", "normalised_inner_product",
           "BACKENDS", "OPTIMIZERS", "setup", "make_optimizer", "numpy_step", "evaluation_plan",
           "single_thread", "evaluate", "numpy_model_forward", "numpy_gradients",
           "training_windows"]


class LanguageModel(torch.nn.Module):
    """Embedding (V x E) -> ``layers`` :class:`~gateskip.golden.lstm.SparseLSTM` (E -> H, then
    H -> H) -> linear (H -> V). ``lstm`` is the first layer (the one the backward-only and
    training builds accelerate). The recurrent state is ``(h, c)``, or with several layers a
    tuple of one ``(h, c)`` per layer."""

    def __init__(self, vocab: int, embed: int, hidden: int, threshold: float = 0.0,
                 layers: int = 1):
        super().__init__()
        self.embed = torch.nn.Embedding(vocab, embed)
        self.lstms = torch.nn.ModuleList(
            [lstm.SparseLSTM(embed if n == 0 else hidden, hidden, threshold)
             for n in range(layers)])
        self.out = torch.nn.Linear(hidden, vocab)

    @property
    def lstm(self) -> lstm.SparseLSTM:
        return self.lstms[0]

    def forward(self, ids, state=None):
        x = self.embed(ids)
        if len(self.lstms) == 1:
            h, state = self.lstm(x, state)
            return self.out(h), state
        states = []
        for n, layer in enumerate(self.lstms):
            x, st = layer(x, None if state is None else state[n])
            states.append(st)
        return self.out(x), tuple(states)

    def weights(self) -> list:
        """The parameters ``[E, W, b, (W, b of each further layer), Wo, bo]``, in the order
        :func:`numpy_model_forward` and :func:`numpy_gradients` take them and return their
        gradients."""
        return [self.embed.weight, *[p for layer in self.lstms for p in (layer.W, layer.b)],
                self.out.weight, self.out.bias]

    def dnet(self):
        """The last backward's sparsified ``dnet``: (T, B, 4H), or with several layers every
        layer's stacked along the batch axis, first layer first (T, layers * B, 4H)."""
        if len(self.lstms) == 1:
            return self.lstm.dnet
        return torch.cat([layer.dnet for layer in self.lstms], dim=1)


def step_macs(vocab: int, embed: int, hidden: int, symbols: int, dnet_zeros) -> tuple[int, int]:
    """``(total, skippable)`` MACs of one training step over ``symbols`` symbols (module doc);
    ``dnet_zeros`` an int, or with several LSTM layers a list of each layer's zeros (the first
    layer's K is ``embed + hidden``, the others' ``2 hidden``)."""
    zeros = [int(dnet_zeros)] if np.ndim(dnet_zeros) == 0 else [int(z) for z in dnet_zeros]
    Ks = [embed + hidden] + [2 * hidden] * (len(zeros) - 1)
    total = symbols * (3 * 4 * hidden * sum(Ks) + 3 * vocab * hidden)
    return total, sum(2 * K * z for K, z in zip(Ks, zeros))


def threshold_scale_note() -> str:
    return ("thresholds apply to dnet of the mean cross-entropy over the B*T symbols of a batch; a "
            "loss summed over the batch (as in the sparsified-BPTT papers) has dnet B*T times "
            "larger: --threshold-scale sum takes the threshold on that scale and divides it by B*T")


# -- the numpy path -------------------------------------------------------------------------------

def _softmax_xent(logits, targets):
    """Mean cross-entropy over all symbols and its gradient with respect to ``logits``."""
    z = logits - logits.max(axis=-1, keepdims=True)
    p = np.exp(z)
    p /= p.sum(axis=-1, keepdims=True)
    n = targets.size
    flat = p.reshape(n, -1)
    idx = np.arange(n), targets.reshape(n)
    loss = -np.log(flat[idx]).mean()
    flat[idx] -= 1
    return float(loss), p / n


def numpy_model_forward(params, ids, targets, state, scale=None):
    """Forward of the whole model in numpy; returns ``(loss, dlogits, x, h, cache, state)``
    (with several layers ``cache`` and ``state`` are per layer, ``h`` the top layer's).

    ``scale`` divides ``dlogits`` instead of the symbol count (to cut a sub-batch out of a batch and
    keep the batch's gradient scale).
    """
    E, Wo, bo = params[0], params[-2], params[-1]
    pairs = list(zip(params[1:-2:2], params[2:-2:2]))
    x = E[ids]
    states = [state] if len(pairs) == 1 else list(state)
    h, caches, new = x, [], []
    for (W, b), (h0, c0) in zip(pairs, states):
        h, st, cache = lstm.forward(W, b, h, h0, c0)
        caches.append(cache)
        new.append(st)
    cache, state = (caches[0], new[0]) if len(pairs) == 1 else (caches, tuple(new))
    logits = h @ Wo.T + bo
    loss, dlogits = _softmax_xent(logits, targets)
    if scale is not None:
        dlogits *= targets.size / scale
    return loss, dlogits, x, h, cache, state


def numpy_gradients(params, ids, targets, state, threshold, exact=False):
    """Loss and gradients of all parameters from the numpy reference.

    Returns ``(loss, grads, lstm_grads, state, exact_dW)``; ``exact_dW`` is the threshold-0
    ``dW`` of the (first) layer in the same step when ``exact`` is set. With several layers
    ``lstm_grads`` is a list, first layer first: each layer's ``dx`` is the ``dh`` of the one
    below.
    """
    E, Wo = params[0], params[-2]
    loss, dlogits, x, h, cache, state = numpy_model_forward(params, ids, targets, state)
    caches = cache if isinstance(cache, list) else [cache]
    dWo = np.einsum("tbv,tbh->vh", dlogits, h)
    dbo = dlogits.sum(axis=(0, 1))
    dh_out = dlogits @ Wo
    gs, dh = [], dh_out
    for c in reversed(caches):
        gs.insert(0, lstm.backward(c, dh, threshold))
        dh = gs[0].dx
    dE = np.zeros_like(E)
    np.add.at(dE, ids, gs[0].dx)
    exact_dW = None
    if exact:
        if threshold == 0:
            exact_dW = gs[0].dW
        else:
            dh = dh_out
            for c in reversed(caches):
                exact = lstm.backward(c, dh, 0.0)
                dh = exact.dx
            exact_dW = exact.dW
    grads = [dE, *[a for g in gs for a in (g.dW, g.db)], dWo, dbo]
    return loss, grads, (gs[0] if len(gs) == 1 else gs), state, exact_dW


# -- training -------------------------------------------------------------------------------------

def _batchify(ids: np.ndarray, batch: int) -> np.ndarray:
    n = len(ids) // batch
    return ids[: n * batch].reshape(batch, n).T.copy()  # (n, batch): one stream per column


def training_windows(data: np.ndarray, seq_len: int, iterations: int):
    """The windows a fixed-point run beside float training takes from ``data`` (``(n, batch)``
    symbol ids): per iteration ``(inputs, targets, reset, upcoming)``, ``seq_len`` steps each,
    back to the start (``reset``: the recurrent state restarts) when the next would run past
    the end; ``upcoming`` the next iteration's ``(inputs, targets)``, ``None`` after the last."""
    def window(p):
        reset = p + seq_len + 1 > len(data)
        p = 0 if reset else p
        return p, data[p:p + seq_len], data[p + 1:p + seq_len + 1], reset

    pos = 0
    for it in range(iterations):
        start, inp, tgt, reset = window(pos)
        pos = start + seq_len
        yield inp, tgt, reset, (window(pos)[1:3] if it + 1 < iterations else None)


def evaluation_windows(ids: np.ndarray, batch: int = 256, window: int = 128):
    """``(inputs, targets)`` (T, B) of ``ids`` read as ``batch`` parallel streams (at most half
    the symbols), ``window`` steps at a time: how every evaluation reads a split, the state
    carried from one window to the next."""
    batch = max(1, min(batch, (len(ids) - 1) // 2))
    data = _batchify(ids, batch)
    for p in range(0, len(data) - 1, window):
        tgt = data[p + 1:p + 1 + window]
        yield data[p:p + len(tgt)], tgt


@torch.no_grad()
def evaluate(model: LanguageModel, ids: np.ndarray, batch: int = 256, window: int = 128) -> float:
    """Mean cross-entropy (nats per symbol) of ``ids`` read as ``batch`` parallel streams."""
    total, count, state = 0.0, 0, None
    for inp, tgt in evaluation_windows(ids, batch, window):
        device = model.out.weight.device
        inp, tgt = torch.from_numpy(inp).to(device), torch.from_numpy(tgt).to(device)
        logits, state = model(inp, state)
        total += torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), tgt.reshape(-1), reduction="sum").item()
        count += tgt.numel()
    return total / count


@dataclass
class TrainResult:
    config: dict
    corpus: str
    vocab: int
    history: list[dict] = field(default_factory=list)
    evals: list[dict] = field(default_factory=list)
    summary: dict = field(default_factory=dict)
    traces: list[dict] = field(default_factory=list)


def train(config: TrainConfig, corpus: Corpus | None = None, progress=None) -> TrainResult:
    """Run sparsified-SGD training as ``config`` says; deterministic for a given config.

    ``progress`` is a callable ``(done, total, postfix)`` or ``None``.
    """
    config = config.replace().check()
    check_device(config.device)
    with single_thread():
        return _train(config, corpus, progress)


def check_device(device: str) -> None:
    """``ValueError`` in one line if torch cannot use ``device`` (:data:`~.config.DEVICES`) here."""
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: torch finds no CUDA GPU here "
                         "(torch.cuda.is_available() is False)")


@contextlib.contextmanager
def single_thread():
    """Run torch on one intra-op thread inside the block, and restore the count after it.

    The model is small: torch's intra-op threads cost more than they bring (35 vs 43 ms per
    iteration here), and they thrash when another process uses the second core.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def setup(config: TrainConfig, corpus: Corpus | None = None):
    """What every training run starts from: the corpus (``corpus``, or loaded as ``config``
    says), the seeds, the batched training split and a fresh model, in this order, so that a
    caller that starts from it (``gateskip compare``) repeats :func:`train`'s run exactly.

    Returns ``(corpus, data, model)``: ``data`` is the training split as ``(n, batch)`` symbol
    ids, one stream per column; ``model`` a :class:`LanguageModel`. Raises ``ValueError`` if the
    split is too short for one batch of ``seq_len + 1`` symbols.
    """
    if corpus is None:
        corpus = load_corpus(config.corpus, config.level)
    torch.manual_seed(config.seed)
    np.random.seed(config.seed)
    data = _batchify(corpus.train, config.batch)
    if len(data) < config.seq_len + 1:
        raise ValueError(f"corpus train split has {len(corpus.train)} symbols: too short for "
                         f"batch {config.batch} x seq-len {config.seq_len}")
    return corpus, data, LanguageModel(corpus.V, config.embed, config.hidden,
                                       config.dnet_threshold(), config.layers).to(config.device)


def make_optimizer(config: TrainConfig, model: LanguageModel) -> torch.optim.Optimizer:
    """The optimizer ``config.optimizer`` names (:data:`OPTIMIZERS`) over ``model.weights()``,
    at learning rate ``config.lr``."""
    if config.optimizer == "sgd":
        return torch.optim.SGD(model.weights(), lr=config.lr)
    return torch.optim.Adam(model.weights(), lr=config.lr)


def evaluation_plan(config: TrainConfig, corpus: Corpus):
    """``(every, symbols)``: evaluate the validation loss every ``every`` iterations (and after
    the last one) on ``symbols``, the start of the validation split; the final loss of a run
    uses the whole split. With ``epochs``, ``every`` is ``eval_every`` (0: no curve; the epochs'
    ends evaluate the whole split, and no curve point is taken there)."""
    every = config.eval_every or (0 if config.epochs else max(1, config.iterations // 20))
    return every, corpus.valid[: max(config.eval_symbols, 2 * 64 + 2)]


def _train(config: TrainConfig, corpus: Corpus | None, progress) -> TrainResult:
    corpus, data, model = setup(config, corpus)
    V, E, H, T, B = corpus.V, config.embed, config.hidden, config.seq_len, config.batch
    params = model.weights()
    opt = make_optimizer(config, model)
    eval_every, val_curve = evaluation_plan(config, corpus)
    result = TrainResult(asdict(config), corpus.name, V)
    trace_at = set(config.trace_iterations)
    iterations = config.run_iterations(len(corpus.train))
    epoch_length = config.epoch_iterations(len(corpus.train))
    epochs = _Epochs(config, model, opt) if config.epochs else None

    state = None
    pos = 0
    step_seconds = 0.0
    t_start = time.perf_counter()
    for it in range(iterations):
        if pos + T + 1 > len(data):
            pos, state = 0, None
        inp = torch.from_numpy(data[pos:pos + T])
        tgt = torch.from_numpy(data[pos + 1:pos + T + 1])
        if it in trace_at:
            result.traces.append(_trace(model, inp, tgt, state, config, it))
        want_exact = config.corr_every and it % config.corr_every == 0
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        if config.backend == "torch":
            loss, dnet, exact_dW, state = _torch_step(model, inp, tgt, state, want_exact)
        else:
            loss, dnet, exact_dW, state = numpy_step(model, inp, tgt, state, want_exact)
        if config.clip:
            torch.nn.utils.clip_grad_norm_(params, config.clip)
        opt.step()
        step_seconds += time.perf_counter() - t0
        pos += T

        sparsity = lstm.gate_sparsity(dnet)
        zeros = [int((np.asarray(d) == 0).sum()) for d in np.split(np.asarray(dnet),
                                                                    config.layers, axis=1)]
        total, skippable = step_macs(V, E, H, T * B, zeros)
        row = {"iteration": it, "train_loss": loss, "dnet_sparsity": sparsity["all"],
               "gate_sparsity": {g: sparsity[g] for g in lstm.GATES},
               "macs_total": total, "macs_skippable": skippable,
               "dw_correlation": (normalised_inner_product(model.lstm.W.grad.cpu(), exact_dW)
                                  if exact_dW is not None else None)}
        if not math.isfinite(loss):
            raise FloatingPointError(f"training diverged at iteration {it} (loss {loss})")
        result.history.append(row)
        stop = False
        if epochs is not None and (it + 1) % epoch_length == 0:
            result.evals.append(epochs.end(it, evaluate(model, corpus.valid)))
            stop = epochs.stop()
        elif eval_every and ((it + 1) % eval_every == 0 or it + 1 == iterations):
            result.evals.append({"iteration": it, "val_loss": evaluate(model, val_curve)})
        if progress is not None:
            progress(it + 1, iterations,
                     {"loss": f"{loss:.3f}", "sparsity": f"{sparsity['all']:.1%}"})
        if stop:
            break

    if epochs is not None:
        epochs.restore_best()
    val_loss = evaluate(model, corpus.valid)
    test_loss = evaluate(model, corpus.test)
    result.summary = _summarise(result.history, config, val_loss, test_loss,
                                step_seconds, time.perf_counter() - t_start)
    if epochs is not None:
        result.summary.update(epochs.summary())
    return result


class _Epochs:
    """The ends of the epochs of a run with ``config.epochs``: the learning-rate schedule, the
    copy of the best epoch's weights and early stopping (module doc)."""

    def __init__(self, config: TrainConfig, model: LanguageModel, opt: torch.optim.Optimizer):
        self.config, self.model, self.opt = config, model, opt
        self.lr, self.last_lr, self.done, self.waited = config.lr, config.lr, 0, 0
        self.best, self.best_epoch, self.best_weights = math.inf, 0, None

    def end(self, it: int, val_loss: float) -> dict:
        """Record the epoch that ended at iteration ``it`` with ``val_loss`` on the whole
        validation split, set the next epoch's learning rate; returns the epoch's ``evals`` row."""
        self.done, self.last_lr = self.done + 1, self.lr
        row = {"iteration": it, "val_loss": val_loss, "epoch": self.done, "lr": self.lr}
        improved = val_loss < self.best
        if improved:
            self.best, self.best_epoch, self.waited = val_loss, self.done, 0
            self.best_weights = {k: v.detach().clone()
                                 for k, v in self.model.state_dict().items()}
        else:
            self.waited += 1
        c = self.config
        if (self.done >= c.decay_after) if c.decay_after else not improved:
            self.lr *= c.lr_decay
            for group in self.opt.param_groups:
                group["lr"] = self.lr
        return row

    def stop(self) -> bool:
        """Whether ``patience`` epochs have passed without improvement."""
        return bool(self.config.patience) and self.waited >= self.config.patience

    def restore_best(self) -> None:
        """Load the weights of the best epoch into the model."""
        if self.best_weights is not None:
            self.model.load_state_dict(self.best_weights)

    def summary(self) -> dict:
        """The summary's keys of a run with epochs; ``final_lr`` is the rate the last epoch
        trained at."""
        return {"epochs_run": self.done, "best_epoch": self.best_epoch, "final_lr": self.last_lr,
                "stopped_early": self.done < self.config.epochs}


def _torch_step(model, inp, tgt, state, want_exact):
    device = model.out.weight.device
    logits, new_state = model(inp.to(device), state)
    tgt = tgt.to(device)
    loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), tgt.reshape(-1))
    exact_dW = None
    if want_exact:
        if model.lstm.threshold == 0:
            loss.backward()
            exact_dW = model.lstm.W.grad.detach().cpu().numpy().copy()
        else:
            threshold = model.lstm.threshold
            for layer in model.lstms:              # exact back-propagation through every layer
                layer.threshold = 0.0
            try:
                (exact,) = torch.autograd.grad(loss, [model.lstm.W], retain_graph=True)
            finally:
                for layer in model.lstms:
                    layer.threshold = threshold
            exact_dW = exact.cpu().numpy()
            loss.backward()
    else:
        loss.backward()
    return (loss.item(), model.dnet().cpu(), exact_dW,
            _map_state(lambda s: s.detach(), new_state))


def _map_state(fn, state):
    """``fn`` on each array of a recurrent state (``(h, c)`` or a tuple of them)."""
    if isinstance(state[0], tuple):
        return tuple(_map_state(fn, s) for s in state)
    return tuple(fn(s) for s in state)


def numpy_step(model: LanguageModel, inp, tgt, state, want_exact=False):
    """One step's loss and gradients from the numpy reference (float32), written into the
    model's ``.grad`` for the optimizer (which the caller zeroes before and steps after).

    ``inp``/``tgt`` are ``(T, B)`` int tensors of symbol ids, ``state`` the ``(h, c)`` carried
    from the previous batch (one per layer with several; ``None``: zeros). Returns ``(loss,
    dnet, exact_dW, state)``: ``dnet`` the sparsified gate gradients of the step (as
    :meth:`LanguageModel.dnet`), ``exact_dW`` the threshold-0 ``dW`` of the first layer if
    ``want_exact`` (else ``None``), ``state`` the final state for the next batch.
    """
    params = [p.detach().numpy() for p in model.weights()]
    B, H = inp.shape[1], model.lstm.hidden
    if state is None:
        zero = (np.zeros((B, H), np.float32), np.zeros((B, H), np.float32))
        state = zero if len(model.lstms) == 1 else (zero,) * len(model.lstms)
    else:
        state = _map_state(lambda s: s.numpy() if isinstance(s, torch.Tensor) else s, state)
    loss, grads, g, state, exact_dW = numpy_gradients(
        params, inp.numpy(), tgt.numpy(), state, model.lstm.threshold, bool(want_exact))
    for p, grad in zip(model.weights(), grads):
        p.grad = torch.from_numpy(np.ascontiguousarray(grad, dtype=np.float32))
    dnet = g.dnet if not isinstance(g, list) else np.concatenate([x.dnet for x in g], axis=1)
    return loss, dnet, exact_dW, state


def _trace(model, inp, tgt, state, config, it) -> dict:
    """The numpy reference's view of this step, on the batch's first ``trace_batch`` sequences.

    Float64 from the model's current parameters; the loss gradient keeps the whole batch's scale,
    so ``dnet`` equals those sequences' rows of the training step's ``dnet``.
    """
    n = min(config.trace_batch, inp.shape[1])
    params = [p.detach().cpu().double().numpy() for p in model.weights()]
    H = config.hidden
    if state is None:
        s = (np.zeros((n, H)), np.zeros((n, H)))
    else:
        s = tuple(np.asarray(v[:n].cpu() if isinstance(v, torch.Tensor) else v[:n], np.float64)
                  for v in state)
    ids, targets = inp.numpy()[:, :n], tgt.numpy()[:, :n]
    loss, dlogits, x, h, cache, _ = numpy_model_forward(params, ids, targets, s, scale=tgt.numel())
    dh_out = dlogits @ params[3]
    threshold = config.dnet_threshold()
    g = lstm.backward(cache, dh_out, threshold)
    return {"iteration": it, "threshold": threshold, "W": cache.W, "b": params[2],
            "h0": s[0], "c0": s[1], "x": x, "a": cache.a,
            "i": cache.i, "f": cache.f, "g": cache.g, "o": cache.o,
            "c": cache.c, "c_prev": cache.c_prev, "tanh_c": cache.tanh_c,
            "dh_out": dh_out, "dh": g.dh, "dc": g.dc, "dnet": g.dnet,
            "dW": g.dW, "db": g.db, "dx": g.dx, "dh0": g.dh0, "dc0": g.dc0}


def _summarise(history, config, val_loss, test_loss, step_seconds, seconds) -> dict:
    n = len(history)
    tail = history[n - max(1, n // 10):]
    corr = [r["dw_correlation"] for r in history if r["dw_correlation"] is not None]
    macs_total = sum(r["macs_total"] for r in history)
    macs_skip = sum(r["macs_skippable"] for r in history)
    per_sym = math.log(2) if config.level == "char" else 1.0
    return {
        "threshold": config.threshold,
        "threshold_scale": config.threshold_scale,
        "threshold_mean": config.dnet_threshold(),
        "iterations": n,
        "dnet_sparsity": float(np.mean([r["dnet_sparsity"] for r in tail])),
        "gate_sparsity": {g: float(np.mean([r["gate_sparsity"][g] for r in tail]))
                          for g in lstm.GATES},
        "train_loss": float(np.mean([r["train_loss"] for r in tail])),
        "val_loss": val_loss,
        "val_perplexity": math.exp(val_loss),
        "val_bpc" if config.level == "char" else "val_nats": val_loss / per_sym,
        "test_loss": test_loss,
        "test_perplexity": math.exp(test_loss),
        "dw_correlation": float(np.mean(corr)) if corr else None,
        "macs_total": macs_total,
        "macs_skippable": macs_skip,
        "skippable_mac_fraction": macs_skip / macs_total,
        "seconds": seconds,
        "seconds_per_iteration": step_seconds / n,
    }


def config_fields() -> list[str]:
    return [f.name for f in fields(TrainConfig)]
