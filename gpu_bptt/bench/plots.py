"""PNG plots of a run (needs matplotlib, the `plot` extra): forward+backward time against B and
against T per contender, and the speed-up over the baseline (cuDNN on a GPU, PyTorch on a CPU)."""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path


def _records(run):
    for block in run["sizes"]:
        for rec in block["results"]:
            if "times" in rec:
                yield block["size"], rec


def _sweep(run, vary):
    """{(fixed dims): {contender: [(value of `vary`, seconds)]}} for groups with 2+ values."""
    groups = defaultdict(lambda: defaultdict(list))
    for s, rec in _records(run):
        fixed = tuple((k, s[k]) for k in "TBIH" if k != vary)
        groups[fixed][rec["contender"]].append((s[vary], rec["times"]["fwdbwd"]["median_s"]))
    return {k: v for k, v in groups.items() if len({x for pts in v.values() for x, _ in pts}) > 1}


def write_plots(run, stem) -> list:
    """Write the plots beside `stem` (a path without suffix); returns the files written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    stem = Path(stem)
    files = []
    for vary in ("B", "T"):
        for fixed, curves in _sweep(run, vary).items():
            fig, ax = plt.subplots(figsize=(6, 4))
            for name, pts in sorted(curves.items()):
                pts.sort()
                ax.plot([p[0] for p in pts], [p[1] * 1e3 for p in pts], marker="o", label=name)
            ax.set(xscale="log", yscale="log", xlabel=vary, ylabel="forward+backward ms",
                   title=" ".join(f"{k}={v}" for k, v in fixed)
                   + f", {run.get('cell', 'elman')}, {run['dtype']}")
            ax.legend(fontsize=7)
            path = stem.with_name(f"{stem.name}-time-vs-{vary}-" + "-".join(f"{k}{v}" for k, v in fixed)
                                  + ".png")
            fig.tight_layout()
            fig.savefig(path, dpi=110)
            plt.close(fig)
            files.append(path)
    labels, series = [], defaultdict(dict)
    for block in run["sizes"]:
        s = block["size"]
        labels.append(f"T{s['T']} B{s['B']}\nI{s['I']} H{s['H']}")
        for rec in block["results"]:
            sp = rec.get("ratios", {}).get("speedup_fwdbwd")
            if sp is not None:
                series[rec["contender"]][len(labels) - 1] = sp
    if series:
        fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(labels)), 4))
        width = 0.8 / len(series)
        for j, (name, vals) in enumerate(sorted(series.items())):
            xs = sorted(vals)
            ax.bar([x + j * width for x in xs], [vals[x] for x in xs], width, label=name)
        ax.axhline(1, color="k", lw=0.8)
        ax.set_xticks([x + 0.4 - width / 2 for x in range(len(labels))], labels, fontsize=7)
        base = run["sizes"][0]["baseline"]
        ax.set(ylabel=f"speed-up over {base} (fwd+bwd)", yscale="log",
               title=f"speed-up over {base}, {run.get('cell', 'elman')}, {run['dtype']}")
        ax.legend(fontsize=7)
        fig.tight_layout()
        path = stem.with_name(f"{stem.name}-speedup.png")
        fig.savefig(path, dpi=110)
        plt.close(fig)
        files.append(path)
    return files
