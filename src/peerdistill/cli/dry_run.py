"""``train --dry-run``: what the run would be, printed (``engine.run_plan.RunPlan``)."""

from __future__ import annotations

from rich.markup import escape
from rich.table import Table

from ..option_names import option
from ..wording import first_few, joined


def print_run_plan(plan, console, err_console, starts_from: set[str] = frozenset()) -> None:
    """``starts_from``: the models trained from their checkpoint's weights (fine-tuned)."""
    table = Table(title="train --dry-run: the models")
    for column, justify in (("model", "left"), ("role", "left"), ("architecture", "left"), ("parameters", "right"),
                            ("trained", "left")):
        table.add_column(column, justify=justify)
    for m in plan.members:
        trained = "no (frozen)" if m["frozen"] else "yes, from its checkpoint" if m["name"] in starts_from else "yes"
        table.add_row(escape(m["name"]), m["role"], escape(str(m["architecture"])), f"{m['parameters']:,}", trained)
    console.print(table)
    sizes = plan.split_sizes
    classes = len(plan.class_names)
    _say(console, f"data: {sizes['train']:,} train, {sizes['val']:,} val, {sizes['test']:,} test samples of "
                  f"{'x'.join(map(str, plan.input_shape))}, {classes} class{'es' if classes != 1 else ''} "
                  f"({escape(first_few(plan.class_names, 10))})")
    if plan.data_bytes is not None:  # (review 52g: a set too large for the machine said nothing before the OOM killer)
        mib = plan.data_bytes / 2**20
        _say(console, f"held in memory: {mib:,.1f} MiB (every split, images as float32"
                      f"{', masks as int64' if plan.task == 'segmentation' else ''}; what reading them peaks at: "
                      "README, Memory)")
    _print_edges(plan, console)
    speed = plan.speed
    packed = f"; students packed into one network: {'; '.join(' + '.join(g) for g in plan.packed)}" if plan.packed \
        else ""
    packed += "".join(f"; {students}: one by one ({why})" for students, why in plan.not_packed.items())
    batch = (f"batch {plan.batch_size}" if plan.whole_split_batch is None else  # (review 53c: "batch 2000" of 1,077)
             f"one batch of the whole training split ({plan.whole_split_batch:,} samples; train.batch_size "
             f"{plan.batch_size} is larger)")
    if plan.patches:  # (review 56i: said in run.json alone)
        patches = plan.patches
        side = patches["size"]
        batch += (f" of {side}x{side} patches ({patches.get('per_image', 16)} an image an epoch"
                  + (f", {patches['foreground']:.0%} centred on foreground" if patches.get("foreground") else "")
                  + f"; whole images scored by {side}x{side} windows, overlap {patches.get('overlap', 0.5):g})")
    _say(console, f"training: {plan.epochs} epoch(s) of {plan.steps_per_epoch:,} step(s), {batch}, on "
                  f"{plan.device}, {speed['precision']}{', channels_last' if speed['channels_last'] else ''}"
                  f"{', torch.compile' if speed['compile'] else ''}{packed}")
    where = _where_the_run_goes(plan)
    if plan.kept_aside:
        where += (f", moving what it holds besides the run ({', '.join(plan.kept_aside)}) to a folder beside it, "
                  f"'{plan.run_dir.name}.kept-YYYYmmdd-HHMMSS'")
    _say(console, f"{escape(where)}. Nothing was written; one forward of a few validation samples ran.")
    if plan.warnings:
        # (the data's and the first forward's warnings above are given by a run too, each time it is set up)
        _say(err_console, f"{len(plan.warnings)} of the warnings above would be given as training starts and kept "
                          "in run.json (training_warnings)")


def _print_edges(plan, console) -> None:
    """Every knowledge edge with the weight and temperature the run gives it (review 52f: 8 names
    and '...', the weights nowhere before training), and what else the graph decides."""
    if not plan.edges:
        _say(console, "no knowledge edge (each model learns from the labels alone)")
    elif plan.edge_details:
        table = Table(title=f"train --dry-run: {len(plan.edges)} knowledge edge(s)")
        for column, justify in (("edge", "left"), ("kind", "left"), ("weight", "right"), ("temperature", "right")):
            table.add_column(column, justify=justify)
        for e in plan.edge_details:
            table.add_row(escape(e["name"]), e["kind"], f"{e['weight']:g}",
                          "" if e["temperature"] is None else f"{e['temperature']:g}")
        console.print(table)
    else:  # (a plan made without the details)
        _say(console, f"{len(plan.edges)} knowledge edge(s): {escape(', '.join(plan.edges))}")
    extras = [f"the edges' weights rise to these over the first {plan.rampup_epochs} epoch(s) (distill.rampup_epochs)"
              ] if plan.edges and plan.rampup_epochs else []
    if plan.teacher_weighting == "confidence":
        extras.append("teachers combined per sample by how well each predicts the labels (CA-MKD, "
                      "teacher_weighting: confidence)")
    elif plan.teacher_weighting is not None:
        teachers = [m for m in plan.members if m["role"] == "teacher"]
        total = sum(m.get("weight", 1.0) for m in teachers)
        weights = [f"{m['name']} {m.get('weight', 1.0):g} ({m.get('weight', 1.0) / total:.0%})" for m in teachers]
        extras.append(f"teachers combined by a weighted average ({', '.join(weights)}: each weight's share)")
    if plan.supervised_weights:
        extras.append("own label loss weighted " + ", ".join(f"{escape(name)} {weight:g}"
                                                             for name, weight in plan.supervised_weights.items()))
    if plan.bystanders:  # (review 56b: a teacher under preset self, trained for nothing said)
        extras.append(f"{joined(plan.bystanders)} {'is' if len(plan.bystanders) == 1 else 'are'} in no edge: trained "
                      "from the labels alone and scored beside the others")
    if plan.connectors:
        extras.append(f"{plan.connectors} connector(s) between maps of other sizes")
    if plan.critics:
        extras.append(f"{plan.critics} critic(s) trained beside the models (holistic edges' discriminators)")
    if extras:
        _say(console, "; ".join(extras))


def _say(console, text: str) -> None:
    """A line of the plan: wrapped between words on a terminal (review 52j), whole in a log or a
    pipe (review 53b: lines cut at 120 columns mid-sentence, others not)."""
    console.print(text, highlight=False, soft_wrap=not console.is_terminal)


def _where_the_run_goes(plan) -> str:
    """What the run would do with its folder (``RunPlan.run_dir_verdict``), in words."""
    verdict = plan.run_dir_verdict
    if verdict is None:
        return "the run would write no files (no run directory)"
    if verdict == "new":
        return f"the run would be written to '{plan.run_dir}'"
    if verdict == "again":
        return f"'{plan.run_dir}' holds a run stopped in its first epoch: the run would start it again"
    return f"'{plan.run_dir}' holds a run: the run would replace it ({option('--overwrite')})"
