"""Where a traced JAX program spends its time, per Keras layer: reads a trace that
gpu.py / gpu_train.py wrote with --profile (one XSpace, .xplane.pb or .xplane.pb.gz).

    python benchmarks/profile_ops.py benchmarks/results/train_large_b3_float32.xplane.pb.gz

Runs here, not on the GPU machine: it reads the trace with TensorFlow's protobuf modules
(xplane_pb2, hlo_pb2), which that machine lacks. How:
- op times: on a GPU, the events of each device plane's "XLA Ops" line (device time);
  where there is none (the CPU backend), the host events that carry an ``hlo_op`` stat.
  Each event counts its self time (its duration less that of the events nested in it on
  the same line), so a loop and the ops inside it are not counted twice;
- layers: the trace's metadata plane holds each program's HLO; an instruction's
  ``op_name`` is JAX's name stack, which holds the Keras layer names
  (``jit(train_step)/transpose(jvp(resnet_model))/res5a_branch2b/conv_general_dilated``).
  A fusion without its own op_name takes its fused root's; an op with none at all (XLA
  makes some for the backward pass) is listed as "X (unnamed ops it feeds)", X being
  the nearest named op that feeds it;
- the layer path drops ``jit(...)`` parts and the primitive, unwraps ``jvp(...)`` and
  ``transpose(...)``, and adds " (grad)" where the op belongs to the backward pass
  (``transpose``). ``--depth 1`` sums per sub-model (resnet_model, fpn_model, ROI, ...).
Prints the total op time and the --top layers with their share; --output writes them as
JSON.
"""
from __future__ import annotations

import argparse
import collections
import gzip
import re
import sys

from common import write_json  # and lib/ on sys.path

_WRAPPER = re.compile(r"^(jvp|transpose|vmap|remat|checkpoint|pjit)\((.*)\)$")


def layer_of(op_name: str, depth: int = 2) -> str:
    """The layer path of one op_name, e.g.
    'jit(train_step)/transpose(jvp(resnet_model))/res2a/conv' -> 'resnet_model/res2a (grad)'."""
    parts, backward = [], False
    for part in op_name.split("/")[:-1]:  # the last part is the primitive
        while True:
            match = _WRAPPER.match(part)
            if not match:
                break
            backward |= match.group(1) == "transpose"
            part = match.group(2)
        if part and not part.startswith("jit("):
            parts.append(part)
    layer = "/".join(parts[:depth]) or "(outside layers)"
    return layer + (" (grad)" if backward else "")


def _stats(plane, holder) -> dict:
    """name -> value of the stats on an event or event metadata."""
    values = {}
    for stat in holder.stats:
        name = plane.stat_metadata[stat.metadata_id].name
        kind = stat.WhichOneof("value")
        value = getattr(stat, kind) if kind else None
        if kind == "ref_value":
            value = plane.stat_metadata[value].name
        values[name] = value
    return values


def op_names(hlo_module) -> dict:
    """instruction name -> (op_name, whether it is a feeding op's) for one
    HloModuleProto. An instruction without one
    (a fusion, or an op XLA added) takes the nearest named one inside what it calls,
    searched from each called computation's root back through the operands (the root
    of a fusion is often a tuple or a copy that carries no name), else that of the
    nearest named op feeding it."""
    computations = {c.id: c for c in hlo_module.computations}
    members = {c.id: {i.id: i for i in c.instructions} for c in hlo_module.computations}
    found: dict = {}

    def nearest(start: list, by_id: dict, depth: int, limit: int) -> str:
        # Breadth-first back through the operands from `start`: the first named op.
        queue, seen = list(start), set()
        while queue and len(seen) < limit:
            instruction = by_id.get(queue.pop(0))
            if instruction is None or instruction.id in seen:
                continue
            seen.add(instruction.id)
            name = named(instruction, depth)
            if name:
                return name
            queue.extend(instruction.operand_ids)
        return ""

    def named(instruction, depth: int = 0) -> str:
        if instruction.metadata.op_name or depth > 4:
            return instruction.metadata.op_name
        key = (instruction.id, depth)
        if key not in found:
            found[key] = ""
            for called in instruction.called_computation_ids:
                if called in computations:
                    found[key] = nearest([computations[called].root_id], members[called],
                                         depth + 1, len(members[called]))
                    if found[key]:
                        break
        return found[key]

    names = {}
    for computation in hlo_module.computations:
        for instruction in computation.instructions:
            own = named(instruction)
            # Ops XLA made for the backward pass (a convolution's transposes) carry no
            # name: they take that of the nearest named op that feeds them.
            names[instruction.name] = (own, False) if own else (
                nearest(instruction.operand_ids, members[computation.id], 0, 32), True)
    return names


def read_space(path: str):
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    opener = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            space = xplane_pb2.XSpace.FromString(f.read())
    except (OSError, EOFError, ValueError) as error:  # DecodeError is a ValueError
        raise ValueError(f"{path}: not a JAX profiler trace (.xplane.pb[.gz]): {error}")
    return space


def programs(space) -> tuple[dict, dict]:
    """(program id -> {instruction: op_name}, module name -> the same, merged)."""
    from tensorflow.compiler.xla.service import hlo_pb2

    by_id, by_module = {}, collections.defaultdict(dict)
    for plane in space.planes:
        if plane.name != "/host:metadata":
            continue
        for metadata in plane.event_metadata.values():
            stats = _stats(plane, metadata)
            if "Hlo Proto" not in stats:
                continue
            module = hlo_pb2.HloProto.FromString(stats["Hlo Proto"]).hlo_module
            names = op_names(module)
            by_id[stats.get("program_id", metadata.id)] = names
            by_module[module.name].update(names)
    return by_id, by_module


def op_events(space):
    """(plane, line, event, its stats) for each op event: the device's XLA Ops lines if
    any, else the host's events with an hlo_op stat."""
    device_lines = [(p, line) for p in space.planes if p.name.startswith("/device:")
                    for line in p.lines if line.name == "XLA Ops"]
    if device_lines:
        for plane, line in device_lines:
            for event in line.events:
                yield plane, line, event, _stats(plane, event)
        return
    for plane in space.planes:
        if plane.name.startswith("/host:") and plane.name != "/host:metadata":
            for line in plane.lines:
                for event in line.events:
                    stats = _stats(plane, event)
                    if "hlo_op" in stats:
                        yield plane, line, event, stats


def self_times(events) -> list:
    """[(event, self picoseconds)] for events of one line: each less its nested ones."""
    ordered = sorted(events, key=lambda e: (e.offset_ps, -e.duration_ps))
    own = {id(e): e.duration_ps for e in ordered}
    stack = []
    for event in ordered:
        while stack and stack[-1].offset_ps + stack[-1].duration_ps <= event.offset_ps:
            stack.pop()
        if stack:
            own[id(stack[-1])] -= event.duration_ps
        stack.append(event)
    return [(e, max(own[id(e)], 0)) for e in ordered]


def summarize(path: str, depth: int = 2) -> dict:
    """{'total_ms', 'layers': [(layer, ms, share)], 'ops': [(instruction, ms)]}, largest
    first, summed over every traced call."""
    space = read_space(path)
    by_id, by_module = programs(space)
    if not by_id:
        raise ValueError(f"{path}: the trace holds no HLO (was it recorded by "
                         f"jax.profiler.trace around a jitted call?)")
    lines, stats_of = collections.defaultdict(list), {}
    for plane, line, event, stats in op_events(space):
        lines[(plane.name, line.id)].append((plane, event))
        stats_of[id(event)] = stats
    layers, ops = collections.Counter(), collections.Counter()
    for entries in lines.values():
        plane = entries[0][0]
        for event, ps in self_times([e for _, e in entries]):
            stats = stats_of[id(event)]
            name = stats.get("hlo_op") or plane.event_metadata[event.metadata_id].name
            names = by_id.get(stats.get("program_id")) or by_module.get(
                stats.get("hlo_module"), {})
            op_name, fed = names.get(name, ("", False))
            layers[layer_of(op_name, depth) + (" (unnamed ops it feeds)" if fed else "")] += ps
            ops[name] += ps
    total = sum(layers.values())
    if total == 0:
        raise ValueError(f"{path}: the trace holds no timed XLA ops")
    return {
        "trace": path, "total_ms": total / 1e9, "depth": depth,
        "layers": [(layer, ps / 1e9, ps / total) for layer, ps in layers.most_common()],
        "ops": [(name, ps / 1e9) for name, ps in ops.most_common()],
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("trace", help="a .xplane.pb or .xplane.pb.gz (gpu.py --profile)")
    parser.add_argument("--depth", type=int, default=2,
                        help="layer path parts kept: 1 = sub-models, 2 = their layers (2)")
    parser.add_argument("--top", type=int, default=25, help="layers printed (25)")
    parser.add_argument("--output", default=None, help="write the summary as JSON here")
    args = parser.parse_args(argv)
    try:
        summary = summarize(args.trace, args.depth)
    except (OSError, ValueError) as error:
        print(f"profile_ops.py: {error}", file=sys.stderr)
        return 2
    print(f"{summary['trace']}: {summary['total_ms']:.1f} ms of op time")
    for layer, ms, share in summary["layers"][:args.top]:
        print(f"{share:7.1%} {ms:10.2f} ms  {layer}")
    if args.output:
        write_json(summary, args.output, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
