"""int8 ONNX for small devices: static quantization of an exported fp32 graph, calibrated on the
run's training images, and checked against that fp32 graph on its test images.

onnxruntime does the quantization (QDQ format, per-channel int8 weights in a 7-bit range, uint8
activations: its recommended form for CPUs, whatever their instruction set) and the arithmetic; this module picks the images, keeps the graph's
tail after its last weighted operator in fp32 (``tail_nodes``) and judges the result. An int8 graph cannot match fp32 to 1e-4, so the check is on decisions: the share of test
samples whose class (or call at the exported threshold) the int8 graph keeps, and for
segmentation the Dice of each class's int8 masks against the fp32 ones, the lowest of them."""

from __future__ import annotations

import contextlib
import io
import math
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.special import softmax

from .errors import ConfigError

MIN_AGREEMENT = 0.99
MIN_JUDGED_PIXELS = 32  # in either graph's masks over the checked images, for a class's Dice to be judged
CALIBRATION_SAMPLES = 200
BATCH = 32
# Inputs per onnxruntime run, at most, by pixels: 32 digits, or 4 images of 256x256 (whole
# segmentation images in batches of 32 took onnxruntime's calibration past 10 GiB).
BATCH_PIXELS = 1 << 18


def batch_size(x: np.ndarray) -> int:
    return max(1, min(BATCH, BATCH_PIXELS // max(1, int(np.prod(x.shape[2:])))))


def input_batches(x: np.ndarray) -> list[dict[str, np.ndarray]]:
    """``x`` cut into the feeds a graph runs on, ``batch_size(x)`` inputs each."""
    step = batch_size(x)
    return [{"input": x[i:i + step]} for i in range(0, len(x), step)]


@dataclass
class QuantizedCheck:
    agreement: float  # share of the checked predictions whose class (or thresholded call) the int8 graph keeps
    max_probability_difference: float  # largest |p_int8 - p_fp32| over every class and input
    checked: int  # test inputs compared
    predictions: int  # predictions compared: inputs, or pixels for segmentation
    fp32_bytes: int
    int8_bytes: int
    # segmentation: the Dice of the int8 graph's mask of each class against the fp32 graph's, by
    # class index (the classes either graph predicts), which the check judges: a share of pixels
    # is mostly background, so a graph losing a small class would keep 99% of them. Classes
    # either graph gives fewer than MIN_JUDGED_PIXELS pixels are shown, not judged: a near tie
    # flipping two pixels to a class otherwise absent would score it Dice 0.
    class_dice: dict[int, float] | None = None
    judged_classes: tuple[int, ...] = ()
    threshold: float | None = None  # the decisions compared were p(positive) >= threshold
    inputs: str = "test inputs"  # what the checked inputs are (window-sized tiles for a patch-trained run)
    speed: SpeedRatio | None = None  # the int8 graph's speed against the fp32 graph's, on this machine

    @property
    def judged(self) -> float:
        """The figure held against the minimum: the lowest Dice of a judged class for
        segmentation, else the share of decisions kept."""
        return self.class_dice[self.lowest_class] if self.judged_classes else self.agreement

    @property
    def lowest_class(self) -> int | None:
        return min(self.judged_classes, key=self.class_dice.get) if self.judged_classes else None


@dataclass
class SpeedRatio:
    """How fast the int8 graph ran against the fp32 one on the exporting machine, one input at a
    time (a small device's use), the two alternating so that a busy moment slows both."""
    ratio: float  # fp32's median time / int8's: above 1 is faster in int8
    rounds: int


# int8 is not always faster: with few channels (a width-8 U-Net) the steps into and out of 8 bits
# cost as much as the arithmetic they save (0.69x measured, docs/benchmarks.md). Below this ratio
# the export says so; between it and 1 the two are within this machine's noise.
SLOWER_THAN_FP32 = 0.9
# Timing rounds (a run of each graph): as many as fit in TIMING_SECONDS, at least MIN_ROUNDS, at
# most MAX_ROUNDS. Two rounds are the floor, not five: a model taking 1 s an input spent 10 s of
# an export on five (review 57d); rounds of under 0.4 s still take 5 or more within the budget.
TIMING_SECONDS, MIN_ROUNDS, MAX_ROUNDS = 2.0, 2, 30


def speed_ratio(fp32_path: Path, int8_path: Path, one_input: np.ndarray) -> SpeedRatio:
    """Median time per run of each graph on ``one_input`` ([1, C, H, W]), after a warm-up run."""
    import onnxruntime as ort

    sessions = [ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]) for p in (fp32_path, int8_path)]
    feed = {"input": one_input}
    for session in sessions:  # (the first run allocates and plans)
        session.run(None, feed)
    times: list[list[float]] = [[], []]
    started = time.perf_counter()
    while len(times[0]) < MAX_ROUNDS and (len(times[0]) < MIN_ROUNDS
                                          or time.perf_counter() - started < TIMING_SECONDS):
        for session, taken in zip(sessions, times):
            tick = time.perf_counter()
            session.run(None, feed)
            taken.append(time.perf_counter() - tick)
    fp32_time, int8_time = (float(np.median(t)) for t in times)
    return SpeedRatio(fp32_time / max(int8_time, 1e-9), len(times[0]))


def percent(share: float) -> str:
    """A share as a percentage rounded down to 0.01%: 98.996% is not 99.00%, below a 0.99 minimum,
    nor one prediction changed in 131,072 100.00%."""
    return f"{math.floor(share * 10000 + 1e-6) / 100:.2f}%"


def evenly_spaced(x: np.ndarray, count: int) -> np.ndarray:
    """Up to ``count`` of the inputs, spread over the whole array (a split listed class by class
    would otherwise calibrate on its first classes only)."""
    if len(x) <= count:
        return x
    return x[np.unique(np.linspace(0, len(x) - 1, count).round().astype(int))]


def quantize_int8(fp32_path: Path, int8_path: Path, calibration: np.ndarray) -> None:
    """Write ``int8_path``: ``fp32_path`` statically quantized, activation ranges taken (min-max)
    from ``calibration`` inputs [N, C, H, W] (normalised as in training)."""
    try:
        from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
        from onnxruntime.quantization.shape_inference import quant_pre_process
    except ImportError:
        raise ConfigError("int8 export needs onnxruntime: pip install 'peerdistill[export]'") from None

    class Batches(CalibrationDataReader):
        def __init__(self):
            self.batches = iter(input_batches(calibration))

        def get_next(self):
            return next(self.batches, None)

    quiet = io.StringIO()  # its notes on pre-processing
    with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stdout(quiet), contextlib.redirect_stderr(quiet):
        prepared = Path(tmp) / "prepared.onnx"  # shapes inferred and graph folded: quantizes more of it
        # (symbolic shape inference fails on dynamic height and width, and leaves files in the working folder)
        quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=True)
        _name_nodes(prepared)  # nodes_to_exclude goes by name: an unnamed tail node would be quantized
        tail = tail_nodes(prepared)
        # reduce_range: weights in 7 bits. x86 CPUs without VNNI (AVX2 only, as on an AMD EPYC here)
        # multiply uint8 activations by int8 weights in 16-bit sums that saturate at full range:
        # measured there on tests/test_quantize.py's run, the int8 graph kept 87.8% (a student) and
        # 91.4% (the ensemble) of the fp32 decisions with 8-bit weights, 100% and 99.7% with 7-bit.
        quantize_static(str(prepared), str(int8_path), Batches(), quant_format=QuantFormat.QDQ, per_channel=True,
                        reduce_range=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        nodes_to_exclude=tail)
    _fp32_into_tail(int8_path, set(tail))


def _name_nodes(path: Path) -> None:
    import onnx

    model = onnx.load(str(path))
    taken = {node.name for node in model.graph.node}
    unnamed = [node for node in model.graph.node if not node.name]
    for i, node in enumerate(unnamed):
        name = f"{node.op_type}_unnamed_{i}"
        while name in taken:
            name += "_"
        node.name = name
        taken.add(name)
    if unnamed:
        onnx.save(model, str(path))


def _fp32_into_tail(path: Path, tail: set[str]) -> None:
    """Take out the QuantizeLinear -> DequantizeLinear pairs that onnxruntime puts on the output
    of the last weighted operators (Gemm, Conv): left in, the logits that reach the fp32 tail or
    the graph's output would take 256 values per tensor, and tie."""
    import onnx

    model = onnx.load(str(path))
    graph = model.graph
    made_by = {out: node for node in graph.node for out in node.output}

    def unquantized(name: str) -> str | None:
        dq = made_by.get(name)
        q = made_by.get(dq.input[0]) if dq is not None and dq.op_type == "DequantizeLinear" else None
        return q.input[0] if q is not None and q.op_type == "QuantizeLinear" else None

    for node in graph.node:
        if node.name in tail:
            for k, name in enumerate(node.input):
                node.input[k] = unquantized(name) or name
    for out in graph.output:
        source = unquantized(out.name)
        if source not in made_by or source in {o.name for o in graph.output}:
            continue  # not quantized, or the float tensor is the graph's input or another output
        made_by[out.name].output[0] = f"{out.name}_quantized_unused"
        for node in graph.node:  # the float tensor takes the output's name
            node.output[:] = [out.name if o == source else o for o in node.output]
            node.input[:] = [out.name if i == source else i for i in node.input]
        for info in [v for v in graph.value_info if v.name == source]:
            graph.value_info.remove(info)
    changed = True
    while changed:  # drop the pairs nothing reads now
        used = {i for node in graph.node for i in node.input} | {o.name for o in graph.output}
        dead = [n for n in graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")
                and not any(o in used for o in n.output)]
        changed = bool(dead)
        for n in dead:
            graph.node.remove(n)
    used = {i for node in graph.node for i in node.input}
    for init in [i for i in graph.initializer if i.name not in used]:  # their scales and zero points
        graph.initializer.remove(init)
    onnx.save(model, str(path))


def quantized_weights(path: Path) -> int:
    """How many weights of the graph at ``path`` are stored in 8 bits."""
    import onnx

    graph = onnx.load(str(path)).graph
    eight = {i.name for i in graph.initializer if i.data_type in (onnx.TensorProto.INT8, onnx.TensorProto.UINT8)}
    return sum(1 for node in graph.node if node.op_type == "DequantizeLinear" and node.input[0] in eight)


# Operators with weights: where int8 saves time and space.
WEIGHTED = frozenset({"Conv", "ConvTranspose", "Gemm", "MatMul"})


def tail_nodes(path: Path) -> list[str]:
    """The nodes after the last weighted operator on every path to the output (an ensemble's
    softmax and mean, a final resize), kept in fp32: in 8 bits, probabilities would take 256
    values, and ties between them would blur the ranking an AUC is made of."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    consumers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    tail: set[int] = set()
    for node in reversed(graph.node):  # ONNX lists nodes in topological order: consumers come later
        after = [c for out in node.output for c in consumers.get(out, [])]
        if node.op_type not in WEIGHTED and all(id(c) in tail for c in after):
            tail.add(id(node))
    return [node.name for node in graph.node if id(node) in tail and node.name]


def check_int8(fp32_path: Path, int8_path: Path, x: np.ndarray, output: str, students: int = 1, *,
               threshold: float | None = None, dense: bool = False) -> QuantizedCheck:
    """The int8 graph's decisions against the fp32 graph's on inputs ``x``. ``output``: what the
    graphs give: ``probabilities`` (an ensemble), ``logits``, or ``student_logits`` (the
    ``students`` of a sliding-window ensemble side by side, ``exported_models.StudentLogits``).
    ``threshold``: the decision is p(positive) >= threshold, as predict calls it, not the larger
    probability. ``dense`` (segmentation): each class's masks are compared too (``class_dice``)."""
    import onnxruntime as ort

    fp32, int8 = (ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]) for p in (fp32_path, int8_path))
    same, total, worst = 0, 0, 0.0
    both: dict[int, int] = {}  # per class: twice the pixels both graphs give it, the pixels each gives it
    either: dict[int, int] = {}
    given: dict[int, list[int]] = {}  # per class: the pixels of the fp32 graph's and of the int8 graph's
    for batch in input_batches(x):
        p, q = (_probabilities(s.run(None, batch)[0], output, students) for s in (fp32, int8))
        a, b = ((r[:, 1] >= threshold).astype(np.int64) if threshold is not None else r.argmax(axis=1) for r in (p, q))
        agree = a == b
        same, total = same + int(agree.sum()), total + agree.size
        worst = max(worst, float(np.abs(p - q).max()))
        if dense:
            for c in np.union1d(np.unique(a), np.unique(b)).tolist():
                counts = [int((a == c).sum()), int((b == c).sum())]
                both[c] = both.get(c, 0) + 2 * int(((a == c) & agree).sum())
                either[c] = either.get(c, 0) + sum(counts)
                given[c] = [g + n for g, n in zip(given.get(c, [0, 0]), counts)]
    class_dice = {c: both[c] / either[c] for c in sorted(either)} if dense else None
    judged = tuple(c for c in sorted(either) if max(given[c]) >= MIN_JUDGED_PIXELS) if dense else ()
    return QuantizedCheck(same / total, worst, len(x), total, fp32_path.stat().st_size, int8_path.stat().st_size,
                          class_dice, judged, threshold)


def graph_probabilities(path: Path, x: np.ndarray, output: str, students: int = 1) -> np.ndarray:
    """The class probabilities an ONNX graph of ``output`` gives for inputs ``x`` (float64)."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return np.concatenate([_probabilities(session.run(None, batch)[0], output, students) for batch in input_batches(x)])


def _probabilities(out: np.ndarray, output: str, students: int) -> np.ndarray:
    out = out.astype(np.float64)
    if output == "probabilities":
        return out
    if output == "student_logits":  # [B, S*C, ...] -> each student's softmax, averaged
        out = out.reshape(out.shape[0], students, out.shape[1] // students, *out.shape[2:])
        return softmax(out, axis=2).mean(axis=1)
    return softmax(out, axis=1)
