"""``gateskip compare --mode model``: the whole character model (embedding, LSTM layer, output
layer, softmax and loss, SGD on every weight) in fixed point against float golden training,
same model, data and seed (:func:`golden.model_fixed.model_train`).

On ``--device model`` the fixed-point model (:class:`golden.model_fixed.FixedModel`) runs it;
on the simulated board (the whole-model build, ``AccelConfig.vocab``) or a board carrying it,
:class:`DeviceModel` runs each iteration on the chip, tokens in and loss out, and checks it
against that model bit for bit: the summed loss and the loss scale of every iteration, the
zero counts of ``dnet`` and ``dlogit`` in total; at the end every weight and the state read back (a checkpoint), and
the validation loss of a stretch of the validation split evaluated on the chip (``FORWARD``)
against the model's; the checkpoint is also loaded into the float golden model, whose
validation loss is ``checkpoint_val_loss_float``. The iterations stream: the next batch's tokens go into the chip's other
token bank while the current one computes, and its loss comes back while the next one runs. The JSON keeps ``--mode layer``'s keys and adds ``softmax_errors``,
``cpu_seconds_per_iteration`` (this machine's float golden iteration), ``boards`` (per board:
``board_seconds_per_iteration`` from the simulated board's cycles at that board's clock and
clock-to-baud divisor, ``accelerator_busy_fraction``), ``macs_per_iteration`` and
``speedup_ideal``; with ``also_dense`` the same iterations again in dense mode on the same
device, ``dense`` (its figures) and ``speedup_measured`` per board.
"""

from __future__ import annotations

import os

import numpy as np

from gateskip.compare_layer import write_outputs
from gateskip.defaults import LAYER_OPTIMIZER, MODEL_EVAL_SYMBOLS
from gateskip.golden.config import TrainConfig
from gateskip.golden.fixed import FORMATS, threshold_code
from gateskip.golden.layer import activation_errors, lr_code
from gateskip.golden.model_fixed import FixedModel, evaluate_model, model_train
from gateskip.golden.output import softmax_errors
from gateskip.golden.train import evaluate, evaluation_windows
from gateskip.spec.registers import bit

__all__ = ["DeviceModel", "PHASES", "run_model", "macs", "device_rows", "phase_plot"]

#: the iteration's phases, by the counter that times them (``spec.registers.COUNTERS``)
PHASES = {"embedding": "EMBED_CYCLES", "forward": "FORWARD_CYCLES", "output": "OUTPUT_CYCLES",
          "loss scale": "SCALE_CYCLES", "backward": "CYCLES", "update": "UPDATE_CYCLES"}
#: the counters read at the end of a run (cleared at its start)
_COUNTERS = (*PHASES.values(), "BUSY_CYCLES", "ZEROS", "VALUES", "OUTPUT_ZEROS",
             "OUTPUT_VALUES")


def macs(config: TrainConfig, vocab: int, zeros: int, output_zeros: int) -> dict:
    """One iteration's MACs (``golden.train.step_macs``'s accounting): ``dense``, all of them
    (every layer's, the second's ``K = 2H``); ``skipped``, those a zero ``dnet`` (``2K`` each;
    ``zeros`` of every layer, whose ``K`` a device's layers share, ``X = H``) or a zero
    ``dlogit`` (``2H``) skips."""
    H, X, N = config.hidden, config.embed, config.seq_len * config.batch
    K = H + X
    lstm = 4 * H * (K + (config.layers - 1) * 2 * H)
    dense = N * (3 * lstm + 3 * vocab * H)
    return {"dense": dense, "skipped": 2 * K * zeros + 2 * H * output_zeros}


class DeviceModel:
    """The whole model on a device carrying the whole-model build (``gateskip.host.LinkDevice``),
    beside its fixed-point twin ``model`` (:class:`golden.model_fixed.FixedModel`), with the
    twin's :meth:`step`: each call runs the twin and returns its result, and streams the
    iterations to the chip overlapped: the next batch's tokens go into the other bank while an
    iteration runs, the next ``TRAIN`` starts when it ends, and the ended iteration's loss and
    loss scale are read while the next one runs and checked against the twin's. :meth:`finish`
    ends the last; the counters (cleared once at the start) are checked in total there.

    The twin's masters are loaded into the device first; the device's state is reset when the
    training resets it (``state`` ``None``) and otherwise carried on the chip. ``dense``: no
    skipping on the chip."""

    def __init__(self, device, model, *, dense: bool = False):
        self.device, self.twin, self.dense = device, model, dense
        self.host = device.model_host()
        self.link = getattr(device, "link", None)
        self.board_stats = getattr(device, "board_stats", None)
        device.run(self.host.load_model(model.masters()))
        device.run(self.host.write_reg("CTRL", bit("CTRL", "CLEAR")))
        self.pending = None                 # the twin's result of the TRAIN on the chip
        self.prefetched = None              # the tokens and targets already in the next bank
        self.iterations, self.verdicts = 0, []
        self.twin_counts = dict.fromkeys(("ZEROS", "VALUES", "OUTPUT_ZEROS", "OUTPUT_VALUES"), 0)
        self._row = {}
        self._start = self._mark()

    def _mark(self):
        self._bytes = (self.link.stats["bytes_out"] + self.link.stats["bytes_in"]
                       if self.link is not None else None)
        self._cycles = self.board_stats()["cycles"] if self.board_stats else None
        return self._bytes, self._cycles

    def _check(self, got):
        want = self.pending
        self.verdicts.append(got["loss_sum"] == want["loss_sum"] and
                             got["shift"] == want["grad_shift"])

    def step(self, tokens, targets, state, threshold: float, lr: float,
             upcoming=None) -> dict:
        """The twin's :meth:`~golden.model_fixed.FixedModel.step`, and on the chip: wait for
        the last iteration, ``TRAIN`` this one on its bank (its tokens written before, unless
        they were not known), read and check the last one's results while it runs, write
        ``upcoming`` (the next ``(tokens, targets)``) into the other bank, then compute the
        twin's step while the chip computes."""
        run, host = self.device.run, self.host
        tokens, targets = np.asarray(tokens), np.asarray(targets)
        n, bank = tokens.size, self.iterations % 2
        if self.prefetched is None or not all(np.array_equal(a, b) for a, b in
                                              zip(self.prefetched, (tokens, targets))):
            run(host.write_tokens(tokens.T, targets.T, bank))
        if self.pending is not None:
            run(host.wait())
        run(host.configure(seq_len=tokens.shape[0], batch=tokens.shape[1],
                           threshold=threshold_code(threshold * n), lr=lr_code(lr / n),
                           dense=self.dense))                 # no traffic unless they changed
        if state is None:
            run(host.reset_state())
        run(host.start("TRAIN", bank))
        if self.pending is not None:
            self._check(run(host.result(previous=True)))  # the last one's, while this runs
        self.prefetched = None
        if upcoming is not None:
            nxt = tuple(np.asarray(a) for a in upcoming)
            run(host.write_tokens(nxt[0].T, nxt[1].T, 1 - bank))
            self.prefetched = nxt
        want = self.twin.step(tokens, targets, state, threshold, lr)
        self.pending = want
        self.iterations += 1
        out_zeros = int((want["dlogit"] == 0).sum())
        for name, value in (("ZEROS", want["zeros"]), ("VALUES", want["values"]),
                            ("OUTPUT_ZEROS", out_zeros), ("OUTPUT_VALUES", want["dlogit"].size)):
            self.twin_counts[name] += int(value)
        before_bytes, before_cycles = self._bytes, self._cycles
        self._mark()
        self._row = {"link_bytes": (self._bytes - before_bytes) if self.link else None,
                     "board_cycles": (self._cycles - before_cycles) if self.board_stats
                     else None,
                     "zeros": int(want["zeros"]), "output_zeros": out_zeros}
        return want

    def row(self) -> dict:
        return dict(self._row)

    def finish(self) -> dict:
        """End the last iteration and check it; returns the run's totals: ``bit_exact``
        (per iteration), ``counters_exact``, ``counters``, ``link_bytes`` and
        ``board_cycles`` (from the first iteration's start to the last one's end)."""
        run, host = self.device.run, self.host
        if self.pending is not None:
            run(host.wait())
            self._check(run(host.result()))
            self.pending = None
        counters = run(host.counters(_COUNTERS))
        start_bytes, start_cycles = self._start
        end_bytes, end_cycles = self._mark()
        return {"bit_exact": list(self.verdicts), "counters": counters,
                "counters_exact": all(counters[k] == v for k, v in self.twin_counts.items()),
                "link_bytes": (end_bytes - start_bytes) if self.link else None,
                "board_cycles": (end_cycles - start_cycles) if self.board_stats else None}

    def checkpoint(self) -> dict:
        """The device's masters and carried state, read back."""
        return self.device.run(self.host.read_model())

    def checkpoint_exact(self, checkpoint: dict) -> bool:
        """``checkpoint``'s masters equal the twin's."""
        return all(np.array_equal(checkpoint[name], value)
                   for name, value in self.twin.masters().items())

    def evaluate(self, ids, symbols: int) -> tuple[float, float]:
        """The validation loss (nats per symbol) of the first ``symbols`` of ``ids`` evaluated
        on the chip (``FORWARD``, the device's batch and sequence length, the state carried
        from a reset), and the twin's of the same stretch read the same way."""
        run, host = self.device.run, self.host
        batch, window = host.max_batch, host.max_seq
        ids = ids[:symbols]
        run(host.reset_state())
        total, count = 0, 0
        for inp, tgt in evaluation_windows(ids, batch, window):
            total += run(host.evaluate(inp.T, tgt.T))
            count += tgt.size
        return (self.twin.loss_nats(total, count),
                evaluate_model(self.twin, ids, batch=batch, window=window))


def _summary(totals: dict, rows, config, vocab, clock_hz: dict, baud: int | None = None) -> dict:
    """The device's figures of a run (``totals`` from :meth:`DeviceModel.finish`, the rows of
    its iterations): means per iteration, the MACs, and per board (``clock_hz``: ``{name:
    Hz}``; its link at ``baud``) the seconds per iteration and the busy fraction."""
    n = len(rows)
    c = totals["counters"]
    cycles = {p: c[name] / n for p, name in PHASES.items()}
    busy = c["BUSY_CYCLES"] / n
    board = totals["board_cycles"] / n if totals["board_cycles"] is not None else None
    m = [macs(config, vocab, r["zeros"], r["output_zeros"]) for r in rows]
    dense = float(np.mean([x["dense"] for x in m]))
    done = float(np.mean([x["dense"] - x["skipped"] for x in m]))
    out = {"bit_exact_iterations": sum(totals["bit_exact"]),
           "counters_exact": totals["counters_exact"],
           "link_bytes_per_iteration": (totals["link_bytes"] / n
                                        if totals["link_bytes"] is not None else None),
           "accelerator_cycles_per_iteration": {**cycles, "busy": busy},
           "board_cycles_per_iteration": board,
           "macs_per_iteration": {"dense": dense, "after_skipping": done},
           "speedup_ideal": dense / done,
           "dlogit_sparsity": c["OUTPUT_ZEROS"] / max(1, c["OUTPUT_VALUES"])}
    out["boards"] = ({name: {"board_seconds_per_iteration": board / hz,
                             "accelerator_busy_fraction": busy / board,
                             "clock_mhz": hz / 1e6, "baud": baud}
                      for name, hz in clock_hz.items()} if board else {})
    return out


def run_model(config: TrainConfig, corpus, *, out: str, json_path: str | None, bars,
              echo=print, device=None, device_name: str = "model", clock_hz=None,
              also_dense: bool = False, baud: int | None = None) -> dict:
    """Train ``config`` (the optimiser replaced by :data:`LAYER_OPTIMIZER`, the update unit's)
    with the whole model in fixed point (on ``device``, a ``gateskip.host.LinkDevice`` carrying
    the whole-model build, or the model) against float; write ``OUT/summary.md``,
    ``OUT/loss.png``, ``OUT/phases.png`` (on a device) and ``json_path``. ``clock_hz``: the
    boards the device's cycles stand for, ``{name: clock in Hz}``, its link at ``baud``. Everything was checked by
    the caller. Raises ``RuntimeError`` after writing every output when the device was not
    bit-exact."""
    config = config.replace(**LAYER_OPTIMIZER, corr_every=0).check()
    on_chip = device is not None
    made = []

    def make_chip(dense):
        def make(model):
            made.append(DeviceModel(device, model, dense=dense))
            return made[-1]
        return make

    def train(dense, label):
        bar = bars(f"compare model on {device_name}{label}")
        try:
            return model_train(config, corpus, progress=bar,
                               chip=make_chip(dense) if on_chip else None)
        finally:
            bar.close()

    run = train(False, "")
    s, rows = run["summary"], run["iterations"]
    result = {
        "mode": "model", "device": device_name, "iterations": config.iterations,
        "bit_exact_iterations": None, "weights_bit_exact": None,
        "link_bytes_per_iteration": None,
        "accelerator_cycles_per_iteration": {p: None for p in ("forward", "backward", "update")},
        "board_cycles_per_iteration": None,
        "val_loss_device": s["val_loss_fixed"], "val_loss_float": s["val_loss_float"],
        "val_loss_fixed": s["val_loss_fixed"], "val_loss_ratio": s["ratio"],
        "dnet_sparsity": s["sparsity_fixed"], "dnet_sparsity_float": s["sparsity_float"],
        "master_frac": FORMATS.master.frac_bits, "activation_errors": activation_errors(),
        "softmax_errors": softmax_errors(vocab=corpus.V),
        "cpu_seconds_per_iteration": s["float_seconds_per_iteration"],
        "optimizer": dict(LAYER_OPTIMIZER), "seconds": s["seconds"],
        "corpus": corpus.name, "config": run["config"], "history": rows}
    if on_chip:
        chip = made[-1]
        result.update(_summary(chip.finish(), rows, config, corpus.V, clock_hz or {}, baud))
        saved = chip.checkpoint()
        result["weights_bit_exact"] = chip.checkpoint_exact(saved)
        floated = FixedModel.from_masters(saved, config.embed).float_model()
        result["checkpoint_val_loss_float"] = evaluate(floated, corpus.valid)
        symbols = min(MODEL_EVAL_SYMBOLS, len(corpus.valid))
        chip_loss, twin_loss = chip.evaluate(corpus.valid, symbols)
        result["evaluation_on_chip"] = {"symbols": symbols, "val_loss_device": chip_loss,
                                        "val_loss_fixed": twin_loss,
                                        "bit_exact": chip_loss == twin_loss}
        if also_dense:
            dense_rows = train(True, " (dense)")["iterations"]
            dense = _summary(made[-1].finish(), dense_rows, config, corpus.V, clock_hz or {},
                             baud)
            result["dense"] = dense
            result["speedup_measured"] = {
                name: dense["boards"][name]["board_seconds_per_iteration"] /
                b["board_seconds_per_iteration"] for name, b in result["boards"].items()}
    write_outputs(result, out, json_path, echo, device_rows=device_rows)
    if on_chip:
        echo("wrote " + phase_plot(result, out))
        bad = [f"{result['bit_exact_iterations']} of {config.iterations} iterations bit-exact"
               ] if result["bit_exact_iterations"] != config.iterations else []
        if not result["counters_exact"]:
            bad.append("its zero counts differ")
        if "dense" in result and result["dense"]["bit_exact_iterations"] != config.iterations:
            bad.append(f"dense {result['dense']['bit_exact_iterations']} of "
                       f"{config.iterations}")
        if not result["weights_bit_exact"]:
            bad.append("its checkpoint differs")
        if not result["evaluation_on_chip"]["bit_exact"]:
            bad.append("its evaluation differs")
        if bad:
            raise RuntimeError(f"the {device_name} device was not bit-exact: {'; '.join(bad)}")
    return result


def device_rows(result: dict) -> list:
    """The summary's rows of the device's figures (Markdown table rows)."""
    cyc = result["accelerator_cycles_per_iteration"]
    ev = result["evaluation_on_chip"]
    rows = [
        f"| bit-exact iterations (loss, loss scale); zero counts in total | "
        f"{result['bit_exact_iterations']} of {result['iterations']}; "
        f"{'equal' if result['counters_exact'] else 'differ'} |",
        f"| checkpoint read back bit-exact (every master, the state) | "
        f"{'yes' if result['weights_bit_exact'] else 'no'} |",
        f"| the checkpoint in the float golden model: validation loss | "
        f"{result['checkpoint_val_loss_float']:.4f} |",
        f"| validation loss on the chip, first {ev['symbols']} symbols: device, fixed | "
        f"{ev['val_loss_device']:.4f}, {ev['val_loss_fixed']:.4f} |",
        f"| link bytes per iteration | {result['link_bytes_per_iteration']:,.0f} |",
        "| accelerator cycles per iteration: " + ", ".join(PHASES) + ", busy | " +
        ", ".join(f"{cyc[p]:,.0f}" for p in (*PHASES, "busy")) + " |",
        f"| dlogit sparsity (zero after rounding) | {result['dlogit_sparsity']:.1%} |",
        f"| MACs per iteration: dense, after skipping; ideal speedup | "
        f"{result['macs_per_iteration']['dense']:,.0f}, "
        f"{result['macs_per_iteration']['after_skipping']:,.0f}; "
        f"{result['speedup_ideal']:.3f} |",
        f"| this machine's CPU, float golden: seconds per iteration | "
        f"{result['cpu_seconds_per_iteration'] * 1e3:.2f} ms |"]
    if result["board_cycles_per_iteration"] is not None:
        rows.append(f"| board cycles per iteration (link included) | "
                    f"{result['board_cycles_per_iteration']:,.0f} |")
    for name, b in result.get("boards", {}).items():
        rows.append(f"| {name} at {b['clock_mhz']:g} MHz, {b['baud'] / 1e6:g} Mbaud: seconds per "
                    f"iteration, accelerator busy | "
                    f"{b['board_seconds_per_iteration'] * 1e3:.2f} ms, "
                    f"{b['accelerator_busy_fraction']:.1%} |")
    if "dense" in result:
        d = result["dense"]
        rows.append(f"| dense: bit-exact iterations | {d['bit_exact_iterations']} of "
                    f"{result['iterations']} |")
        for name, b in d["boards"].items():
            rows.append(f"| {name} dense: seconds per iteration, accelerator busy; measured "
                        f"speedup (ideal {result['speedup_ideal']:.3f}) | "
                        f"{b['board_seconds_per_iteration'] * 1e3:.2f} ms, "
                        f"{b['accelerator_busy_fraction']:.1%}; "
                        f"{result['speedup_measured'][name]:.3f} |")
    return rows


def phase_plot(result: dict, outdir) -> str:
    """``phases.png``: where the board's cycles of an iteration go (each compute phase, the
    rest of the busy time, and the link), skip and (with ``dense``) dense; returns its path."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = [("skip", result)] + ([("dense", result["dense"])] if "dense" in result else [])
    fig, ax = plt.subplots(figsize=(7.0, 2.2 + 0.5 * len(runs)))
    colors = plt.get_cmap("tab10").colors
    for y, (label, r) in enumerate(runs):
        cyc = r["accelerator_cycles_per_iteration"]
        parts = [(p, cyc[p]) for p in PHASES]
        parts.append(("other busy", cyc["busy"] - sum(cyc[p] for p in PHASES)))
        board = r["board_cycles_per_iteration"] or cyc["busy"]
        parts.append(("link", board - cyc["busy"]))
        left = 0.0
        for k, (name, value) in enumerate(parts):
            ax.barh(y, value, left=left, color=colors[k % len(colors)],
                    label=name if y == 0 else None)
            left += value
    ax.set_yticks(range(len(runs)), [label for label, _ in runs])
    ax.set_xlabel("board cycles per iteration")
    ax.legend(fontsize=7, ncol=4, loc="upper center", bbox_to_anchor=(0.5, -0.35))
    ax.invert_yaxis()
    fig.tight_layout()
    path = os.path.join(outdir, "phases.png")
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
