"""The golden cases of whole mtf transformer models, as data, and the token ids they run on.

No mtf import here: mtf_models.py turns a case into mtf's own objects.  A case names its layers
the way mtf's ``make_layer_stack`` takes them (``[class name, kwargs]`` per layer of one block,
repeated ``num_layers`` times), the Unitransformer / Bitransformer arguments, the mesh and
layout, the data, and (for the cases a real gin config describes) the gin bindings that, parsed
after mtf's defaults.gin and models/lm_moe.gin or bi_moe.gin, build the same model.
"""
import numpy as np

# What defaults.gin binds for every LayerStack (non-legacy mode: LayerStack.dropout_rate = None).
DEFAULT_SUBLAYERS = {
    "sublayers_initial": ["sublayer_dropout"],
    "sublayers_per_layer": ["sublayer_rms_norm", "sublayer_call_layer", "sublayer_dropout",
                            "sublayer_residual"],
    "sublayers_final": ["sublayer_rms_norm", "sublayer_dropout"],
}

# The layout rules of mtf's defaults.gin (utils.run.layout_rules), used verbatim on the meshes
# "batch:2,model:2" and "batch:2,model:4" (layouts/2x2_dp_mp.gin uses the latter).
DEFAULTS_GIN_LAYOUT = ("ensemble:ensemble,batch:batch,d_ff:model,heads:model,vocab:model,"
                       "experts:batch")

# lm_moe.gin's stack, scaled down the way models/tiny.gin scales a config: these bindings are
# written to gin/cases/<case>.gin and parsed after defaults.gin and models/lm_moe.gin.
TINY_BINDINGS = [
    "d_model = 8", "d_ff = 16", "d_kv = 4", "num_layers = 2",
    "MoE1D.num_experts = 4", "MoE1D.hidden_size = 16",
    "Unitransformer.max_length = 16",
    # deterministic: no dropout, and a second-expert policy that draws no random numbers
    "dropout_rate = 0.0",
]


def _moe1d(**kwargs):
    base = {"num_experts": 4, "hidden_size": 16, "second_policy_train": "all",
            "second_policy_eval": "all"}
    base.update(kwargs)
    return ["MoE1D", base]


def _sa(num_heads, d_kv=4, **kwargs):
    return ["SelfAttention", dict(num_heads=num_heads, key_value_size=d_kv, **kwargs)]


def _encdec(num_heads, d_kv=4, **kwargs):
    return ["EncDecAttention", dict(num_heads=num_heads, key_value_size=d_kv, **kwargs)]


def _drd(hidden, **kwargs):
    return ["DenseReluDense", dict(hidden_size=hidden, **kwargs)]


def _lm_moe_block(num_heads, **moe_kwargs):
    """One block of lm_moe.gin: SelfAttention, MoE1D, SelfAttention, DenseReluDense."""
    return [_sa(num_heads), _moe1d(**moe_kwargs), _sa(num_heads), _drd(16)]


def _lm_moe_gin(num_heads, extra=()):
    base = (["num_heads = %d" % num_heads] + TINY_BINDINGS +
            ['MoE1D.second_policy_train = "all"', 'MoE1D.second_policy_eval = "all"'])
    overridden = {line.split("=")[0].strip() for line in extra}
    return [line for line in base if line.split("=")[0].strip() not in overridden] + list(extra)


def _lm_case(description, layers, mesh_shape="", layout="", batch=(("batch", 2),),
             length=8, data="padded", model=None, stack=None, gin_bindings=None, seed=0,
             patches=None, num_layers=2):
    return {
        "kind": "lm", "description": description, "seed": seed,
        "mesh_shape": mesh_shape, "layout": layout,
        "data": {"batch_dims": [list(d) for d in batch], "length": length, "vocab_size": 32,
                 "packing": data},
        "num_layers": num_layers, "layers": layers,
        "layer_stack": stack or {"mode": "defaults"},
        "unitransformer": dict({"d_model": 8, "input_vocab_size": 32, "output_vocab_size": 32,
                                "autoregressive": True, "max_length": 16,
                                "shared_embedding_and_softmax_weights": True}, **(model or {})),
        "gin": ({"files": ["mtf/defaults.gin", "mtf/lm_moe.gin"], "bindings": gin_bindings}
                if gin_bindings else None),
        "patches": patches or {},
    }


def _bi_case(description, encoder_layers, decoder_layers, mesh_shape="", layout="",
             batch=(("batch", 2),), inputs_length=8, targets_length=8, data="padded",
             encoder=None, decoder=None, bitransformer=None, stack=None, gin_bindings=None,
             seed=0, num_layers=1, gin_model_file="mtf/bi_moe.gin"):
    common = {"d_model": 8, "max_length": 16}
    enc = dict(common, input_vocab_size=32, output_vocab_size=None, autoregressive=False,
               name="encoder", shared_embedding_and_softmax_weights=True)
    dec = dict(common, input_vocab_size=32, output_vocab_size=32, autoregressive=True,
               name="decoder", shared_embedding_and_softmax_weights=True)
    enc.update(encoder or {})
    dec.update(decoder or {})
    return {
        "kind": "bi", "description": description, "seed": seed,
        "mesh_shape": mesh_shape, "layout": layout,
        "data": {"batch_dims": [list(d) for d in batch], "inputs_length": inputs_length,
                 "targets_length": targets_length, "vocab_size": 32, "packing": data},
        "num_layers": num_layers,
        "encoder_layers": encoder_layers, "decoder_layers": decoder_layers,
        "layer_stack": stack or {"mode": "defaults"},
        "encoder": enc, "decoder": dec,
        "bitransformer": dict({"shared_embedding": True}, **(bitransformer or {})),
        "gin": ({"files": ["mtf/defaults.gin", gin_model_file], "bindings": gin_bindings}
                if gin_bindings else None),
        "patches": {},
    }


BI_MOE_ENCODER = [_sa(2), _moe1d(), _sa(2), _drd(16)]


BI_MOE_DECODER = [_sa(2), _encdec(2), _moe1d(), _sa(2), _encdec(2), _drd(16)]


BI_MOE_GIN = (["num_heads = 2"] + TINY_BINDINGS +
              ['MoE1D.second_policy_train = "all"', 'MoE1D.second_policy_eval = "all"',
               "num_layers = 1"])


CASES = {
    "lm_moe_1dev": _lm_case(
        "lm_moe.gin's stack (SelfAttention, MoE1D, SelfAttention, DenseReluDense) x 2 blocks, "
        "defaults.gin sublayers, shared embedding and softmax, padded targets; one device",
        _lm_moe_block(2), gin_bindings=_lm_moe_gin(2), seed=1),
    "lm_moe_2x2": _lm_case(
        "lm_moe_1dev's model on mesh batch:2,model:2 with defaults.gin's layout rules: batch and "
        "experts split on 'batch', heads / d_ff / vocab split on 'model'",
        _lm_moe_block(2), mesh_shape="batch:2,model:2", layout=DEFAULTS_GIN_LAYOUT,
        gin_bindings=_lm_moe_gin(2), seed=2),
    "lm_moe_2x4": _lm_case(
        "lm_moe stack with 4 heads on mesh batch:2,model:4 (layouts/2x2_dp_mp.gin's mesh) and "
        "defaults.gin's layout rules; MoE1D second-expert policy 'threshold' in train mode",
        _lm_moe_block(4, second_policy_train="threshold"), mesh_shape="batch:2,model:4",
        layout=DEFAULTS_GIN_LAYOUT,
        gin_bindings=_lm_moe_gin(4, ['MoE1D.second_policy_train = "threshold"']), seed=3),
    "lm_moe_2x4_experts_model": _lm_case(
        "lm_moe stack on mesh batch:2,model:4 with the experts split on 'model' (4 experts on 4 "
        "processors) and heads unsplit; packed targets (two sequences per row, segment ids and "
        "positions); smaller MoE groups (group_size 8)",
        _lm_moe_block(2, group_size=8), mesh_shape="batch:2,model:4",
        layout="batch:batch,experts:model,d_ff:model,vocab:model", data="packed",
        gin_bindings=_lm_moe_gin(2, ["MoE1D.group_size = 8"]), seed=4),
    "lm_moe2d_2x2": _lm_case(
        "MoE2D in the stack (SelfAttention, MoE2D, SelfAttention, DenseReluDense) x 2 with 2-D "
        "batch [outer_batch, batch] on mesh b0:2,b1:2, layout outer_batch:b0, batch:b1, "
        "expert_x:b1, expert_y:b0 (MoE2D is not gin-configurable in mtf: built in Python)",
        [_sa(2), ["MoE2D", {"expert_x": 2, "expert_y": 2, "hidden_size": 16, "group_size": 8,
                            "second_policy_train": "all", "second_policy_eval": "all"}],
         _sa(2), _drd(16)],
        mesh_shape="b0:2,b1:2",
        layout="outer_batch:b0,batch:b1,expert_x:b1,expert_y:b0",
        batch=(("outer_batch", 2), ("batch", 2)), seed=5,
        # mtf bug: MoE2D's HParams lack three attributes _top_2_gating reads; given MoE1D's defaults
        patches={"MoE2D._hparams": {"moe_min_expert_capacity": 4, "moe_z_loss": None,
                                    "moe_word_embed_mode": None}}),
    "lm_zloss_2x2": _lm_case(
        "lm_moe stack with a large softmax z_loss (Unitransformer.z_loss 1e-2) and the MoE router "
        "z-loss (MoE1D.z_loss 1e-3), second-place loss on; mesh batch:2,model:2",
        _lm_moe_block(2, z_loss=1e-3, use_second_place_loss=True), mesh_shape="batch:2,model:2",
        layout=DEFAULTS_GIN_LAYOUT, model={"z_loss": 1e-2},
        gin_bindings=_lm_moe_gin(2, ["Unitransformer.z_loss = 1e-2", "MoE1D.z_loss = 1e-3",
                                     "MoE1D.use_second_place_loss = True"]), seed=6),
    "lm_gated_separate_softmax": _lm_case(
        "dense LM, T5.1.1-style: gated DenseReluDense (activation ['gelu', 'linear']), separate "
        "embedding and softmax ('logits' variable), z_loss 0, vocab_divisor 1 (no vocab padding), "
        "and targets padded WITHOUT sequence_id (no padding mask, as mtf's unpacked LM training)",
        [_sa(2), _drd(16, activation=["gelu", "linear"])], data="padded_no_sequence_id",
        model={"shared_embedding_and_softmax_weights": False, "z_loss": 0.0, "vocab_divisor": 1},
        seed=7),
    "bi_moe_1dev": _bi_case(
        "bi_moe.gin's stacks (encoder SelfAttention, MoE1D, SelfAttention, DenseReluDense; decoder "
        "SelfAttention, EncDecAttention, MoE1D, SelfAttention, EncDecAttention, DenseReluDense), "
        "shared embedding (shared/embedding) used as the decoder softmax; one device",
        BI_MOE_ENCODER, BI_MOE_DECODER, gin_bindings=BI_MOE_GIN, seed=8,
        inputs_length=8, targets_length=6),
    "bi_moe_2x2": _bi_case(
        "bi_moe_1dev's model on mesh batch:2,model:2 with defaults.gin's layout rules, packed "
        "inputs and targets (segment ids and positions for both)",
        BI_MOE_ENCODER, BI_MOE_DECODER, mesh_shape="batch:2,model:2", layout=DEFAULTS_GIN_LAYOUT,
        gin_bindings=BI_MOE_GIN, seed=9, data="packed", inputs_length=8, targets_length=8),
    "t5_relbias_bi": _bi_case(
        "T5-style encoder-decoder (T5's models/bi_v1.gin: no positional embedding, SelfAttention "
        "relative_attention_type 'bias_shared', 32 buckets; shared embedding and softmax) with the "
        "legacy LayerStack (dropout_rate and norm_epsilon set) that gives the layer_norm / "
        "final_layer_norm names of released T5 checkpoints; encoder length 32 and decoder length "
        "16 so the log-spaced buckets are used; mesh batch:2,model:2",
        [_sa(2, relative_attention_type="bias_shared"), _drd(16)],
        [_sa(2, relative_attention_type="bias_shared"), _encdec(2), _drd(16)],
        mesh_shape="batch:2,model:2", layout=DEFAULTS_GIN_LAYOUT, batch=(("batch", 2),),
        inputs_length=32, targets_length=16, num_layers=2, seed=10,
        encoder={"positional_embedding": False}, decoder={"positional_embedding": False},
        stack={"mode": "legacy", "dropout_rate": 0.0, "norm_epsilon": 1e-6}),
    "bi_separate_embeddings": _bi_case(
        "Bitransformer(shared_embedding=False): encoder/embedding and decoder/embedding separate, "
        "decoder softmax a separate 'logits' variable; dense layers; gated-relu DenseReluDense "
        "(activation ['relu', 'linear']) with use_bias",
        [_sa(2), _drd(16, activation=["relu", "linear"], use_bias=True)],
        [_sa(2), _encdec(2), _drd(16, activation=["relu", "linear"], use_bias=True)],
        bitransformer={"shared_embedding": False},
        decoder={"shared_embedding_and_softmax_weights": False},
        batch=(("batch", 2),), seed=11),
}


CHECKPOINT_CASES = {
    "ckpt_lm_moe": dict(
        _lm_case("lm_moe-shaped LM (tiny sizes) trained 16 steps with mtf's Adafactor on a "
                 "deterministic next-token pattern (partly learnt, so greedy tokens depend on the "
                 "whole model), saved as mtf's training saves",
                 _lm_moe_block(2), gin_bindings=_lm_moe_gin(2), seed=21,
                 length=12, batch=(("batch", 4),)),
        train_steps=16),
    "ckpt_bi_moe": dict(
        _bi_case("bi_moe-shaped encoder-decoder (tiny sizes) trained 20 steps with mtf's Adafactor "
                 "on a deterministic map-each-token task, saved as mtf's training saves",
                 BI_MOE_ENCODER, BI_MOE_DECODER, gin_bindings=BI_MOE_GIN, seed=22,
                 inputs_length=8, targets_length=8, batch=(("batch", 4),)),
        train_steps=20),
}


def _segments(rng, length, packed):
    """Segment ids and positions of one row: 1 or 2 sequences then padding (0)."""
    seg = np.zeros(length, np.int32)
    pos = np.zeros(length, np.int32)
    if packed:
        first = rng.randint(2, length // 2 + 1)
        second = rng.randint(2, length - first + 1)
        lengths = [first, second]
    else:
        lengths = [rng.randint(length // 2, length + 1)]
    start = 0
    for sid, n in enumerate(lengths, 1):
        seg[start:start + n] = sid
        pos[start:start + n] = np.arange(n)
        start += n
    return seg, pos


def make_ids(rng, batch_shape, length, vocab, packing, full_first_row=True):
    """Token ids in [2, vocab) with padding 0; segment ids and positions (0 on padding)."""
    rows = int(np.prod(batch_shape))
    ids = rng.randint(2, vocab, size=(rows, length)).astype(np.int32)
    seg = np.zeros((rows, length), np.int32)
    pos = np.zeros((rows, length), np.int32)
    for r in range(rows):
        seg[r], pos[r] = _segments(rng, length, packing == "packed")
        if r == 0 and full_first_row and packing != "packed":  # one row without padding
            seg[r], pos[r] = 1, np.arange(length)
    ids *= (seg > 0)
    shape = list(batch_shape) + [length]
    return ids.reshape(shape), seg.reshape(shape), pos.reshape(shape)


def pattern_next(token, vocab):
    """The deterministic next-token rule the checkpoint models are trained on."""
    return 2 + ((token - 2) * 5 + 3) % (vocab - 2)


def pattern_ids(rng, rows, length, vocab, padded=True):
    ids = np.zeros((rows, length), np.int32)
    for r in range(rows):
        n = length if (not padded or r == 0) else rng.randint(length // 2, length + 1)
        t = rng.randint(2, vocab)
        for i in range(n):
            ids[r, i] = t
            t = pattern_next(t, vocab)
    return ids
