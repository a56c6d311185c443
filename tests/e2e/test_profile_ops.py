"""benchmarks/profile_ops.py: op times per Keras layer from a JAX profiler trace, checked
on traces built by hand (known durations and names) and on bad files. The traces that
gpu.py / gpu_train.py record are read in tests/e2e/test_benchmarks.py."""
import gzip
import sys
from pathlib import Path

import pytest
from tensorflow.compiler.xla.service import hlo_pb2
from tensorflow.tsl.profiler.protobuf import xplane_pb2

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "benchmarks"))

import profile_ops  # noqa: E402

MS = 10 ** 9  # picoseconds


@pytest.mark.parametrize("op_name, depth, layer", [
    ("jit(predict_step)/resnet_model/res2a_branch2a_relu/jit(relu)/max", 2,
     "resnet_model/res2a_branch2a_relu"),
    ("jit(predict_step)/resnet_model/res2a_branch2a_relu/jit(relu)/max", 1, "resnet_model"),
    ("jit(train_step)/transpose(jvp(resnet_model))/res5a_branch2b/conv_general_dilated", 2,
     "resnet_model/res5a_branch2b (grad)"),
    ("jit(train_step)/jvp(proposal_targets)/add", 2, "proposal_targets"),
    ("jit(predict_step)/ROI/jit(_take)/gather", 2, "ROI"),
    ("jit(train_step)/sgd/reduce_sum", 1, "sgd"),
    ("state[0][3]", 2, "(outside layers)"),
    ("", 2, "(outside layers)"),
])
def test_layer_of(op_name, depth, layer):
    assert profile_ops.layer_of(op_name, depth) == layer


def _module() -> hlo_pb2.HloProto:
    proto = hlo_pb2.HloProto()
    module = proto.hlo_module
    module.name, module.entry_computation_id = "jit_train_step", 1
    fused = module.computations.add(name="fused", id=2, root_id=21)
    fused.instructions.add(name="param.20", opcode="parameter", id=20)
    fused.instructions.add(name="add.21", opcode="add", id=21, operand_ids=[20]).metadata \
        .op_name = "jit(train_step)/jvp(model)/dense_a/add"
    entry = module.computations.add(name="main", id=1, root_id=13)
    entry.instructions.add(name="fusion.1", opcode="fusion", id=11,
                           called_computation_ids=[2])
    entry.instructions.add(name="conv.2", opcode="convolution", id=12).metadata.op_name = (
        "jit(train_step)/transpose(jvp(model))/conv_b/conv_general_dilated")
    entry.instructions.add(name="copy.3", opcode="copy", id=13, operand_ids=[12])
    return proto


def _space(device: bool) -> xplane_pb2.XSpace:
    """One program (id 7): fusion.1 3 ms, conv.2 5 ms (with a 1 ms loop event around
    nothing), copy.3 2 ms; on a GPU also kernels on a stream line, which must not count."""
    space = xplane_pb2.XSpace()
    metadata = space.planes.add(name="/host:metadata")
    metadata.stat_metadata[1].name, metadata.stat_metadata[2].name = "Hlo Proto", "program_id"
    program = metadata.event_metadata[1]
    program.id, program.name = 1, "jit_train_step(7)"
    program.stats.add(metadata_id=1, bytes_value=_module().SerializeToString())
    program.stats.add(metadata_id=2, int64_value=7)

    plane = space.planes.add(name="/device:GPU:0" if device else "/host:CPU")
    plane.stat_metadata[1].name, plane.stat_metadata[2].name = "program_id", "hlo_op"
    plane.stat_metadata[3].name = "fusion.1"
    for number, name in enumerate(["fusion.1", "conv.2", "copy.3", "while.9"], 1):
        plane.event_metadata[number].id, plane.event_metadata[number].name = number, name
    ops = plane.lines.add(id=1, name="XLA Ops" if device else "tf_XLAEigen/1")
    # (name id, start ms, length ms): while.9 holds conv.2, so its own time is 1 ms.
    for name_id, start, length in [(1, 0, 3), (4, 3, 6), (2, 4, 5), (3, 9, 2)]:
        event = ops.events.add(metadata_id=name_id, offset_ps=start * MS,
                               duration_ps=length * MS)
        event.stats.add(metadata_id=1, int64_value=7)
        if not device:  # the CPU backend names the op in a stat (a reference here)
            if name_id == 1:
                event.stats.add(metadata_id=2, ref_value=3)
            else:
                event.stats.add(metadata_id=2, str_value=plane.event_metadata[name_id].name)
    if device:
        stream = plane.lines.add(id=2, name="Stream #1")
        stream.events.add(metadata_id=2, offset_ps=0, duration_ps=50 * MS)
    return space


@pytest.mark.parametrize("device", [True, False], ids=["gpu", "cpu"])
@pytest.mark.parametrize("packed", [True, False], ids=["gz", "pb"])
def test_summary_per_layer(tmp_path, device, packed):
    data = _space(device).SerializeToString()
    path = tmp_path / ("trace.xplane.pb" + (".gz" if packed else ""))
    path.write_bytes(gzip.compress(data) if packed else data)
    summary = profile_ops.summarize(str(path), depth=2)
    assert summary["total_ms"] == pytest.approx(11.0)
    assert summary["layers"] == [
        ("model/conv_b (grad)", pytest.approx(5.0), pytest.approx(5 / 11)),
        ("model/dense_a", pytest.approx(3.0), pytest.approx(3 / 11)),
        ("model/conv_b (grad) (unnamed ops it feeds)", pytest.approx(2.0),
         pytest.approx(2 / 11)),
        ("(outside layers)", pytest.approx(1.0), pytest.approx(1 / 11)),
    ]
    assert [name for name, _ in summary["ops"]] == ["conv.2", "fusion.1", "copy.3", "while.9"]
    by_model = profile_ops.summarize(str(path), depth=1)["layers"]
    assert by_model[0][0] == "model (grad)" and by_model[0][1] == pytest.approx(5.0)


def test_self_times_subtract_nested_events():
    line = xplane_pb2.XLine()
    outer = line.events.add(offset_ps=0, duration_ps=10)
    inner = line.events.add(offset_ps=2, duration_ps=3)
    deeper = line.events.add(offset_ps=3, duration_ps=1)
    after = line.events.add(offset_ps=10, duration_ps=4)  # starts as the outer one ends
    own = {id(e): ps for e, ps in profile_ops.self_times(list(line.events))}
    assert [own[id(e)] for e in (outer, inner, deeper, after)] == [7, 2, 1, 4]


def test_command_line_prints_and_writes(tmp_path, capsys):
    path = tmp_path / "t.xplane.pb.gz"
    path.write_bytes(gzip.compress(_space(True).SerializeToString()))
    output = tmp_path / "summary.json"
    assert profile_ops.main([str(path), "--top", "2", "--output", str(output)]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].endswith("11.0 ms of op time") and len(printed) == 3
    assert printed[1].split() == ["45.5%", "5.00", "ms", "model/conv_b", "(grad)"]
    assert '"model/dense_a"' in output.read_text()


@pytest.mark.parametrize("content, message", [
    (b"not a trace at all", "not a JAX profiler trace"),
    (gzip.compress(xplane_pb2.XSpace().SerializeToString(), mtime=0), "holds no HLO"),
], ids=["garbage", "no-hlo"])  # fixed ids: xdist's workers must collect the same names
def test_bad_traces_get_one_line(tmp_path, capsys, content, message):
    path = tmp_path / "bad.xplane.pb.gz"
    path.write_bytes(content)
    assert profile_ops.main([str(path)]) == 2
    error = capsys.readouterr().err
    assert message in error and error.count("\n") == 1


def test_missing_trace_gets_one_line(tmp_path, capsys):
    assert profile_ops.main([str(tmp_path / "none.xplane.pb.gz")]) == 2
    assert "none.xplane.pb.gz" in capsys.readouterr().err


def test_add_trace_records_a_jax_program(tmp_path):
    import common
    import jax
    import jax.numpy as jnp

    matrix = jnp.ones((256, 256))
    function = jax.jit(lambda a: jnp.tanh(a @ a).sum())
    function(matrix).block_until_ready()  # the compile, outside the trace
    result = {}
    path = str(tmp_path / "t.xplane.pb.gz")
    common.add_trace(result, lambda: function(matrix).block_until_ready(), 2, path)
    assert result == {"profile": path}
    summary = profile_ops.summarize(path)
    assert summary["total_ms"] > 0 and summary["ops"]


def test_add_trace_reports_a_failure_and_keeps_the_line(tmp_path):
    import common

    def failing():
        raise ValueError("boom")

    result = {"graph_images_per_s": 1.0}
    path = tmp_path / "t.xplane.pb.gz"
    common.add_trace(result, failing, 2, str(path))
    assert result == {"graph_images_per_s": 1.0, "profile_error": "ValueError: boom"}
    assert list(tmp_path.iterdir()) == []
