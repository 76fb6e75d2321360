"""tensor2tensor's mtf MoE hparams sets, dumped with tensor2tensor's own HParams
(tools/t2t/dump_hparams.py), ported as the t2t model that reads them.

Expected values are worked out by hand from tensor2tensor's hparams functions
(``models/research/moe_experiments.py``, ``models/mtf_transformer.py``,
``models/mtf_transformer2.py``, ``layers/common_hparams.py``; line numbers of
tensorflow/tensor2tensor@bafdc1b6).
"""
import json
import os

import numpy as np
import pytest

import namedmesh as nm
from namedmesh.porting import find_moe_layers, read_hparams, read_moe_variables

DATA = os.path.join(os.path.dirname(__file__), "data")
T2T = os.path.join(DATA, "configs", "t2t")
with open(os.path.join(T2T, "index.json")) as f:
    INDEX = json.load(f)["sets"]


def dump(name):
    return os.path.join(T2T, name + ".json")


# set_default_moe_hparams (research/moe.py:613): the keys every t2t MoE layer also reads
T2T_DEFAULTS = dict(group_size=1024, capacity_factor_train=1.25, capacity_factor_eval=2.0,
                    loss_coef=1e-2, use_second_place_loss=False, second_policy_train="random",
                    second_policy_eval="random", second_threshold_train=0.2,
                    second_threshold_eval=0.2)
# the rest of namedmesh's keywords are what t2t's layers hard-code: top_2 gating, relu experts,
# no dropout, no z-loss; v2's capacity floor is a hard-coded 4, v1 has none (1 is the same)
HMOE = dict(nm.moe.MoE2DConfig().to_kwargs(), **T2T_DEFAULTS, capacity_factor_second_level=1.0,
            min_expert_capacity=4)
MOE = dict(nm.moe.MoE1DConfig().to_kwargs(), **dict(T2T_DEFAULTS, min_expert_capacity=1))
XMOE2_MESH = ("b0:4;b1:8", "outer_batch:b0;inner_batch:b1,expert_x:b1,expert_y:b0")

# set: (mesh, layout, batch dims, length, d_model, MoE layers [(scope, kind)], MoE keywords)
EXPECTED = {
    "xmoe2_v1": (*XMOE2_MESH, [("outer_batch", 4), ("inner_batch", 32)], 1024, 1024,
                 [("decoder/hmoe_%d" % i, "MoE2D") for i in (7, 15, 23)],
                 dict(HMOE, expert_x=8, expert_y=4, hidden_size=32768)),
    "xmoe2_v1_x128": ("b0:8;b1:16", XMOE2_MESH[1], [("outer_batch", 8), ("inner_batch", 64)],
                      1024, 1024, [("decoder/hmoe_%d" % i, "MoE2D") for i in (7, 15, 23)],
                      dict(HMOE, expert_x=16, expert_y=8, hidden_size=32768)),
    "xmoe2_v1_l4k": (*XMOE2_MESH, [("outer_batch", 4), ("inner_batch", 8)], 4096, 1024,
                     [("decoder/hmoe_%d" % i, "MoE2D") for i in (7, 15, 23)],
                     dict(HMOE, expert_x=8, expert_y=4, hidden_size=32768)),
    "xmoe2_v1_l4k_local_only": (*XMOE2_MESH, [("outer_batch", 4), ("inner_batch", 8)], 4096,
                                1024, [("decoder/hmoe_%d" % i, "MoE2D") for i in (7, 15, 23)],
                                dict(HMOE, expert_x=8, expert_y=4, hidden_size=32768)),
    "xmoe2_v1_l4k_global_only": (*XMOE2_MESH, [("outer_batch", 4), ("inner_batch", 8)], 4096,
                                 1024, [("decoder/hmoe_%d" % i, "MoE2D") for i in (7, 15, 23)],
                                 dict(HMOE, expert_x=8, expert_y=4, hidden_size=32768)),
    "xmoe2_v1_l4k_compressed_c4": (*XMOE2_MESH, [("outer_batch", 4), ("inner_batch", 8)], 4096,
                                   1024, [("decoder/hmoe_%d" % i, "MoE2D") for i in (7, 15, 23)],
                                   dict(HMOE, expert_x=8, expert_y=4, hidden_size=32768)),
    "xmoe2_v1_l4k_compressed_c8": (*XMOE2_MESH, [("outer_batch", 4), ("inner_batch", 8)], 4096,
                                   1024, [("decoder/hmoe_%d" % i, "MoE2D") for i in (7, 15, 23)],
                                   dict(HMOE, expert_x=8, expert_y=4, hidden_size=32768)),
    "xmoe2_tiny": ("", XMOE2_MESH[1], [("batch", 2)], 1024, 128, [("decoder/hmoe_4", "MoE2D")],
                   dict(HMOE, expert_x=8, expert_y=4, hidden_size=512)),
    "denoise_v1_m15": (*XMOE2_MESH, [("outer_batch", 4), ("inner_batch", 32)], 1024, 1024,
                       [("decoder/hmoe_%d" % i, "MoE2D") for i in (7, 15, 23)],
                       dict(HMOE, expert_x=8, expert_y=4, hidden_size=32768)),
    "denoise_v1_t15": (*XMOE2_MESH, [("outer_batch", 4), ("inner_batch", 32)], 1024, 1024,
                       [("decoder/hmoe_%d" % i, "MoE2D") for i in (7, 15, 23)],
                       dict(HMOE, expert_x=8, expert_y=4, hidden_size=32768)),
    "xmoe_2d": ("b0:2;b1:4", XMOE2_MESH[1], [("outer_batch", 4), ("inner_batch", 32)], 256, 512,
                [("decoder/hmoe_%d" % i, "MoE2D") for i in (1, 3, 5, 7)],
                dict(HMOE, expert_x=4, expert_y=4, hidden_size=4096)),
    "xmoe_2d_c15": ("b0:2;b1:4", XMOE2_MESH[1], [("outer_batch", 4), ("inner_batch", 32)], 256,
                    512, [("decoder/hmoe_%d" % i, "MoE2D") for i in (1, 3, 5, 7)],
                    dict(HMOE, expert_x=4, expert_y=4, hidden_size=4096,
                         capacity_factor_train=1.5)),
    "xmoe_2d_debug": ("b0:2;b1:4", XMOE2_MESH[1], [("outer_batch", 4), ("inner_batch", 32)],
                      256, 512, [("decoder/hmoe_0", "MoE2D")],
                      dict(HMOE, expert_x=4, expert_y=4, hidden_size=4096)),
    "xmoe_2d_x64": ("b0:2;b1:4", XMOE2_MESH[1], [("outer_batch", 4), ("inner_batch", 32)], 256,
                    512, [("decoder/hmoe_%d" % i, "MoE2D") for i in (1, 3, 5, 7)],
                    dict(HMOE, expert_x=8, expert_y=8, hidden_size=4096)),
    "wiki_2x2_v1": ("all:8", "batch:all;experts:all", [("batch", 32)], 1024, 1024,
                    [("decoder/moe_%d" % i, "MoE1D") for i in (7, 15, 23)],
                    dict(MOE, num_experts=16, hidden_size=8192)),
    # xmoe_top_2 sets every MoE hparam and the MoE mesh, but its decoder_layers stay
    # ["att", "drd"] (from xmoe_dense_4k) and mtf_transformer never reads feedforward_layer
    "xmoe_top_2": ("all:8", "batch:all;experts:all", [("batch", 128)], 256, 512, [], {}),
    "xmoe_top_2_c15": ("all:8", "batch:all;experts:all", [("batch", 128)], 256, 512, [], {}),
    "wiki_2x2_base": ("all:8", "batch:all;experts:all", [("batch", 32)], 1024, 1024, [], {}),
    "wiki_2x2_local": ("all:8", "batch:all;experts:all", [("batch", 32)], 1024, 1024, [], {}),
    "xmoe_dense_4k": ("batch:8", "batch:batch;vocab:model;d_ff:model;heads:model",
                      [("batch", 128)], 256, 512, [], {}),
    "mtf_transformer_base_lm": ("model:8", "batch:batch;vocab:model;d_ff:model;heads:model",
                                [("batch", 64)], 256, 512, [], {}),
    # mtf_transformer2: moe_1d / moe_2d pass only the expert counts and hidden size
    "mtr_lm_v1": (*XMOE2_MESH, [("outer_batch", 4), ("inner_batch", 32)], 1024, 1024,
                  [("transformer/moe_2d", "MoE2D")] * 3,
                  dict(nm.moe.MoE2DConfig().to_kwargs(), expert_x=8, expert_y=4,
                       hidden_size=32768)),
    "mtr_lm_v1_h1_8": (*XMOE2_MESH, [("outer_batch", 4), ("inner_batch", 32)], 1024, 1024,
                       [("transformer/moe_2d", "MoE2D")] * 3,
                       dict(nm.moe.MoE2DConfig().to_kwargs(), expert_x=8, expert_y=4,
                            hidden_size=32768)),
    "xmoe_tr_1d": ("batch:8", "batch:batch;experts:batch", [("batch", 64)], 256, 1024,
                   [("encoder/moe_1d", "MoE1D")] * 4 + [("decoder/moe_1d", "MoE1D")] * 4,
                   dict(nm.moe.MoE1DConfig().to_kwargs(), num_experts=16, hidden_size=2048)),
    # xmoe_tr_2d assigns moe_experts_x / _y, names the HParams do not hold (index.json):
    # mtf_bitransformer reads moe_expert_x / _y, still 8 and 4 from mtf_transformer2_base
    "xmoe_tr_2d": ("b0:2;b1:4", XMOE2_MESH[1], [("outer_batch", 4), ("inner_batch", 16)], 256,
                   1024, [("encoder/moe_2d", "MoE2D")] * 4 + [("decoder/moe_2d", "MoE2D")] * 4,
                   dict(nm.moe.MoE2DConfig().to_kwargs(), expert_x=8, expert_y=4,
                        hidden_size=2048)),
    "xmoe_tr_dense_2k": ("batch:8", "batch:batch;vocab:model;d_ff:model;heads:model",
                         [("batch", 64)], 256, 1024, [], {}),
    "mtf_unitransformer_all_layers_tiny": (
        "", "batch:batch;vocab:model;d_ff:model;heads:model", [("batch", 2)], 1024, 128,
        [("transformer/moe_1d", "MoE1D"), ("transformer/moe_2d", "MoE2D")], None),
    "mtf_bitransformer_all_layers_tiny": (
        "", "batch:batch;vocab:model;d_ff:model;heads:model", [("batch", 2)], 256, 128,
        [("encoder/moe_1d", "MoE1D"), ("encoder/moe_2d", "MoE2D"),
         ("decoder/moe_1d", "MoE1D"), ("decoder/moe_2d", "MoE2D")], None),
}
TINY_ALL_LAYERS = {"MoE1D": dict(nm.moe.MoE1DConfig().to_kwargs(), num_experts=4,
                                 hidden_size=512),
                   "MoE2D": dict(nm.moe.MoE2DConfig().to_kwargs(), expert_x=4, expert_y=4,
                                 hidden_size=512)}


def test_every_dumped_set_is_checked():
    assert sorted(EXPECTED) == sorted(INDEX)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_set_ports_with_its_moe_layers_mesh_and_layout(name):
    mesh, layout, batch, length, d_model, moe_layers, kwargs = EXPECTED[name]
    config = read_hparams(dump(name))
    assert config.model.model_type == INDEX[name]["t2t_model"]   # recognised from the keys
    assert (config.mesh_shape, config.layout) == (mesh, layout)
    assert config.model.batch_dims == batch
    assert [(l.scope, l.kind) for l in config.layers] == moe_layers
    shape = ";".join("%s:%d" % d for d in batch) + ";length:%d;d_model:%d" % (length, d_model)
    for layer in config.layers:
        assert layer.input_shape == shape
        expected = TINY_ALL_LAYERS[layer.kind] if kwargs is None else kwargs
        assert layer.build().config.to_kwargs() == expected, layer.scope


def test_xmoe2_v1_layer_kinds_in_order_and_sizes():
    config = read_hparams(dump("xmoe2_v1"))
    model = config.model
    assert (model.kind, model.encoder) == ("Unitransformer", None)   # transformer_type decoder
    unit = model.decoder
    # moe_experiments.py:300-302: (local, local, drd, att, drd, local, local, hmoe) * 4, minus
    # the last layer
    block = ["LocalSelfAttention", "LocalSelfAttention", "DenseReluDense", "SelfAttention",
             "DenseReluDense", "LocalSelfAttention", "LocalSelfAttention", "MoE2D"]
    assert [l.kind for l in unit.layer_stack.layers] == (block * 4)[:-1]
    assert [l.scope for l in unit.layer_stack.layers][:8] == [
        "local_att_0", "local_att_1", "drd_2", "att_3", "drd_4", "local_att_5", "local_att_6",
        "hmoe_7"]
    local, _, drd, att = unit.layer_stack.layers[:4]
    assert (att.config.num_heads, att.config.key_value_size) == (4, 128)   # :313, :303
    assert local.config.radius == 128            # local_attention_window_size
    assert drd.config.hidden_size == 2048        # :302
    assert unit.d_model == 1024 and unit.max_length == 1024
    stack = unit.layer_stack                     # t2t's stack: norm, layer, dropout, residual
    assert (stack.dropout_rate, stack.norm_epsilon) == (0.0, 1e-06)
    assert unit.layer_stack.layers[7].variable_scope == "transformer/decoder/hmoe_7/"
    assert config.layers[0].implementation.endswith("research.moe.transformer_moe_layer_v2")


def test_mtr_lm_v1_layer_kinds_in_order_and_sizes():
    config = read_hparams(dump("mtr_lm_v1"))
    unit = config.model.decoder
    block = ["LocalSelfAttention", "LocalSelfAttention", "DenseReluDense", "SelfAttention",
             "DenseReluDense", "LocalSelfAttention", "LocalSelfAttention", "MoE2D"]
    assert [l.kind for l in unit.layer_stack.layers] == (block * 4)[:-1]   # :637-639
    att = unit.layer_stack.layers[3].config
    assert (att.num_heads, att.num_memory_heads, att.key_value_size) == (8, 0, 128)
    assert att.attention_kwargs == {"dropout_rate": 0.0, "extra_logit": None}
    assert unit.layer_stack.layers[0].config.radius == 128    # local_attention_radius
    assert unit.layer_stack.layers[2].config.hidden_size == 2048
    assert unit.name == "transformer" and unit.autoregressive
    assert config.layers[0].variable_scope == "transformer//MoE2D/"   # unnamed in mtf 0.1.21
    assert any("share their variables" in r for r in config.reports)
    assert any("min_expert_capacity=4" in r for r in config.reports)
    ignored = {i.text.split(" = ")[0]: i.reason for i in config.ignored}
    # mtf_transformer2's moe_2d layer never reads the moe_* keys of basic_params1 / the set
    for key in ("moe_num_experts", "moe_loss_coef", "moe_k", "moe_hidden_sizes"):
        assert key in ignored, key
    assert "non-mtf MoE" in ignored["moe_k"]


def test_layer_kind_comes_from_the_layer_list_not_from_a_value():
    values = json.load(open(dump("xmoe2_v1")))
    # hmoe reads moe_num_experts as [x, y]; an int is an error naming the key, not an MoE1D
    with pytest.raises(nm.ConfigError, match=r"moe_num_experts = 16: the 'hmoe' layer"):
        read_hparams(dict(values, moe_num_experts=16))
    # 'moe' reads one expert count: a list is an error, not an MoE2D
    wiki = json.load(open(dump("wiki_2x2_v1")))
    with pytest.raises(nm.ConfigError, match=r"moe_num_experts = \[4, 4\]: the 'moe' layer"):
        read_hparams(dict(wiki, moe_num_experts=[4, 4]))
    # moe_* keys alone make no MoE layer (xmoe_top_2 above): only the layer list does
    assert read_hparams(dump("wiki_2x2_base")).layers == []


def test_hparams_objects_values_dicts_and_to_json_dumps():
    text = open(dump("mtr_lm_v1")).read()
    values = json.loads(text)

    class HParams:   # the interface of tensor2tensor's HParams that the reader uses
        def __init__(self, values):
            self._values = values

        def values(self):
            return dict(self._values)

        def to_json(self, indent=None, separators=None, sort_keys=False):
            return json.dumps(self._values, indent=indent, sort_keys=sort_keys)

    class DumpOnly:
        def to_json(self):
            return text

    # .values() holds callables too (mtf_transformer2_base's bottom/top modalities)
    with_callables = dict(values, bottom={"inputs": len}, top={"targets": len})
    ports = [read_hparams(dump("mtr_lm_v1")), read_hparams(values),
             read_hparams(with_callables), read_hparams(HParams(values)),
             read_hparams(DumpOnly())]
    expected = [(l.scope, l.build().config.to_kwargs()) for l in ports[0].layers]
    for config in ports[1:]:
        assert [(l.scope, l.build().config.to_kwargs()) for l in config.layers] == expected
    ignored = {i.text.split(" = ")[0]: i.text for i in ports[2].ignored}
    assert ignored["bottom"] == "bottom = <functions>"


def test_t2t_research_moe_checkpoints_load_and_compute_what_t2t_computed():
    # t2t's own research/moe.py layers ran under the scopes mtf_transformer gives them and
    # saved their weights, input and output (tools/oracle/model_checkpoints.py)
    for version, kind in (("v1", "MoE1D"), ("v2", "MoE2D")):
        case = np.load(os.path.join(DATA, "ckpt", "t2t_moe_%s.npz" % version))
        prefix = os.path.join(DATA, "ckpt", "t2t_moe_%s.ckpt" % version)
        (found,) = find_moe_layers(prefix)
        assert (found.scope, found.kind, found.naming) == (str(case["scope"]) + "/", kind,
                                                           "t2t_" + version)
        values = json.load(open(dump(str(case["hparams_set"]))))
        values.update(json.loads(str(case["hparams"])), d_model=8)   # the sizes it ran with
        config = read_hparams(values)
        layer = next(l for l in config.layers
                     if l.variable_scope == str(case["scope"]) + "/").build()
        layer.load_mtf_variables(read_moe_variables(prefix, str(case["scope"])))
        shape = nm.convert_to_shape(str(case["input_shape"]))
        y, loss = layer(nm.import_tf_tensor(nm.Mesh("", ""), case["x"], shape))
        np.testing.assert_allclose(nm.export_to_tf_tensor(y).numpy(), case["y"], atol=2e-5,
                                   rtol=0)
        np.testing.assert_allclose(nm.export_to_tf_tensor(loss).numpy(), case["loss"],
                                   atol=2e-5)


def test_bad_hparams_name_the_key_and_line(tmp_path):
    values = json.load(open(dump("xmoe2_v1")))
    path = tmp_path / "h.json"
    path.write_text(json.dumps(dict(values, decoder_layers=["att", "hmoe", "moe2"]), indent=2,
                               sort_keys=True))
    line = next(i for i, l in enumerate(path.read_text().splitlines(), 1)
                if '"decoder_layers"' in l)
    with pytest.raises(nm.ConfigError, match=r"h.json:%d .*decoder_layers\[2\] = 'moe2'.*"
                                             r"layer_type not recognized" % line):
        read_hparams(str(path))
    path.write_text(json.dumps(dict(values, moe_hidden_size="big"), indent=2, sort_keys=True))
    with pytest.raises(nm.ConfigError, match=r"h.json:\d+ \(moe_hidden_size\).*'big'.*int"):
        read_hparams(str(path))
    del values["d_kv"]
    with pytest.raises(nm.ConfigError, match=r"no hparam 'd_kv'.*mtf_transformer reads"):
        read_hparams(values)
    with pytest.raises(nm.ConfigError, match="cannot tell which tensor2tensor model"):
        read_hparams({"d_model": 8, "decoder_layers": ["drd"]})
