"""Running a ported legacy model from its checkpoint: the vocab sizes a checkpoint implies,
a batch that fits the mesh, one evaluation, a decode.  Used by ``namedmesh run`` and by
``namedmesh port --checkpoint --check``.

    model = load_ported_model(config, prefix)            # every variable by name
    summary = evaluate(model, mesh, features)            # loss, its parts, accuracy ...
    tokens = model.decode(mesh, prompts)
"""

from dataclasses import dataclass, field
from typing import Dict, List, Optional

import numpy as np

from namedmesh.errors import ConfigError
from namedmesh.transformer.checkpoint import checkpoint_variables, is_training_state


def embedding_names(spec) -> Dict[str, List[str]]:
    """Where each Unitransformer of ``spec`` keeps its input embedding (mtf's names)."""
    if spec.kind == "Bitransformer" and spec.shared_embedding:
        return {spec.encoder.name: ["shared/embedding"], spec.decoder.name: ["shared/embedding"]}
    return {u.name: ["%s/embedding" % u.name] for u in spec.stacks}


def is_whole_model_checkpoint(prefix: str, spec) -> bool:
    """Does the checkpoint hold the embedding of the spec's model (not only MoE layers)?"""
    stored = checkpoint_variables(prefix)
    return all(any(n in stored for n in names) for names in embedding_names(spec).values())


def vocab_sizes_from_checkpoint(prefix: str, spec) -> Dict[str, int]:
    """``{"input_vocab_size", "output_vocab_size"}`` read off the checkpoint's embeddings
    (mtf pads the vocab to a multiple of ``vocab_divisor``; a padded size pads to itself)."""
    stored = checkpoint_variables(prefix)
    sizes = {}
    for unit in spec.stacks:
        names = embedding_names(spec)[unit.name]
        found = [n for n in names if n in stored]
        if not found:
            model_vars = sorted(n for n in stored if not is_training_state(n))
            raise ConfigError("checkpoint %r has no %s (the embedding of the config's %s): it "
                              "is not a checkpoint of this config's model (its variables: %s%s)"
                              % (prefix, " or ".join(names), unit.name,
                                 ", ".join(model_vars[:4]),
                                 " ..." if len(model_vars) > 4 else ""))
        sizes[unit.name] = int(stored[found[0]][0])
    if spec.kind == "Bitransformer":
        return {"input_vocab_size": sizes[spec.encoder.name],
                "output_vocab_size": sizes[spec.decoder.name]}
    return {"input_vocab_size": sizes[spec.decoder.name],
            "output_vocab_size": sizes[spec.decoder.name]}


def load_ported_model(config, prefix: str, mesh=None, vocab_size: Optional[int] = None,
                      seed: int = 0):
    """The config's whole model with every variable of the checkpoint ``prefix``."""
    from namedmesh.transformer.checkpoint import resolve_checkpoint_prefix
    prefix = resolve_checkpoint_prefix(prefix)
    if config.model is None:
        config.build_model()   # raises, saying why the config is not a whole model
    sizes = ({"input_vocab_size": vocab_size, "output_vocab_size": vocab_size}
             if vocab_size is not None else vocab_sizes_from_checkpoint(prefix, config.model))
    model = config.build_model(seed=seed, **sizes)
    batch = [n for n, _ in config.model.batch_dims] or None
    model.load_checkpoint(prefix, mesh=mesh, batch_dims=batch)
    return model


def batch_that_fits(spec, mesh, max_tokens: int = 4096) -> Dict[str, object]:
    """A batch shape for a check run: the config's batch dims and lengths, shrunk (rows kept a
    multiple of the mesh dims that split them) to at most ``max_tokens`` per stack."""
    from namedmesh.core.dims import Dimension
    from namedmesh.moe.dims import mesh_dim_size_of
    dims = list(spec.batch_dims) or [("batch", 1)]
    lengths = {}
    for key, unit in (("inputs", spec.encoder), ("targets", spec.decoder)):
        if unit is None:
            continue
        length = spec.sequence_length.get(key) or unit.max_length or 64
        if unit.max_length and unit.positional_embedding:
            length = min(length, unit.max_length)
        lengths[key] = length
    longest = max(lengths.values())
    sizes = []
    for name, size in dims:
        split = mesh_dim_size_of(mesh, Dimension(name, size))
        sizes.append((name, size, split))
    rows = int(np.prod([s for _, s, _ in sizes]))
    while rows * longest > max_tokens and any(s > split for _, s, split in sizes):
        i = max(range(len(sizes)), key=lambda k: sizes[k][1] // sizes[k][2])
        name, size, split = sizes[i]
        sizes[i] = (name, max(split, size // 2 // split * split), split)
        rows = int(np.prod([s for _, s, _ in sizes]))
    while rows * max(lengths.values()) > max_tokens and max(lengths.values()) > 8:
        lengths = {k: max(8, v // 2) for k, v in lengths.items()}
    return {"batch_dims": [(n, s) for n, s, _ in sizes], "lengths": lengths}


def random_features(spec, shape, vocab_sizes: Dict[str, int], seed: int = 0):
    """Random ids (no padding) of ``batch_that_fits`` 's shape, by mtf's feature names."""
    rng = np.random.RandomState(seed)
    rows = [s for _, s in shape["batch_dims"]]
    out = {}
    for key, length in shape["lengths"].items():
        vocab = vocab_sizes["input_vocab_size" if key == "inputs" else "output_vocab_size"]
        out[key] = rng.randint(2, max(3, vocab), size=rows + [length]).astype(np.int32)
    return out


@dataclass
class Evaluation:
    """One batch's numbers (float values)."""

    loss: float
    cross_entropy: float
    z_loss: float
    moe_losses: Dict[str, float] = field(default_factory=dict)
    accuracy: float = 0.0
    tokens: int = 0
    logits_shape: tuple = ()
    logits: Optional[np.ndarray] = None

    def lines(self) -> List[str]:
        out = ["logits %s" % list(self.logits_shape),
               "loss %.6f = cross-entropy %.6f + z-loss %.6f + MoE aux losses %.6f"
               % (self.loss, self.cross_entropy, self.z_loss, sum(self.moe_losses.values())),
               "next-token accuracy %.4f over %d target tokens" % (self.accuracy, self.tokens)]
        out += ["  %s: %.6f" % kv for kv in sorted(self.moe_losses.items())]
        return out

    def to_dict(self):
        return {"loss": self.loss, "cross_entropy": self.cross_entropy, "z_loss": self.z_loss,
                "moe_losses": dict(self.moe_losses), "accuracy": self.accuracy,
                "tokens": self.tokens, "logits_shape": list(self.logits_shape)}


def evaluate(model, mesh, features, mode: str = "eval", batch_dims=None) -> Evaluation:
    """mtf's ``call_simple`` in eval mode on one batch, as numbers."""
    import tensorflow as tf

    from namedmesh.core.tensor import export_to_tf_tensor

    def program(feats):
        out = model(mesh, feats, mode=mode, batch_dims=batch_dims, loss_parts=True)
        return {"logits": export_to_tf_tensor(out.logits),
                "loss": export_to_tf_tensor(out.loss),
                "cross_entropy": export_to_tf_tensor(out.cross_entropy),
                "z_loss": export_to_tf_tensor(out.z_loss),
                "moe": {k: export_to_tf_tensor(v) for k, v in out.moe_losses.items()}}

    feats = {k: tf.constant(v) for k, v in features.items()}
    r = mesh.run(program, feats) if mesh.strategy is not None else program(feats)
    logits = r["logits"].numpy()
    targets = np.asarray(features["targets"])
    real = targets > 0
    correct = (logits.argmax(-1) == targets) & real
    return Evaluation(float(r["loss"]), float(r["cross_entropy"]), float(r["z_loss"]),
                      {k: float(v) for k, v in r["moe"].items()},
                      float(correct.sum() / max(real.sum(), 1)), int(real.sum()),
                      logits.shape, logits)


def check_whole_model(config, prefix: str, budget_bytes: int = 2 << 30, seed: int = 0):
    """``namedmesh port --checkpoint --check`` on a checkpoint of the whole model: load every
    variable by name and evaluate one batch of random ids.  None when the checkpoint holds
    only MoE layers (then only they are checked)."""
    if config.model is None or not is_whole_model_checkpoint(prefix, config.model):
        return None
    stored = checkpoint_variables(prefix)
    size = 4 * sum(int(np.prod(s)) for n, s in stored.items() if not is_training_state(n))
    if size > budget_bytes:
        raise ConfigError("--check would load %.1f GiB of weights from %r; check a smaller "
                          "model" % (size / 2.0 ** 30, prefix))
    mesh = config.build_mesh()
    model = load_ported_model(config, prefix, mesh=mesh, seed=seed)
    shape = batch_that_fits(config.model, mesh)
    sizes = {"input_vocab_size": model.unitransformers[0].input_vocab_dim.size,
             "output_vocab_size": model.output_vocab_dim.size}
    features = random_features(config.model, shape, sizes, seed=seed)
    result = evaluate(model, mesh, features)
    return {"model": repr(model), "variables": len(model.variables()),
            "batch": {k: list(v.shape) for k, v in features.items()},
            "eval": result.to_dict(), "lines": result.lines()}


__all__ = ["check_whole_model", "load_ported_model", "vocab_sizes_from_checkpoint",
           "is_whole_model_checkpoint",
           "batch_that_fits", "random_features", "evaluate", "Evaluation"]
