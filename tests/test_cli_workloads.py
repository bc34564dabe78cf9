"""The ``workloads`` and ``config`` commands: happy paths and bad input.

Bad input must end with exit status 2 and one line on stderr naming the problem, never a
traceback. Those cases run ``python -m wavecore_sim.cli`` in a subprocess so that an uncaught
exception would really print its traceback.
"""

from __future__ import annotations

import json

import pytest
from conftest import REPO, head, spec

ZOO = [
    "convnext_tiny",
    "densenet121",
    "efficientnet_b0",
    "inception_v3",
    "inception_v4",
    "mobilenet_v2",
    "resnet101",
    "resnet152",
    "resnet50",
    "resnext50_32x4d",
    "vgg16",
]


def assert_one_line_error(result, expected: str) -> None:
    text = result.out + result.err
    assert "Traceback" not in text, text
    assert result.code == 2, text
    lines = result.err.strip().splitlines()
    assert len(lines) == 1, result.err
    assert lines[0].startswith("wavecore-sim: error: ") and expected in lines[0], lines[0]
    assert result.out == ""


# ----------------------------------------------------------------------------- happy paths


def test_workloads_list_prints_the_zoo_names_then_the_example(run_cli_subprocess):
    result = run_cli_subprocess("workloads", "list")
    assert (result.code, result.err) == (0, "")
    lines = result.out.splitlines()
    assert lines[:-1] == ZOO
    # the example network, last and marked as such, with the file it comes from
    name, mark = lines[-1].split(maxsplit=1)
    assert name == "example_tinynet"
    assert mark.startswith("(example") and "workloads/example_tinynet.json" in mark
    assert (REPO / "workloads" / "example_tinynet.json").is_file()


def test_the_listed_example_name_is_accepted_by_workloads_show(run_cli):
    result = run_cli("workloads", "show", "example_tinynet", "--json")
    assert (result.code, result.err) == (0, "")
    assert json.loads(result.out)["name"] == "tinynet"


def test_workloads_show_resnet50_json_has_torchvision_params_and_4_09_gmacs(run_cli):
    result = run_cli("workloads", "show", "resnet50", "--json")
    assert (result.code, result.err) == (0, "")
    summary = json.loads(result.out)
    assert summary["params"] == 25_557_032  # torchvision resnet50
    assert summary["fwd_macs_per_sample"] == pytest.approx(4.09e9, rel=0.02)
    assert summary["batch"] == 32 and summary["norm"] == "bn"
    fwd = summary["fwd_macs_per_sample"]
    # backward = DGRAD (all but conv1's 118,013,952) + WGRAD (all)
    assert summary["train_macs_per_sample"] == 3 * fwd - 118_013_952
    assert summary["fwd_macs_per_batch"] == 32 * fwd
    conv1 = summary["layers"][0]
    assert (conv1["name"], conv1["out_shape"], conv1["dgrad_macs_per_sample"]) == (
        "conv1",
        [64, 112, 112],
        0,
    )
    # conv1's output: 64*112*112 = 802,816 elements * 2 B * 32 samples = 51,380,224
    assert conv1["activation_bytes"] == 51_380_224


def test_workloads_show_tinynet_table_has_the_totals(run_cli, monkeypatch):
    monkeypatch.chdir(REPO)
    result = run_cli("workloads", "show", "workloads/example_tinynet.json")
    assert (result.code, result.err) == (0, "")
    lines = result.out.splitlines()
    assert lines[0].split() == [
        "layer",
        "kind",
        "input",
        "output",
        "params",
        "fwd",
        "MACs",
        "dgrad",
        "MACs",
        "wgrad",
        "MACs",
        "act",
        "bytes",
    ]
    # hand counts (see test_workload / test_training): params 10,138; forward 6,340,928 per
    # sample, x32 = 202,909,696; dgrad 5,898,560 + wgrad 6,340,928 = 12,239,488, x32 =
    # 391,663,616; training 18,580,416 = 2.930 x forward; activations: 192,554 layer-output
    # elements + 3,072 input = 195,626 * 2 B * 32 = 12,520,064; saved 121,888 * 2 * 32 =
    # 7,800,832
    for expected in [
        "network tinynet (bn), input 3x32x32, batch 32, 17 layers",
        "parameters                 10,138",
        "forward MACs               6,340,928 per sample, 202,909,696 per batch",
        "backward MACs              12,239,488 per sample (dgrad 5,898,560 + wgrad 6,340,928)"
        ", 391,663,616 per batch",
        "training MACs              18,580,416 per sample (2.930 x forward)",
        "activation footprint       12,520,064 bytes (all layer outputs, batch 32)",
        "saved for backward         7,800,832 bytes",
    ]:
        assert expected in lines, expected
    stem = next(line for line in lines if line.startswith("stem.conv "))
    # 3x32x32 -> 16x32x32, 432 params, 442,368 MACs, no DGRAD (reads the image)
    assert stem.split()[:8] == [
        "stem.conv",
        "conv",
        "3x32x32",
        "16x32x32",
        "432",
        "442,368",
        "0",
        "442,368",
    ]


def test_workloads_show_batch_and_norm_options(run_cli, monkeypatch):
    monkeypatch.chdir(REPO)
    result = run_cli(
        "workloads", "show", "workloads/example_tinynet.json", "--batch", "4", "--norm", "gn"
    )
    assert result.code == 0
    # 6,340,928 * 4 = 25,363,712
    assert "forward MACs               6,340,928 per sample, 25,363,712 per batch" in result.out
    assert "network tinynet (gn), input 3x32x32, batch 4, 17 layers" in result.out
    assert " norm/gn " in result.out


def test_workloads_show_a_network_without_gemms(run_cli, write_json):
    # gap -> loss only: no MACs at all. (The table used to divide by zero here.)
    path = write_json(
        spec([{"name": "gap", "kind": "gap"}, {"name": "loss", "kind": "loss"}], 10, 4, 4)
    )
    result = run_cli("workloads", "show", path)
    assert (result.code, result.err) == (0, "")
    assert "training MACs              0 per sample (no conv or fc)" in result.out


def test_workloads_show_an_add_whose_output_fans_out(run_cli, write_json):
    # pre-activation residual: a1 feeds c3 and the next add. (Used to crash with KeyError.)
    path = write_json(
        spec(
            [
                {"name": "c1", "kind": "conv", "out_channels": 4, "kernel": 3, "padding": 1},
                {"name": "c2", "kind": "conv", "out_channels": 4, "kernel": 3, "padding": 1},
                {"name": "a1", "kind": "add", "inputs": ["c1", "c2"]},
                {"name": "c3", "kind": "conv", "out_channels": 4, "kernel": 3, "padding": 1},
                {"name": "a2", "kind": "add", "inputs": ["a1", "c3"]},
                *head(),
            ],
            4,
            8,
            8,
        )
    )
    result = run_cli("workloads", "show", path, "--json")
    assert (result.code, result.err) == (0, "")
    # convs: 8*8 * 4*4*9 = 9,216 MACs each; c1 reads the image: no DGRAD
    layers = {ly["name"]: ly for ly in json.loads(result.out)["layers"]}
    assert [layers[c]["dgrad_macs_per_sample"] for c in ("c1", "c2", "c3")] == [0, 9216, 9216]


def test_config_show_prints_every_field(run_cli):
    result = run_cli("config", "show", "--preset", "tiny", "--set", "cores=1", "--json")
    assert (result.code, result.err) == (0, "")
    shown = json.loads(result.out)
    assert (shown["cores"], shown["array_rows"], shown["gbuf_bytes"]) == (1, 32, 1024 * 1024)
    table = run_cli("config", "show", "--set", "gbuf_bytes=20MiB")
    assert table.code == 0
    rows = {line.split()[0]: line.split()[1:] for line in table.out.splitlines()[2:]}
    assert next(iter(rows)) == "cores" and rows["cores"][0] == "2"
    # value, unit, valid range, source, meaning
    assert rows["gbuf_bytes"][:2] == ["20971520", "bytes"]
    assert "paper" in " ".join(rows["hbm_gbps"]) and "GB/s" in rows["hbm_gbps"]
    assert "assumption" in " ".join(rows["clock_mhz"])


def test_config_show_reads_a_toml_file(run_cli, tmp_path):
    path = tmp_path / "m.toml"
    path.write_text('preset = "tiny"\ngbuf_bytes = "2MiB"\n')
    result = run_cli("config", "show", "--config", str(path), "--json")
    assert result.code == 0 and json.loads(result.out)["gbuf_bytes"] == 2 * 1024**2


# ----------------------------------------------------------------------------- bad networks

BAD_NETWORKS = {
    "conv_without_out_channels": (
        spec([{"name": "c", "kind": "conv", "kernel": 3}, *head()]),
        "layers[0] ('c'): field 'out_channels' is missing",
    ),
    "unknown_field": (
        spec(
            [{"name": "c", "kind": "conv", "out_channels": 4, "kernel": 3, "strides": 2}, *head()]
        ),
        "field 'strides' is not known here",
    ),
    "add_of_mismatched_shapes": (
        spec(
            [
                {"name": "a", "kind": "conv", "out_channels": 4, "kernel": 1},
                {"name": "b", "kind": "conv", "out_channels": 4, "kernel": 3, "inputs": ["input"]},
                {"name": "sum", "kind": "add", "inputs": ["a", "b"]},
                *head(),
            ]
        ),
        "('sum'): add needs two or more inputs of equal shape",
    ),
    "concat_of_different_hw": (
        spec(
            [
                {"name": "a", "kind": "conv", "out_channels": 4, "kernel": 1},
                {"name": "b", "kind": "maxpool", "kernel": 2, "inputs": ["input"]},
                {"name": "cat", "kind": "concat", "inputs": ["a", "b"]},
                *head(),
            ]
        ),
        "('cat'): concat inputs must share height and width",
    ),
    "kernel_bigger_than_input": (
        spec([{"name": "c", "kind": "conv", "out_channels": 4, "kernel": 11}, *head()], 3, 8, 8),
        "('c'): kernel (11, 11) does not fit the 8x8 input",
    ),
    "cycle": (
        spec(
            [
                {"name": "a", "kind": "relu", "inputs": ["b"]},
                {"name": "b", "kind": "relu", "inputs": ["a"]},
                *head(),
            ]
        ),
        "the layer graph has a cycle through a, b;",
    ),
    "unknown_input_name": (
        spec([{"name": "r", "kind": "relu", "inputs": ["ghost"]}, *head()]),
        "input 'ghost' is not a layer",
    ),
    "no_loss": (
        spec([{"name": "gap", "kind": "gap"}, {"name": "fc", "kind": "fc", "out_features": 2}]),
        "no 'loss' layer",
    ),
    "wrong_format": (spec(head()) | {"format": "onnx"}, "field 'format' is 'onnx'"),
}


@pytest.mark.parametrize("case", sorted(BAD_NETWORKS))
def test_bad_network_file_exits_2_with_one_line(case, run_cli_subprocess, write_json):
    network, expected = BAD_NETWORKS[case]
    result = run_cli_subprocess("workloads", "show", write_json(network))
    assert_one_line_error(result, expected)


@pytest.mark.parametrize(
    "content, expected",
    [
        ('{"format": "wavecore-network/1", "name": "x",\n "layers": [}', "not valid JSON"),
        ("", "not valid JSON (Expecting value at line 1)"),
        (b"\xff\xfe\x00\x01", "not UTF-8 text"),
        ("[1, 2]", "expected a JSON object"),
    ],
)
def test_malformed_network_file_exits_2_with_one_line(
    content, expected, run_cli_subprocess, write_json
):
    result = run_cli_subprocess("workloads", "show", write_json(content))
    assert_one_line_error(result, expected)


@pytest.mark.parametrize(
    "name, expected",
    [
        ("resnet51", "unknown network 'resnet51'; choose one of convnext_tiny, densenet121"),
        ("missing.json", "network file 'missing.json' not found"),
    ],
)
def test_unknown_network_exits_2_with_one_line(name, expected, run_cli_subprocess, tmp_path):
    assert_one_line_error(run_cli_subprocess("workloads", "show", name, cwd=tmp_path), expected)


@pytest.mark.parametrize("batch", ["0", "-3", "four"])
def test_bad_batch_exits_2_with_one_error_line(batch, run_cli_subprocess):
    result = run_cli_subprocess("workloads", "show", "resnet50", "--batch", batch)
    text = result.out + result.err
    assert result.code == 2 and "Traceback" not in text
    # argparse prints its usage lines, then exactly one error line naming the option
    errors = [line for line in result.err.splitlines() if "error:" in line]
    assert len(errors) == 1 and "argument --batch" in errors[0], result.err
    assert ("positive integer" in errors[0]) or ("not an integer" in errors[0])


# ----------------------------------------------------------------------------- bad configs


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["--set", "cpus=4"], "--set: unknown config field 'cpus'"),
        (["--set", "cores"], "--set 'cores': write it as FIELD=VALUE"),
        (["--set", "cores=0"], "config field 'cores' must be >= 1, got 0"),
        (
            ["--set", "gbuf_bytes=64KiB"],
            "config field 'gbuf_bytes' = 65536 cannot hold one 128x128",
        ),
        (["--set", "hbm_gbps=-5"], "config field 'hbm_gbps' must be a positive number, got -5.0"),
        (["--set", "gbuf_bytes=1e400"], "config field 'gbuf_bytes': '1e400' is not an integer"),
        (["--set", "mac_pj=nan"], "config field 'mac_pj' must be a finite number >= 0"),
        (["--preset", "huge"], "unknown preset 'huge'"),
        (["--config", "nope.toml"], "config file 'nope.toml' not found"),
    ],
)
def test_impossible_config_exits_2_with_one_line(argv, expected, run_cli_subprocess, tmp_path):
    result = run_cli_subprocess("config", "show", *argv, cwd=tmp_path)
    assert_one_line_error(result, expected)


def test_bad_toml_config_exits_2_with_one_line(run_cli_subprocess, tmp_path):
    (tmp_path / "bad.toml").write_text("cores = = 2\n")
    result = run_cli_subprocess("config", "show", "--config", "bad.toml", cwd=tmp_path)
    assert_one_line_error(result, "config file bad.toml: not valid TOML")


def test_in_process_main_returns_2_for_bad_input(run_cli):
    # the same contract through cli.main(): a return code, not an exception
    result = run_cli("workloads", "show", "resnet51")
    assert result.code == 2 and result.err.count("\n") == 1
    assert result.err.startswith("wavecore-sim: error: unknown network 'resnet51'")
