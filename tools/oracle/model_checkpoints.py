"""TF1 checkpoints of whole legacy models, written by the legacy code itself (mtf 0.1.21, t2t).

``--what mtf``: the model of a gin command line of ``tests/data/configs/gin_commands.json``
(built with mtf's gin and ``utils.build_model``, sizes shrunk with extra ``--gin_param`` s),
called once in eval mode on a one-device placement mesh, saved with ``tf.train.Saver``:
every variable under the name mtf gives it (``encoder/block_000/layer_001/MoE1D/...``).

``--what t2t``: tensor2tensor's own ``models/research/moe.py`` layers
(``transformer_moe_layer_v1`` and ``_v2``) called under the variable scopes
t2t's ``mtf_transformer`` gives them (``transformer/decoder/moe_3``,
``transformer/decoder/hmoe_7``), with hparams from a real set shrunk in size, saved
with the input, output and aux loss in a ``.npz`` beside the checkpoint.  That code was
written for mtf before tensorflow/mesh@49effef (September 2019), whose ``mtf.top_1``
returned ``(indices, values)``; mtf 0.1.21 returns ``(values, indices)``, so the tool gives
t2t's module the old order (unchanged, t2t's layer fails in ``one_hot``).

    /tmp/mtf-oracle/bin/python tools/oracle/model_checkpoints.py --what mtf \
        --command mtf_bi_moe_2x2_dp --out tests/data/ckpt/mtf_bi_moe_tiny
    /tmp/mtf-oracle/bin/python tools/oracle/model_checkpoints.py --what t2t \
        --t2t-site /tmp/t2t-site --out tests/data/ckpt/t2t_moe
"""

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

TINY_GIN = ["d_model = 16", "d_ff = 32", "num_heads = 2", "d_kv = 8", "num_layers = 2",
            "MoE1D.num_experts = 4", "MoE1D.hidden_size = 16", "MoE1D.group_size = 16",
            "MoE1D.second_policy_eval = 'all'", "Unitransformer.max_length = 16",
            "utils.run.mesh_shape = ''", "utils.run.layout_rules = ''",
            "utils.get_variable_dtype.activation_dtype = 'float32'"]


def mtf_model(args):
    import gin_model_dump as dump   # mtf + gin set up as the gin oracle does
    import mesh_tensorflow as mtf
    import numpy as np
    import tensorflow.compat.v1 as tf
    tf.disable_v2_behavior()
    dump.tf.flags.FLAGS(["model_checkpoints"])
    with open(args.commands) as f:
        cmd = json.load(f)["commands"][args.command]
    cmd = dict(cmd, params=cmd.get("params", []) + TINY_GIN)
    base = os.path.dirname(os.path.abspath(args.commands))
    cwd = os.getcwd()
    dump.gin.clear_config(clear_constants=True)
    os.chdir(base)
    try:
        dump._register_unknown([dump._read(cmd["mtf_defaults"])] + [dump._read(f) for f in
                                                                   cmd["files"]]
                               + cmd["params"])
        dump.gin.parse_config_file(cmd["mtf_defaults"])
        dump.gin.parse_config_files_and_bindings(cmd["files"], cmd["params"],
                                                 finalize_config=False)
        model = dump.utils.build_model(model_type=dump._query("utils.run.model_type"),
                                       input_vocab_size=32, output_vocab_size=32,
                                       layout_rules="", mesh_shape="")
    finally:
        os.chdir(cwd)
    graph = mtf.Graph()
    mesh = mtf.Mesh(graph, "m")
    b, l = mtf.Dimension("batch", 2), mtf.Dimension("length", 16)
    rng = np.random.RandomState(0)
    ids = rng.randint(1, 32, size=(2, 16)).astype(np.int32)
    imp = lambda a: mtf.import_tf_tensor(mesh, tf.constant(a), mtf.Shape([b, l]))  # noqa: E731
    kwargs = dict(targets=imp(np.roll(ids, -1, 1)), compute_loss=True, mode="eval",
                  variable_dtype=mtf.VariableDType(tf.float32))
    if hasattr(model, "encoder"):
        logits, loss = model.call_simple(inputs=imp(ids), **kwargs)
    else:
        logits, loss = model.call_simple(inputs=imp(ids), **kwargs)
    impl = mtf.placement_mesh_impl.PlacementMeshImpl(mtf.convert_to_shape(""),
                                                     mtf.convert_to_layout_rules(""), [""])
    lowering = mtf.Lowering(graph, {mesh: impl})
    tl = lowering.export_to_tf_tensor(loss)
    saver = tf.train.Saver()
    with tf.Session() as s:
        s.run(tf.global_variables_initializer())
        s.run(lowering.copy_masters_to_slices())
        value = s.run(tl)
        saver.save(s, args.out + ".ckpt", write_meta_graph=False, write_state=False)
    with open(args.out + ".json", "w") as f:
        json.dump({"command": args.command, "extra_gin_params": TINY_GIN, "loss": float(value),
                   "variables": sorted(v.name for v in graph.all_variables)}, f, indent=1)
    print(args.out, value)


def t2t_layers(args):
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "t2t"))
    import dump_hparams as t2t
    import mtf_shim  # noqa: F401  (mtf 0.1.21 on TF >= 2.16)
    sys.path.insert(0, args.t2t_site)
    sys.meta_path.insert(0, t2t._StubFinder())
    import types
    import tensor2tensor
    models = types.ModuleType("tensor2tensor.models")
    models.__path__ = [os.path.join(os.path.dirname(tensor2tensor.__file__), "models")]
    sys.modules["tensor2tensor.models"] = models
    import mesh_tensorflow as mtf
    import numpy as np
    import tensorflow.compat.v1 as tf
    from tensor2tensor.models.research import moe as t2t_moe
    from tensor2tensor.models.research import moe_experiments
    tf.disable_v2_behavior()
    # t2t's research/moe.py was written for mtf before tensorflow/mesh@49effef (Sep 2019), whose
    # top_1 returned (indices, values); mtf 0.1.21 returns (values, indices).  Run it as written:
    new_top_1 = mtf.top_1
    mtf.top_1 = lambda x, reduced_dim, name=None: new_top_1(x, reduced_dim, name)[::-1]
    cases = {
        # (scope as mtf_transformer names it, the layer, the real set its hparams come from)
        "v1": ("transformer/decoder/moe_7", t2t_moe.transformer_moe_layer_v1, "wiki_2x2_v1",
               {"moe_num_experts": 4, "moe_hidden_size": 16, "moe_group_size": 8,
                "moe_second_policy_eval": "all"}, "batch:2;length:8;d_model:8"),
        "v2": ("transformer/decoder/hmoe_7", t2t_moe.transformer_moe_layer_v2, "xmoe2_v1",
               {"moe_num_experts": [2, 2], "moe_hidden_size": 16, "moe_group_size": 8,
                "moe_second_policy_eval": "all"},
               "outer_batch:2;inner_batch:4;length:8;d_model:8"),
    }
    for name, (scope, fn, hparams_set, shrink, shape) in cases.items():
        graph = mtf.Graph()
        mesh = mtf.Mesh(graph, "m")
        hparams = getattr(moe_experiments, hparams_set)()
        for k, v in shrink.items():
            setattr(hparams, k, v)
        hparams.mesh_shape, hparams.layout = "", ""
        dims = [mtf.Dimension(*p.split(":")[:1], int(p.split(":")[1])) for p in shape.split(";")]
        rng = np.random.RandomState(7 if name == "v1" else 8)
        x = rng.standard_normal([d.size for d in dims]).astype(np.float32)
        tf.reset_default_graph()
        xt = mtf.import_tf_tensor(mesh, tf.constant(x), mtf.Shape(dims))
        with tf.variable_scope(scope):
            y, loss = fn(xt, dims[-1], hparams, False, master_dtype=tf.float32,
                         slice_dtype=tf.float32)
        impl = mtf.placement_mesh_impl.PlacementMeshImpl(mtf.convert_to_shape(""),
                                                         mtf.convert_to_layout_rules(""), [""])
        lowering = mtf.Lowering(graph, {mesh: impl})
        ty, tl = lowering.export_to_tf_tensor(y), lowering.export_to_tf_tensor(loss)
        saver = tf.train.Saver()
        prefix = "%s_%s" % (args.out, name)
        with tf.Session() as s:
            s.run(tf.global_variables_initializer())
            s.run(lowering.copy_masters_to_slices())
            yv, lv = s.run([ty, tl])
            saver.save(s, prefix + ".ckpt", write_meta_graph=False, write_state=False)
        values = {k: v for k, v in hparams.values().items()
                  if k.startswith("moe_") or k in ("mesh_shape", "layout")}
        np.savez(prefix + ".npz", x=x, y=yv, loss=lv, scope=scope, input_shape=shape,
                 hparams_set=hparams_set, hparams=json.dumps(values, sort_keys=True),
                 variables=json.dumps(sorted(v.name for v in graph.all_variables)))
        print(prefix, sorted(v.name for v in graph.all_variables), float(lv))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--what", choices=["mtf", "t2t"], required=True)
    parser.add_argument("--commands", default="tests/data/configs/gin_commands.json")
    parser.add_argument("--command", default="mtf_bi_moe_2x2_dp")
    parser.add_argument("--t2t-site", default="/tmp/t2t-site")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    (mtf_model if args.what == "mtf" else t2t_layers)(args)


if __name__ == "__main__":
    main()
