"""The demo's outputs: the expert-load table, the PNG (loss curve + utilisation heatmap),
and the mesh-versus-single-device check."""

import numpy as np

import namedmesh as nm


def expert_load_table(history, expert_x: int, expert_y: int) -> str:
    """Per second-level expert, over the last quarter of training: the share of the
    router's requests it got (demand) and of the assignments that found a slot (routed)."""
    tail = slice(-max(1, len(history.load) // 4), None)
    demand = np.stack(history.demand[tail]).sum(0)
    routed = np.stack(history.load[tail]).sum(0)
    lines = ["expert load, layer 0, second level, last quarter of training "
             "(perfect balance: %.1f%% each)" % (100.0 / (expert_x * expert_y)),
             "  expert        demand   routed   kept"]
    for i in range(expert_x):
        for j in range(expert_y):
            k = i * expert_y + j
            lines.append("  x=%d, y=%d   %6.1f%%  %6.1f%%  %5.1f%%" % (
                i, j, 100 * demand[k] / max(demand.sum(), 1), 100 * routed[k] / max(routed.sum(), 1),
                100 * routed[k] / max(demand[k], 1)))
    return "\n".join(lines)


def write_png(history, path: str, expert_x: int, expert_y: int) -> str:
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
    ax_loss.set_ylabel("cross-entropy (nats)")
    ax_aux = ax_loss.twinx()
    ax_aux.plot(steps, history.aux, color="tab:orange", alpha=0.7, label="aux loss")
    ax_aux.set_ylabel("aux loss", color="tab:orange")
    ax_loss.legend(loc="upper right")
    ax_loss.set_title("training loss")

    load = np.stack(history.demand)                     # [steps, x*y]: the router's demand
    buckets = min(40, len(load))
    edges = np.linspace(0, len(load), buckets + 1).astype(int)
    share = np.stack([load[a:b].sum(0) / max(load[a:b].sum(), 1)
                      for a, b in zip(edges[:-1], edges[1:])], 1)  # [x*y, buckets]
    im = ax_heat.imshow(share, aspect="auto", cmap="viridis", origin="lower",
                        extent=[steps[0], steps[-1], -0.5, expert_x * expert_y - 0.5])
    ax_heat.set_yticks(range(expert_x * expert_y))
    ax_heat.set_yticklabels(["x%d,y%d" % (i, j) for i in range(expert_x)
                             for j in range(expert_y)])
    ax_heat.set_xlabel("step")
    ax_heat.set_title("expert utilisation: share of router requests (layer 0, level 2)")
    fig.colorbar(im, ax=ax_heat)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def mesh_matches_single_device(model, mesh, corpus, positions, seed: int = 123):
    """Run one batch (eval mode) on the mesh and on one device; (max abs diff of logits, ok)."""
    positions = nm.convert_to_shape(positions)
    rng = np.random.RandomState(seed)
    windows, targets = corpus.batch(rng, positions.sizes, model.context)
    single = nm.Mesh()

    def logits_on(m):
        _, _, _, logits = model(m, windows, targets, positions, train=False)
        return nm.export_to_tf_tensor(logits)

    if mesh.strategy is None:
        on_mesh = logits_on(mesh)
    else:
        on_mesh = mesh.run(lambda: logits_on(mesh))
    diff = float(np.abs(on_mesh.numpy() - logits_on(single).numpy()).max())
    return diff, diff <= 1e-4
