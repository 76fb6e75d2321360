"""The demo's outputs: the expert-load table, the PNG (loss curve + utilisation heatmap),
the mesh-versus-single-device check, and greedy continuations of prompts."""

import numpy as np

import namedmesh as nm
from namedmesh.demo.train import FIRST_ID, char_rows


def expert_labels(n: int):
    return ["expert %d" % i for i in range(n)]


def expert_load_table(history) -> str:
    """Per expert of the first MoE layer, over the last quarter of training: the share of
    the router's requests it got (demand), of the assignments that found a slot (routed),
    and how many of its requests it kept."""
    tail = slice(-max(1, len(history.load) // 4), None)
    demand = np.stack(history.demand[tail]).sum(0)
    routed = np.stack(history.load[tail]).sum(0)
    n = len(demand)
    lines = ["expert load, %s, last quarter of training (perfect balance: %.1f%% each)"
             % (history.moe_scope or "first MoE layer", 100.0 / n),
             "  expert      demand   routed   kept"]
    for k, label in enumerate(expert_labels(n)):
        lines.append("  %-9s  %6.1f%%  %6.1f%%  %5.1f%%" % (
            label, 100 * demand[k] / max(demand.sum(), 1), 100 * routed[k] / max(routed.sum(), 1),
            100 * routed[k] / max(demand[k], 1)))
    return "\n".join(lines)


def write_png(history, path: str) -> str:
    """Two panels: loss and aux loss over steps; expert utilisation over training."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_loss, ax_heat) = plt.subplots(1, 2, figsize=(12, 4.5))
    steps = np.array(history.steps)
    ax_loss.plot(steps, history.loss, label="language-model loss", color="tab:blue")
    window = max(1, len(steps) // 20)
    smooth = np.convolve(history.loss, np.ones(window) / window, mode="valid")
    ax_loss.plot(steps[window - 1:], smooth, color="navy", label="moving average")
    ax_loss.set_xlabel("step")
    ax_loss.set_ylabel("cross-entropy + z-loss (nats)")
    ax_aux = ax_loss.twinx()
    ax_aux.plot(steps, history.aux, color="tab:orange", alpha=0.7, label="MoE aux loss")
    ax_aux.set_ylabel("MoE aux loss", color="tab:orange")
    ax_loss.legend(loc="upper right")
    ax_loss.set_title("training loss")

    load = np.stack(history.demand)                     # [steps, experts]: the router's demand
    n = load.shape[1]
    buckets = min(40, len(load))
    edges = np.linspace(0, len(load), buckets + 1).astype(int)
    share = np.stack([load[a:b].sum(0) / max(load[a:b].sum(), 1)
                      for a, b in zip(edges[:-1], edges[1:])], 1)  # [experts, buckets]
    im = ax_heat.imshow(share, aspect="auto", cmap="viridis", origin="lower",
                        extent=[steps[0], steps[-1], -0.5, n - 0.5])
    ax_heat.set_yticks(range(n))
    ax_heat.set_yticklabels(expert_labels(n))
    ax_heat.set_xlabel("step")
    ax_heat.set_title("expert utilisation: share of router requests\n%s"
                      % (history.moe_scope or "first MoE layer"), fontsize=10)
    fig.colorbar(im, ax=ax_heat)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def mesh_matches_single_device(model, mesh, corpus, batch_sizes, length, batch_dims=None,
                               seed: int = 123):
    """One batch in eval mode on the mesh and on one device: (max |logits diff|, ok)."""
    targets = char_rows(corpus, np.random.RandomState(seed), batch_sizes, length)

    def logits_on(m):
        return nm.export_to_tf_tensor(model(m, {"targets": targets}, mode="eval",
                                            batch_dims=batch_dims).logits)

    if mesh.strategy is None:
        on_mesh = logits_on(mesh)
    else:
        on_mesh = mesh.run(lambda: logits_on(mesh))
    diff = float(np.abs(on_mesh.numpy() - logits_on(nm.Mesh()).numpy()).max())
    return diff, diff <= 1e-4


def continue_prompts(model, corpus, prompts, length: int):
    """Greedy continuations (mtf's ``sample_autoregressive`` at temperature 0) of text
    prompts, on one device; returns the decoded strings."""
    ids = np.zeros((len(prompts), length), np.int32)
    for i, text in enumerate(prompts):
        ids[i, :len(text)] = [corpus.index[c] + FIRST_ID for c in text]
    tokens = nm.export_to_tf_tensor(model.decode(nm.Mesh(), ids, stop_at_token=None)).numpy()
    out = []
    for row in tokens:
        out.append("".join(corpus.chars[t - FIRST_ID] if FIRST_ID <= t < FIRST_ID + len(
            corpus.chars) else "?" for t in row))
    return out


__all__ = ["expert_load_table", "write_png", "mesh_matches_single_device", "continue_prompts"]
