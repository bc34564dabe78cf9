"""ONNX import: small graphs built with onnx.helper, checked against hand counts, and the
torchvision fixtures (tests/fixtures/onnx, made by workloads/export_onnx_fixtures.py) checked
against the zoo networks of the same name."""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from wavecore_sim.cli import main
from wavecore_sim.errors import WavecoreError
from wavecore_sim.workload import load_network

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

FIXTURES = Path(__file__).parent / "fixtures" / "onnx"


def make_model(
    path: Path,
    nodes,
    weights: dict[str, tuple],
    shape=(1, 8, 16, 16),
    out_dims=None,
    consts: dict[str, np.ndarray] | None = None,
    opset: int = 20,
) -> Path:
    """A model with input 'x' of ``shape`` (batch 'N'), zero weights of the given shapes and
    one output 'y' (the last node's output)."""
    inits = [numpy_helper.from_array(np.zeros(s, dtype=np.float32), n) for n, s in weights.items()]
    inits += [numpy_helper.from_array(v, n) for n, v in (consts or {}).items()]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", *shape[1:]])
    y = helper.make_tensor_value_info(nodes[-1].output[0], TensorProto.FLOAT, out_dims)
    graph = helper.make_graph(nodes, "g", [x], [y], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    path.write_bytes(model.SerializeToString())
    return path


def head(src: str, classes: int = 10, channels: int = 8) -> tuple[list, dict]:
    """GlobalAveragePool -> Flatten -> Gemm(channels -> classes, transB, bias)."""
    return (
        [
            helper.make_node("GlobalAveragePool", [src], ["gp"], name="gap"),
            helper.make_node("Flatten", ["gp"], ["fl"], name="flat"),
            helper.make_node("Gemm", ["fl", "fcw", "fcb"], ["y"], name="fc", transB=1),
        ],
        {"fcw": (classes, channels), "fcb": (classes,)},
    )


def by_name(net):
    return {ly.name: ly for ly in net.layers}


def test_grouped_strided_padded_dilated_conv_matches_hand_count(tmp_path):
    nodes, w = head("c", channels=16)
    nodes = [
        helper.make_node(
            "Conv",
            ["x", "cw", "cb"],
            ["c"],
            name="conv",
            group=2,
            strides=[2, 2],
            pads=[2, 2, 2, 2],
            dilations=[2, 2],
        ),
        *nodes,
    ]
    net = load_network(
        str(make_model(tmp_path / "m.onnx", nodes, {"cw": (16, 4, 3, 3), "cb": (16,), **w}))
    )
    conv = by_name(net)["conv"]
    # Ho = floor((16 + 2*2 - 2*(3-1) - 1) / 2) + 1 = 8
    assert conv.out_shape == (16, 8, 8)
    assert (conv.groups, conv.stride, conv.padding, conv.dilation, conv.bias) == (
        2,
        (2, 2),
        (2, 2),
        (2, 2),
        True,
    )
    assert conv.params == 16 * 4 * 9 + 16  # Cout * Cin/g * kh*kw + bias = 592
    assert conv.macs_per_sample == 8 * 8 * 16 * 4 * 9  # Ho*Wo*Cout*Cin/g*kh*kw = 36,864
    fc = by_name(net)["fc"]
    assert (fc.kind, fc.out_shape, fc.params, fc.macs_per_sample) == ("fc", (10, 1, 1), 170, 160)
    assert [ly.kind for ly in net.layers] == ["conv", "gap", "fc", "loss"]
    assert net.params == 592 + 170


def test_depthwise_norm_activations_pools_and_matmul_bias(tmp_path):
    nodes = [
        helper.make_node("Conv", ["x", "dw"], ["a"], name="dw", group=8, pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["a", "s", "b", "m", "v"], ["bn"], name="bn"),
        helper.make_node("Clip", ["bn", "lo", "hi"], ["r6"], name="relu6"),
        helper.make_node("HardSwish", ["r6"], ["hs"], name="hswish"),
        helper.make_node("HardSigmoid", ["hs"], ["hsig"], name="hsig", alpha=1 / 6),
        helper.make_node("Gelu", ["hsig"], ["ge"], name="gelu"),
        helper.make_node("Sigmoid", ["ge"], ["sg"], name="sig"),
        helper.make_node("Mul", ["ge", "sg"], ["si"], name="silu"),  # x * sigmoid(x)
        helper.make_node("Relu", ["si"], ["re"], name="relu"),
        helper.make_node(
            "MaxPool",
            ["re"],
            ["mp"],
            name="maxpool",
            kernel_shape=[3, 3],
            strides=[2, 2],
            pads=[1, 1, 1, 1],
        ),
        helper.make_node(
            "AveragePool", ["mp"], ["ap"], name="avgpool", kernel_shape=[2, 2], strides=[2, 2]
        ),
        helper.make_node("Dropout", ["ap"], ["do"], name="drop"),
        helper.make_node("Identity", ["do"], ["id"], name="ident"),
        helper.make_node("GlobalAveragePool", ["id"], ["gp"], name="gap"),
        helper.make_node("Flatten", ["gp"], ["fl"], name="flat"),
        helper.make_node("MatMul", ["fl", "fw"], ["mm"], name="fc"),
        helper.make_node("Add", ["mm", "fb"], ["y"], name="fc_bias"),
    ]
    consts = {"lo": np.array(0, np.float32), "hi": np.array(6, np.float32)}
    weights = {
        "dw": (8, 1, 3, 3),
        "s": (8,),
        "b": (8,),
        "m": (8,),
        "v": (8,),
        "fw": (8, 4),
        "fb": (4,),
    }
    net = load_network(str(make_model(tmp_path / "m.onnx", nodes, weights, consts=consts)))
    kinds = [(ly.kind, ly.function) for ly in net.layers]
    assert kinds == [
        ("conv", ""),
        ("norm", ""),
        ("act", "relu6"),
        ("act", "hardswish"),
        ("act", "hardsigmoid"),
        ("act", "gelu"),
        ("act", "silu"),
        ("relu", ""),
        ("maxpool", ""),
        ("avgpool", ""),
        ("gap", ""),
        ("fc", ""),
        ("loss", ""),
    ]
    layers = by_name(net)
    assert layers["dw"].groups == 8 and layers["dw"].params == 8 * 9  # one 3x3 per channel
    assert layers["dw"].macs_per_sample == 16 * 16 * 8 * 9  # Ho*Wo*C*kh*kw = 18,432
    assert layers["bn"].params == 2 * 8  # scale and shift
    assert layers["maxpool"].out_shape == (8, 8, 8)  # floor((16 + 2 - 3)/2) + 1
    assert layers["avgpool"].out_shape == (8, 4, 4)
    assert layers["fc"].bias and layers["fc"].params == 8 * 4 + 4  # MatMul + folded Add
    assert net.params == 72 + 16 + 36


def test_squeeze_excite_residual_concat_and_channel_last_layernorm(tmp_path):
    nodes = [
        helper.make_node("Conv", ["x", "c1"], ["a"], name="conv"),
        # squeeze-and-excitation: x * sigmoid(fc2(relu(fc1(gap(x)))))
        helper.make_node("GlobalAveragePool", ["a"], ["sq"], name="se.pool"),
        helper.make_node("Conv", ["sq", "f1", "f1b"], ["e1"], name="se.fc1"),
        helper.make_node("Relu", ["e1"], ["e2"], name="se.relu"),
        helper.make_node("Conv", ["e2", "f2", "f2b"], ["e3"], name="se.fc2"),
        helper.make_node("Sigmoid", ["e3"], ["e4"], name="se.sigmoid"),
        helper.make_node("Mul", ["a", "e4"], ["se"], name="se.mul"),
        helper.make_node("Add", ["se", "a"], ["res"], name="residual"),
        helper.make_node("Concat", ["res", "a"], ["cat"], name="concat", axis=1),
        # ConvNeXt-style: permute to NHWC, LayerNorm over C, Linear, permute back, layer scale
        helper.make_node("Transpose", ["cat"], ["t1"], name="to_nhwc", perm=[0, 2, 3, 1]),
        helper.make_node(
            "LayerNormalization", ["t1", "lnw", "lnb"], ["ln"], name="ln", axis=-1, epsilon=1e-6
        ),
        helper.make_node("MatMul", ["ln", "pw"], ["pm"], name="pw"),
        helper.make_node("Add", ["pm", "pb"], ["pa"], name="pw_bias"),
        helper.make_node("Transpose", ["pa"], ["t2"], name="to_nchw", perm=[0, 3, 1, 2]),
        helper.make_node("Mul", ["gamma", "t2"], ["ls"], name="layer_scale"),
        helper.make_node("Reshape", ["ls", "shape"], ["rs"], name="reshape"),
        helper.make_node("GlobalAveragePool", ["rs"], ["gp"], name="gap"),
        helper.make_node("Flatten", ["gp"], ["fl"], name="flat"),
        helper.make_node("Gemm", ["fl", "fcw"], ["y"], name="fc", transB=1),
    ]
    weights = {
        "c1": (8, 8, 1, 1),
        "f1": (2, 8, 1, 1),
        "f1b": (2,),
        "f2": (8, 2, 1, 1),
        "f2b": (8,),
        "lnw": (16,),
        "lnb": (16,),
        "pw": (16, 32),
        "pb": (32,),
        "gamma": (32, 1, 1),
        "fcw": (10, 32),
    }
    consts = {"shape": np.array([-1, 32, 16, 16], np.int64)}
    net = load_network(str(make_model(tmp_path / "m.onnx", nodes, weights, consts=consts)))
    layers = by_name(net)
    mul = layers["se.mul"]
    assert mul.kind == "mul" and mul.in_shapes == ((8, 16, 16), (8, 1, 1))
    assert layers["residual"].kind == "add" and layers["concat"].out_shape == (16, 16, 16)
    ln = layers["ln"]
    assert (ln.kind, ln.out_shape, ln.params) == ("layernorm", (16, 16, 16), 32)
    pw = layers["pw"]  # Linear over the channels of an NHWC tensor = a 1x1 conv
    assert (pw.kind, pw.kernel, pw.bias, pw.out_shape) == ("conv", (1, 1), True, (32, 16, 16))
    assert pw.params == 16 * 32 + 32 and pw.macs_per_sample == 16 * 16 * 16 * 32
    assert (layers["layer_scale"].kind, layers["layer_scale"].params) == ("scale", 32)
    # conv 64 + fc1 18 + fc2 24 + ln 32 + pw 544 + scale 32 + fc 320 (no bias)
    assert net.params == 64 + 18 + 24 + 32 + 544 + 32 + 320


@pytest.mark.parametrize(
    "name", ["resnet50", "mobilenet_v2", "efficientnet_b0", "resnext50_32x4d", "convnext_tiny"]
)
def test_torchvision_export_imports_to_the_zoo_network(name):
    """Same layers (kind, shapes, parameters, MACs, attributes), parameters and MACs."""
    imported = load_network(str(FIXTURES / f"{name}.onnx"))
    zoo = load_network(name)
    assert imported.params == zoo.params
    assert imported.fwd_macs_per_sample == zoo.fwd_macs_per_sample

    def signature(net):
        return Counter(
            (
                ly.kind,
                ly.function,
                ly.in_shapes,
                ly.out_shape,
                ly.params,
                ly.macs_per_sample,
                ly.kernel,
                ly.stride,
                ly.padding,
                ly.groups,
                ly.bias,
            )
            for ly in net.layers
        )

    assert signature(imported) == signature(zoo)


def test_import_command_writes_json_equal_to_loading_the_onnx(tmp_path, capsys):
    out = tmp_path / "net.json"
    assert (
        main(
            [
                "workloads",
                "import",
                str(FIXTURES / "mobilenet_v2.onnx"),
                "--out",
                str(out),
                "--name",
                "mnv2",
            ]
        )
        == 0
    )
    spec = json.loads(out.read_text())
    assert spec["name"] == "mnv2" and spec["format"] == "wavecore-network/1"
    assert load_network(str(out)).params == load_network("mobilenet_v2").params == 3_504_872


def _bad_inputs(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    good = FIXTURES / "resnet50.onnx"
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(good.read_bytes()[:5000])
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"this is not an onnx model\n" * 10)
    unsupported = make_model(
        tmp_path / "lstm.onnx", [helper.make_node("Erf", ["x"], ["y"], name="my_erf")], {}
    )
    dynamic = tmp_path / "dynamic.onnx"
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, "H", "W"])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    g = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [x], [y])
    dynamic.write_bytes(helper.make_model(g).SerializeToString())
    return {
        "truncated": (truncated, "not a readable ONNX model"),
        "junk": (junk, "not a readable ONNX model"),
        "unsupported": (unsupported, "node 'my_erf' (Erf) is not supported"),
        "dynamic": (dynamic, "has no fixed height"),
    }


@pytest.mark.parametrize("case", ["truncated", "junk", "unsupported", "dynamic"])
def test_bad_onnx_input_is_one_line_exit_2_and_nothing_written(tmp_path, capsys, case):
    path, message = _bad_inputs(tmp_path)[case]
    out_json, run_dir = tmp_path / "out.json", tmp_path / "run"
    assert main(["workloads", "import", str(path), "--out", str(out_json)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err
    assert (
        main(
            [
                "run",
                "--network",
                str(path),
                "--batch",
                "2",
                "--schedule",
                "mbs2",
                "--out",
                str(run_dir),
                "--no-trace",
                "--no-plots",
            ]
        )
        == 2
    )
    assert message in capsys.readouterr().err
    assert not out_json.exists() and not run_dir.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        p.name for p in tmp_path.iterdir() if p.suffix == ".onnx"
    )


def test_missing_onnx_extra_names_the_pip_command(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "onnx", None)  # import onnx raises ImportError
    with pytest.raises(WavecoreError, match=r"pip install -e '\.\[onnx\]'"):
        load_network(str(FIXTURES / "resnet50.onnx"))


def test_imported_network_compiles_and_simulates_end_to_end(tmp_path, capsys):
    nodes, w = head("r", channels=8)
    nodes = [
        helper.make_node("Conv", ["x", "cw"], ["c"], name="conv", group=8, pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["c", "s", "b", "m", "v"], ["n"], name="bn"),
        helper.make_node("HardSwish", ["n"], ["r"], name="act"),
        *nodes,
    ]
    model = make_model(
        tmp_path / "m.onnx",
        nodes,
        {"cw": (8, 1, 3, 3), "s": (8,), "b": (8,), "m": (8,), "v": (8,), **w},
    )
    out = tmp_path / "run"
    assert (
        main(
            [
                "run",
                "--network",
                str(model),
                "--batch",
                "2",
                "--schedule",
                "mbs2",
                "--out",
                str(out),
                "--json",
                "--no-trace",
                "--no-plots",
            ]
        )
        == 0
    )
    summary = json.loads((out / "summary.json").read_text())
    assert summary["cycles"] > 0


def test_workloads_show_accepts_an_onnx_path(capsys):
    assert main(["workloads", "show", str(FIXTURES / "resnet50.onnx"), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    # torchvision resnet50: 25,557,032 parameters, 4,089,184,256 forward MACs per sample
    assert (summary["params"], summary["fwd_macs_per_sample"]) == (25_557_032, 4_089_184_256)
    assert summary["name"] == "resnet50"  # the file's stem


def test_add_with_a_per_channel_broadcast_activation(tmp_path):
    nodes, w = head("s")
    nodes = [
        helper.make_node("Conv", ["x", "cw"], ["a"], name="conv"),
        helper.make_node("GlobalAveragePool", ["a"], ["g"], name="pool"),
        helper.make_node("Conv", ["g", "pw"], ["p"], name="proj"),
        helper.make_node("Add", ["p", "a"], ["s"], name="bcast_add"),
        *nodes,
    ]
    net = load_network(
        str(make_model(tmp_path / "m.onnx", nodes, {"cw": (8, 8, 1, 1), "pw": (8, 8, 1, 1), **w}))
    )
    add = by_name(net)["bcast_add"]
    # the full-shape input comes first whatever the ONNX operand order
    assert add.kind == "add" and add.in_shapes == ((8, 16, 16), (8, 1, 1))
    assert add.inputs == ("conv", "proj")
