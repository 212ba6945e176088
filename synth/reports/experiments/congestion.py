"""Where a build's route is congested: nextpnr's router2 heatmaps of a step's build.

    python synth/reports/experiments/congestion.py build OUT [--step NAME] [--param K=V ...]
        [--iterations N]
    python synth/reports/experiments/congestion.py plot OUT [OUT ...] [--png FILE]

``build`` builds the search step ``NAME`` (default ``ulx3s-85f-l32-deep``) with the ``--param``
overrides (JSON values: ``--param train=true --param update_lanes=4``) through
``gateskip.synth.build.build_board``, as the search does, but routed by router2 with
``--router2-heatmap heat`` (no block RAM check skipped, nothing saved among the reports), and
stops nextpnr once router2 has written ``N`` iterations' heatmaps (default 3; about four minutes
each for the 32-lane training top). ``plot`` prints, per build directory, router2's overused
wires per iteration, the sum of its congestion-by-net and the net groups most in it (the net
names cut to their first four parts), and draws the overuse per iteration and the last
iteration's congestion by coordinate into a PNG. The nineteenth session's figures in
``synth/reports/SEARCH.md`` are of this recipe.
"""

import argparse
import collections
import dataclasses
import json
import os
import re
import signal
import sys
import threading
import time
from pathlib import Path

ITER = re.compile(r"iter=(\d+) wires=(\d+) overused=(\d+) overuse=(\d+)")
NET_GROUP = re.compile(r"\$signal.*|_TRELLIS.*|\[\d+\].*|_LUT4.*|_PFUMX.*|_L6MUX.*|_DO[AB].*|"
                       r"_CCU2C.*")


def stop_after_iterations(out: Path, iterations: int) -> None:
    """End the nextpnr running in ``out`` once router2 has written ``iterations`` iterations'
    heatmaps (router2 never stops on a congested design)."""
    while not (out / f"heat_congestion_by_net_{iterations}.csv").exists():
        time.sleep(10)
    time.sleep(5)
    for proc in Path("/proc").iterdir():
        try:
            if (proc.name.isdigit() and (proc / "cwd").resolve() == out
                    and b"nextpnr" in (proc / "cmdline").read_bytes()):
                os.kill(int(proc.name), signal.SIGTERM)
        except OSError:
            pass


def build(out: Path, step_name: str, params: dict, iterations: int) -> None:
    from gateskip.synth import build as b, search
    from gateskip.synth.boards import board
    step = search.step(step_name)
    step = dataclasses.replace(step, params={**step.params, **params})
    run_build = b.run_build

    def with_heatmaps(*args, **opts):
        opts["nextpnr_opts"] = (opts.get("nextpnr_opts", "").replace("--router router1", "")
                                + " --router router2 --router2-heatmap heat")
        return run_build(*args, **opts)

    b.run_build = with_heatmaps
    out.mkdir(parents=True, exist_ok=True)
    threading.Thread(target=stop_after_iterations, args=(out, iterations), daemon=True).start()
    try:
        b.build_board(board(step.board), {**b.build_params(), **step.params}, out,
                      clock_mhz=step.clock, placer=step.placer, seed=step.seed,
                      multreg=step.multreg, outreg=step.outreg, hide_fields=step.hide_fields,
                      timeout=120 * 60)
    except b.BuildError as e:          # the route stopped: expected
        print(f"{out}: stopped at {e.stage}", file=sys.stderr)


def summary(out: Path, top: int = 12) -> dict:
    iters = [tuple(map(int, m.groups())) for m in ITER.finditer(
        (out / "gateskip.tim").read_text(errors="replace"))]
    last = max((int(p.stem.rsplit("_", 1)[1]) for p in out.glob("heat_congestion_by_net_*.csv")),
               default=0)
    groups, total = collections.Counter(), 0
    if last:
        second = out / f"heat_congestion_by_net_{min(2, last)}.csv"
        for line in second.read_text().splitlines():
            name, value = line.rsplit(",", 1)
            total += int(value)
            groups[".".join(NET_GROUP.sub("", name).split(".")[:4])] += int(value)
    return {"dir": str(out), "overused": [i[2] for i in iters], "congestion_it2": total,
            "groups": groups.most_common(top), "last": last}


def plot(outs: list[Path], png: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    rows = [summary(o) for o in outs]
    for r in rows:
        print(json.dumps({k: r[k] for k in ("dir", "overused", "congestion_it2")}))
        for name, value in r["groups"]:
            print(f"  {value:7d}  {name}")
    fig, axes = plt.subplots(1, 1 + len(outs), figsize=(4.5 * (1 + len(outs)), 4.5))
    for r in rows:
        axes[0].plot(range(1, len(r["overused"]) + 1), r["overused"], marker="o",
                     label=Path(r["dir"]).name)
    axes[0].set(xlabel="router2 iteration", ylabel="overused wires", title="overuse")
    axes[0].legend()
    for ax, r, o in zip(axes[1:], rows, outs):
        if not r["last"]:
            continue
        grid = np.array([[float(v) for v in line.strip().rstrip(",").split(",")]
                         for line in (o / f"heat_congestion_by_coordinate_{r['last']}.csv")
                         .read_text().splitlines()])
        im = ax.imshow(grid.T, cmap="hot", origin="lower", interpolation="nearest")
        ax.set(title=f"{o.name}: congestion, iteration {r['last']}", xlabel="x", ylabel="y")
        fig.colorbar(im, ax=ax, shrink=0.8)
    fig.tight_layout()
    fig.savefig(png, dpi=80)
    print(f"wrote {png}")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    pb = sub.add_parser("build")
    pb.add_argument("out", type=Path)
    pb.add_argument("--step", default="ulx3s-85f-l32-deep")
    pb.add_argument("--param", action="append", default=[], metavar="K=V")
    pb.add_argument("--iterations", type=int, default=3)
    pp = sub.add_parser("plot")
    pp.add_argument("outs", type=Path, nargs="+")
    pp.add_argument("--png", type=Path, default=Path("congestion.png"))
    a = p.parse_args()
    if a.cmd == "build":
        params = {}
        for kv in a.param:
            k, _, v = kv.partition("=")
            params[k] = json.loads(v)
        build(a.out.resolve(), a.step, params, a.iterations)
    else:
        plot([o.absolute() for o in a.outs], a.png)


if __name__ == "__main__":
    main()
