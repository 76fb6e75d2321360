"""Bad files: every reader and writer of namedmesh refuses them with a namedmesh error that names
the file (and, for syntax errors, file:line), never a raw TensorFlow, JSON or codec error.

Checkpoints are damaged copies of a real TF1 checkpoint (tests/data/ckpt/v1_model.ckpt); the
configs are small files written here.  "Read-only" is made real for root (which ignores
permission bits) with a path under a regular file, and with /sys where the kernel refuses
new files there.
"""
import os
import tempfile

import numpy as np
import pytest

import namedmesh as nm
from namedmesh.errors import ConfigError, FileError, NamedMeshError, WrongTypeError

P = nm.porting
DATA = os.path.join(os.path.dirname(__file__), "data")
CKPT = os.path.join(DATA, "ckpt", "v1_model.ckpt")
INDEX, SHARD = ".index", ".data-00000-of-00001"


@pytest.fixture(scope="module")
def tmp(tmp_path_factory):
    return tmp_path_factory.mktemp("robustness_files")


def damaged(tmp, name, index=None, data=None):
    """A copy of the v1 checkpoint with its index and/or data part changed: ``index`` /
    ``data`` map the original bytes to new ones (None: delete the part)."""
    prefix = os.path.join(str(tmp), name)
    for part, change in ((INDEX, index), (SHARD, data)):
        with open(CKPT + part, "rb") as f:
            content = f.read()
        if change is not False:
            content = change(content) if change is not None else None
        if content is not None:
            with open(prefix + part, "wb") as f:
                f.write(content)
    return prefix


KEEP = False
EMPTY = (lambda b: b"")
HALF = (lambda b: b[:len(b) // 2])
FLIPPED = (lambda b: bytes(x ^ 0x5A for x in b))


def write(tmp, name, text):
    path = os.path.join(str(tmp), name)
    with open(path, "wb" if isinstance(text, bytes) else "w") as f:
        f.write(text)
    return path


def a_file(tmp):
    return write(tmp, "a_regular_file", "not a directory\n")


def built_layer():
    layer = nm.moe.MoE1D(num_experts=4, hidden_size=8, group_size=4)
    layer.build("batch:2;length:4;d_model:8")
    return layer


GIN_OK = "MoE1D.num_experts = 4\n"

# (id, call(tmp), error type, words: "{tmp}" is replaced by the directory)
CASES = [
    # -- checkpoints: the index part --------------------------------------------------------
    ("checkpoint missing", lambda t: P.find_moe_layers(os.path.join(str(t), "nope")),
     FileError, ["{tmp}/nope", "cannot be read"]),
    ("checkpoint index empty", lambda t: P.find_moe_layers(damaged(t, "i_empty", index=EMPTY,
                                                                   data=KEEP)),
     FileError, ["i_empty", "i_empty.index", "truncated or corrupt"]),
    ("checkpoint index truncated", lambda t: P.find_moe_layers(damaged(t, "i_half", index=HALF,
                                                                       data=KEEP)),
     FileError, ["i_half.index"]),
    ("checkpoint index corrupt", lambda t: P.find_moe_layers(damaged(t, "i_flip",
                                                                     index=FLIPPED, data=KEEP)),
     FileError, ["i_flip.index"]),
    ("checkpoint index corrupt, read", lambda t: P.read_moe_variables(damaged(
        t, "i_flip2", index=FLIPPED, data=KEEP)), FileError, ["i_flip2"]),
    ("checkpoint index corrupt, pair", lambda t: P.pair_model_checkpoint(
        P.read_gin(write(t, "pair.gin", GIN_OK)), damaged(t, "i_flip3", index=FLIPPED,
                                                         data=KEEP)),
     FileError, ["i_flip3"]),
    ("checkpoint directory without checkpoints", lambda t: P.find_moe_layers(str(t)),
     FileError, ["{tmp}"]),
    ("checkpoint prefix None", lambda t: P.find_moe_layers(None), WrongTypeError, ["None"]),
    ("checkpoint prefix an int", lambda t: P.read_moe_variables(3), WrongTypeError, ["3"]),
    ("checkpoint scope an int", lambda t: P.read_moe_variables(CKPT, 3), WrongTypeError,
     ["3"]),
    ("checkpoint scope absent", lambda t: P.read_moe_variables(CKPT, "decoder/nope"),
     ConfigError, ["'decoder/nope/'", "<root>"]),
    # -- checkpoints: the data part -----------------------------------------------------------
    ("checkpoint data missing", lambda t: P.read_moe_variables(damaged(t, "d_none", index=KEEP,
                                                                       data=None)),
     FileError, ["d_none", "kernel", "missing, truncated or corrupt"]),
    ("checkpoint data empty", lambda t: P.read_moe_variables(damaged(t, "d_empty", index=KEEP,
                                                                     data=EMPTY)),
     FileError, ["d_empty", "kernel"]),
    ("checkpoint data truncated", lambda t: P.read_moe_variables(damaged(t, "d_half",
                                                                         index=KEEP,
                                                                         data=HALF)),
     FileError, ["d_half", "kernel"]),
    ("checkpoint data corrupt", lambda t: P.read_moe_variables(damaged(t, "d_flip", index=KEEP,
                                                                       data=FLIPPED)),
     FileError, ["d_flip", "kernel"]),
    ("checkpoint data truncated, load into a layer", lambda t: P.load_layer_from_checkpoint(
        nm.moe.MoE1D(num_experts=8, hidden_size=8, group_size=4),
        damaged(t, "d_half2", index=KEEP, data=HALF)), FileError, ["d_half2"]),
    ("checkpoint of another layer", lambda t: P.load_layer_from_checkpoint(
        nm.moe.MoE1D(num_experts=3, hidden_size=8, group_size=4), CKPT),
     ConfigError, ["top_2_gating/kernel", "(16, 8)"]),
    # -- saving ---------------------------------------------------------------------------------
    ("save into a missing directory", lambda t: P.save_layer_to_checkpoint(
        built_layer(), os.path.join(str(t), "no", "such", "dir", "ck")),
     FileError, ["{tmp}/no/such/dir", "does not exist"]),
    ("save under a regular file", lambda t: P.save_layer_to_checkpoint(
        built_layer(), os.path.join(a_file(t), "ck")),
     FileError, ["a_regular_file", "not a directory"]),
    ("save deeper under a regular file", lambda t: P.save_layer_to_checkpoint(
        built_layer(), os.path.join(a_file(t), "sub", "ck")),
     FileError, ["a_regular_file", "is a file"]),
    ("save an unbuilt layer", lambda t: P.save_layer_to_checkpoint(
        nm.moe.MoE1D(), os.path.join(str(t), "ub")), ConfigError, ["no variables"]),
    ("write_checkpoint of nothing", lambda t: P.write_checkpoint(os.path.join(str(t), "e"), {}),
     ConfigError, ["{}"]),
    ("write_checkpoint of an object", lambda t: P.write_checkpoint(
        os.path.join(str(t), "o"), {"w": object()}), WrongTypeError, ["'w'"]),
    ("write_checkpoint of a ragged list", lambda t: P.write_checkpoint(
        os.path.join(str(t), "r"), {"w": [[1, 2], [3]]}), WrongTypeError, ["'w'"]),
    ("write_checkpoint with an int name", lambda t: P.write_checkpoint(
        os.path.join(str(t), "n"), {1: np.ones(2)}), WrongTypeError, ["1"]),
    ("write_checkpoint with NaN", lambda t: P.write_checkpoint(
        os.path.join(str(t), "nan"), {"w": np.array([1.0, np.nan])}), ConfigError,
     ["'w'", "NaN"]),
    ("write_checkpoint prefix None", lambda t: P.write_checkpoint(None, {"w": np.ones(2)}),
     WrongTypeError, ["None"]),
    # -- gin files ----------------------------------------------------------------------------
    ("gin file missing", lambda t: P.read_gin(os.path.join(str(t), "nope.gin")), FileError,
     ["nope.gin", "not found"]),
    ("gin file is a directory", lambda t: P.read_gin(str(t)), FileError,
     ["{tmp}", "is a directory"]),
    ("gin file not UTF-8", lambda t: P.read_gin(write(
        t, "latin1.gin", b"MoE1D.num_experts = 4\n# caf\xe9\n")), FileError,
     ["latin1.gin", "not UTF-8", "0xe9", "line 2"]),
    ("gin file binary", lambda t: P.read_gin(write(t, "bin.gin", bytes(range(256)))),
     FileError, ["bin.gin", "not UTF-8"]),
    ("gin file empty", lambda t: P.read_gin(write(t, "empty.gin", "")), ConfigError,
     ["empty.gin", "neither a model"]),
    ("gin unclosed bracket", lambda t: P.read_gin(write(
        t, "ub.gin", 'MoE1D.num_experts = 4\nMoE1D.activation = ["relu",\n')),
     ConfigError, ["ub.gin:2", "'['", "never closed"]),
    ("gin unclosed parenthesis", lambda t: P.read_gin(write(
        t, "up.gin", "MoE1D.num_experts = 4\n\nMoE1D.group_size = (4,\n")),
     ConfigError, ["up.gin:3", "'('"]),
    ("gin unclosed brace", lambda t: P.read_gin(write(
        t, "uc.gin", "MoE1D.num_experts = {'a': 1\n")), ConfigError, ["uc.gin:1", "'{'"]),
    ("gin unclosed string", lambda t: P.read_gin(write(
        t, "us.gin", 'MoE1D.num_experts = 4\nMoE1D.second_policy_train = "all\n')),
     ConfigError, ["us.gin:2", "syntax error"]),
    ("gin statement without =", lambda t: P.read_gin(write(t, "eq.gin", "MoE1D.num_experts 4\n")),
     ConfigError, ["eq.gin:1", "syntax error"]),
    ("gin value not a literal", lambda t: P.read_gin(write(
        t, "lit.gin", GIN_OK + "MoE1D.capacity_factor_train = nan\n")),
     ConfigError, ["lit.gin:2", "'MoE1D.capacity_factor_train = nan'", "literal"]),
    ("gin unknown key", lambda t: P.read_gin(write(t, "uk.gin", "MoE1D.num_expertz = 4\n")),
     ConfigError, ["uk.gin:1", "'num_expertz'"]),
    ("gin value out of range", lambda t: P.read_gin(write(t, "neg.gin",
                                                          "MoE1D.num_experts = -4\n")),
     ConfigError, ["neg.gin:1", "-4"]),
    ("gin include missing", lambda t: P.read_gin(write(
        t, "inc.gin", "include 'nothere.gin'\n" + GIN_OK)), FileError,
     ["inc.gin:1", "'nothere.gin'"]),
    ("gin macro undefined", lambda t: P.read_gin(write(
        t, "mac.gin", "MoE1D.num_experts = %NOPE\n")), ConfigError, ["mac.gin:1", "%NOPE"]),
    ("gin param with an unclosed bracket", lambda t: P.read_gin(
        write(t, "ok.gin", GIN_OK), ["MoE1D.num_experts = ["]), ConfigError,
     ["--gin_param[1]", "'['"]),
    ("gin param not a string", lambda t: P.read_gin(write(t, "ok2.gin", GIN_OK), [3]),
     WrongTypeError, ["3"]),
    ("gin files an int", lambda t: P.read_gin(3), WrongTypeError, ["3"]),
    ("gin mesh typo", lambda t: P.read_gin(write(
        t, "mesh.gin", GIN_OK + "utils.run.mesh_shape = 'b0:2;b1'\n")), ConfigError,
     ["mesh.gin:2", "'b1'"]),
    ("gin layout typo", lambda t: P.read_gin(write(
        t, "lay.gin", GIN_OK + "utils.run.mesh_shape = 'b0:2'\n"
        "utils.run.layout_rules = 'batch'\n")), ConfigError, ["lay.gin:3", "'batch'"]),
    # -- JSON configs -----------------------------------------------------------------------
    ("hparams file missing", lambda t: P.read_hparams(os.path.join(str(t), "nope.json")),
     FileError, ["nope.json", "No such file"]),
    ("hparams file is a directory", lambda t: P.load_hparams(str(t)), FileError,
     ["{tmp}", "is a directory"]),
    ("hparams file empty", lambda t: P.read_hparams(write(t, "e.json", "")), ConfigError,
     ["e.json:1", "not valid JSON"]),
    ("hparams file truncated", lambda t: P.read_hparams(write(
        t, "tr.json", '{"moe_num_experts": 4,\n')), ConfigError, ["tr.json", "not valid JSON"]),
    ("hparams file a list", lambda t: P.read_hparams(write(t, "l.json", "[1, 2]")),
     ConfigError, ["l.json", "list"]),
    ("hparams file not UTF-8", lambda t: P.read_hparams(write(
        t, "enc.json", b'{"moe_num_experts": 4,\n "x": "\xff"}')), FileError,
     ["enc.json", "not UTF-8", "0xff", "line 2"]),
    ("hparams unknown moe key", lambda t: P.read_hparams(write(
        t, "uk.json", '{"moe_num_expertz": 4}')), ConfigError, ["uk.json:1", "'moe_num_expertz'"]),
    ("hparams NaN", lambda t: P.read_hparams(write(
        t, "nan.json", '{"moe_num_experts": 4, "moe_capacity_factor_train": NaN}')),
     ConfigError, ["nan.json:1", "capacity_factor_train", "nan"]),
    ("hparams Infinity", lambda t: P.read_hparams(write(
        t, "inf.json", '{"moe_num_experts": 4, "moe_loss_coef": Infinity}')),
     ConfigError, ["inf.json:1", "loss_coef", "inf"]),
    ("hparams wrong type", lambda t: P.read_hparams(write(
        t, "wt.json", '{"moe_num_experts": "four"}')), ConfigError, ["wt.json:1", "'four'"]),
    ("hparams path None", lambda t: P.read_hparams(None), ConfigError, ["NoneType"]),
    ("GPT-Neo config missing", lambda t: P.read_gpt_neo(os.path.join(str(t), "gn.json")),
     FileError, ["gn.json"]),
    ("GPT-Neo config a list", lambda t: P.read_gpt_neo(write(t, "gnl.json", "[1]")),
     ConfigError, ["gnl.json", "list"]),
    ("mtf BERT config not UTF-8", lambda t: P.read_mtf_bert(write(
        t, "bert_enc.json", b'{"hidden_size": 8, "x": "\xfe"}')), FileError,
     ["bert_enc.json", "not UTF-8"]),
    ("mtf BERT size a string", lambda t: P.read_mtf_bert(write(
        t, "bert.json", '{"hidden_size": "x"}')), ConfigError,
     ["bert.json:1", "hidden_size", "'x'"]),
    ("mtf BERT size zero", lambda t: P.read_mtf_bert(write(
        t, "bert0.json", '{"num_hidden_layers": 0}')), ConfigError,
     ["bert0.json:1", "num_hidden_layers", "0"]),
    ("read_config of a text file", lambda t: P.read_config(write(t, "x.txt", "")), ConfigError,
     ["x.txt", ".gin", ".json"]),
    ("read_config of None", lambda t: P.read_config(None), WrongTypeError, ["None"]),
    ("read_config of a missing JSON", lambda t: P.read_config(os.path.join(str(t), "m.json")),
     FileError, ["m.json"]),
]


@pytest.mark.parametrize("name,call,error,words", CASES, ids=[c[0] for c in CASES])
def test_bad_file_is_refused_by_name(tmp, name, call, error, words):
    with pytest.raises(error) as info:
        call(tmp)
    assert isinstance(info.value, NamedMeshError)
    message = str(info.value)
    for w in words:
        w = w.replace("{tmp}", str(tmp))
        assert w in message, "%r not in %r" % (w, message)


def _refuses_new_files(directory):
    try:
        with tempfile.TemporaryFile(dir=directory):
            return False
    except OSError:
        return True


@pytest.mark.skipif(not _refuses_new_files("/sys"), reason="/sys takes files here")
def test_save_into_a_directory_that_refuses_files():
    """A real read-only place for root: the kernel refuses new files in /sys."""
    with pytest.raises(FileError, match=r"'/sys/ck'.*'/sys' does not take new files"):
        P.save_layer_to_checkpoint(built_layer(), "/sys/ck")


def test_a_good_checkpoint_still_reads_and_round_trips(tmp):
    """The checks refuse damaged files only: the real checkpoint reads, and a layer saved to a
    fresh directory loads back."""
    arrays = P.read_moe_variables(CKPT)
    assert sorted(arrays) == ["top_2_gating/kernel", "wi/kernel", "wo/kernel"]
    layer = built_layer()
    os.makedirs(os.path.join(str(tmp), "fresh"), exist_ok=True)
    prefix = P.save_layer_to_checkpoint(layer, os.path.join(str(tmp), "fresh", "ck"))
    again = P.read_moe_variables(prefix)
    for name, var in layer.mtf_variables().items():
        np.testing.assert_array_equal(again[name], var.numpy())
