"""Dump tensor2tensor's mesh-tensorflow MoE hparams sets with tensor2tensor's own HParams.

Runs the registered hparams functions of ``tensor2tensor/models/research/moe_experiments.py``,
``models/mtf_transformer2.py`` and ``models/mtf_transformer.py`` (tensor2tensor 1.15.7, whose
hparams functions are identical to tensorflow/tensor2tensor@bafdc1b6) and writes, per set,
``HParams.to_json(indent=2, sort_keys=True)`` exactly as tensor2tensor produces it, plus an
``index.json`` saying which function made it, which t2t model runs it, and which attributes
the function assigned that the HParams object does not hold (``hparams.foo = x`` for a name
never added with ``add_hparam`` sets a Python attribute that ``values()`` / ``to_json()``
leave out, so tensor2tensor's model never sees it through them).

tensor2tensor is installed without its dependencies and imported with inert stand-ins for
the modules the hparams functions never touch (tensorflow_addons, gym, scipy, ...):

    python3 -m venv /tmp/mtf-oracle    # the oracle venv: tensorflow-cpu 2.21, mesh-tensorflow 0.1.21
    /tmp/mtf-oracle/bin/pip install --no-deps --target /tmp/t2t-site tensor2tensor==1.15.7
    /tmp/mtf-oracle/bin/python tools/t2t/dump_hparams.py --site /tmp/t2t-site \
        --out tests/data/configs/t2t
"""

import argparse
import importlib
import importlib.abc
import importlib.machinery
import json
import os
import sys
import types

STUBBED = ("tensorflow_addons", "tensorflow_probability", "gym", "tensorflow_gan",
           "tensorflow_hub", "dopamine", "gevent", "bz2file", "sympy", "mpmath", "kfac",
           "oauth2client", "googleapiclient", "flask", "cv2", "tf_slim", "tensorflow_datasets",
           "scipy", "h5py", "PIL", "matplotlib", "requests", "tqdm", "sklearn", "pandas",
           "gunicorn", "tensorflow.contrib", "tensor2tensor.utils.optimize")

# set -> (module, the t2t --model that runs it)
SETS = {
    "research.moe_experiments": {
        "mtf_transformer": ["xmoe_dense_4k", "xmoe_top_2", "xmoe_top_2_c15", "xmoe_2d",
                            "xmoe_2d_debug", "xmoe_2d_c15", "xmoe_2d_x64", "xmoe2_v1",
                            "xmoe2_v1_x128", "xmoe2_tiny", "xmoe2_v1_l4k",
                            "xmoe2_v1_l4k_local_only", "xmoe2_v1_l4k_global_only",
                            "xmoe2_v1_l4k_compressed_c4", "xmoe2_v1_l4k_compressed_c8",
                            "wiki_2x2_base", "wiki_2x2_v1", "wiki_2x2_local", "denoise_v1_m15",
                            "denoise_v1_t15"],
        "mtf_bitransformer": ["xmoe_tr_dense_2k", "xmoe_tr_1d", "xmoe_tr_2d"],
    },
    "mtf_transformer2": {
        "mtf_unitransformer": ["mtf_unitransformer_all_layers_tiny", "mtr_lm_v1",
                               "mtr_lm_v1_h1_8"],
        "mtf_bitransformer": ["mtf_bitransformer_all_layers_tiny"],
    },
    "mtf_transformer": {
        "mtf_transformer": ["mtf_transformer_base_lm"],
    },
}


class _Anything(types.ModuleType):
    __path__ = []

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return type(name, (), {"__init__": lambda self, *a, **k: None,
                               "__call__": lambda self, *a, **k: None})


class _StubFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname, path, target=None):
        if any(fullname == s or fullname.startswith(s + ".") for s in STUBBED):
            return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
        return None

    def create_module(self, spec):
        return _Anything(spec.name)

    def exec_module(self, module):
        pass


def _set_attributes(hparams):
    return {k for k in vars(hparams) if not k.startswith("_")}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--site", required=True, help="where tensor2tensor was pip-installed")
    parser.add_argument("--out", required=True)
    parser.add_argument("--oracle-shim", default=os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "..", "oracle"))
    args = parser.parse_args()
    sys.path.insert(0, args.oracle_shim)
    sys.path.insert(0, args.site)
    import mtf_shim  # noqa: F401  (mesh_tensorflow 0.1.21 on TF >= 2.16)
    sys.meta_path.insert(0, _StubFinder())
    import tensor2tensor
    models = types.ModuleType("tensor2tensor.models")   # skip models/__init__ (imports all)
    models.__path__ = [os.path.join(os.path.dirname(tensor2tensor.__file__), "models")]
    sys.modules["tensor2tensor.models"] = models
    os.makedirs(args.out, exist_ok=True)
    index = {"tensor2tensor": tensor2tensor.__version__ if hasattr(tensor2tensor, "__version__")
             else "1.15.7", "sets": {}}
    for module_name, by_model in SETS.items():
        module = importlib.import_module("tensor2tensor.models." + module_name)
        for model, names in by_model.items():
            for name in names:
                hparams = getattr(module, name)()
                text = hparams.to_json(indent=2, sort_keys=True)
                with open(os.path.join(args.out, name + ".json"), "w") as f:
                    f.write(text + "\n")
                held = set(hparams.values())
                index["sets"][name] = {
                    "function": "tensor2tensor/models/%s.py:%s" % (module_name.replace(".", "/"),
                                                                  name),
                    "t2t_model": model,
                    "attributes_not_held": sorted(_set_attributes(hparams) - held),
                }
                print(name, model, len(held))
    with open(os.path.join(args.out, "index.json"), "w") as f:
        json.dump(index, f, indent=2, sort_keys=True)
        f.write("\n")


if __name__ == "__main__":
    main()
