"""The named presets: who teaches whom, and which distill keys each one reads."""

from __future__ import annotations

import difflib
from typing import Literal, get_args

from ..errors import ConfigError


PresetName = Literal["independent", "kd", "ml", "kd+ml", "styles", "styles-logits", "styles-features",
                     "multi-teacher", "self", "custom"]
PRESETS = get_args(PresetName)
# who teaches whom in each named preset (`peerdistill presets`)
PRESET_DOCS = {
    "independent": "labels only: every model trains alone (baseline)",
    "kd": "teacher logits -> each student (Hinton et al. 2015)",
    "ml": "student logits <-> student logits (Deep Mutual Learning, Zhang et al. 2018)",
    "kd+ml": "both: teacher -> students and students <-> students (Niyaz & Bathula, ISBI 2022)",
    "styles": "teacher logits -> students 1, 3, ...; teacher features -> students 2, 4, ...; students "
              "exchange logits and features (Niyaz et al., learning styles, 2022)",
    "styles-logits": "ablation of styles: every student learns the teacher's logits; students exchange logits",
    "styles-features": "ablation of styles: every student learns the teacher's features; students exchange features",
    "multi-teacher": "several teachers' soft targets, averaged by their weights (or per sample by how well each "
                     "predicts the labels: teacher_weighting confidence, CA-MKD) -> each student",
    "self": "each model's deepest classifier -> its own shallow heads, plus feature hints (Be Your Own Teacher)",
}
TEACHER_PRESETS = ("kd", "kd+ml", "styles", "styles-logits", "styles-features", "multi-teacher")
# distill weights of terms from the teachers, added by the presets that have a teacher
TEACHER_TERM_WEIGHTS = ("pair_weight", "holistic_weight", "cwd_weight")
PEER_PRESETS = ("ml", "kd+ml", "styles", "styles-logits", "styles-features")
# The presets whose edges read each distill key (the teacher's and the peers' logit edges, the
# feature edges); set under another preset, a key would change nothing.
# (styles gives the teacher's logits to every other student, and its features to the rest)
TEACHER_LOGITS_TO_EVERY_STUDENT = ("kd", "kd+ml", "styles-logits", "multi-teacher")
PEER_LOGITS_ALONE = ("ml", "kd+ml", "styles-logits")  # (styles: peers exchange features too)
_TEACHER_LOGITS = tuple(p for p in PRESETS if p in (*TEACHER_LOGITS_TO_EVERY_STUDENT, "styles"))  # (listed in order)
_PEER_LOGITS = tuple(p for p in PRESETS if p in (*PEER_LOGITS_ALONE, "styles"))
_FEATURES = ("styles", "styles-features")
PRESETS_READING = {**dict.fromkeys(("alpha", "kd_loss", "dkd_nckd_weight", "kd_temperature"), _TEACHER_LOGITS),
                   **dict.fromkeys(("beta", "ml_temperature"), _PEER_LOGITS),
                   **dict.fromkeys(("gamma", "feature_loss"), _FEATURES),
                   "teacher_weighting": _TEACHER_LOGITS}  # weighs the teachers' soft targets, not their features
NAMED_PRESETS = tuple(p for p in PRESETS if p != "custom")  # those an option can name alone


def check_preset_names(option: str, names: list[str]) -> None:
    """Refuse names that are not named presets (``custom`` needs edges a name cannot give)."""
    bad = [n for n in names if n not in NAMED_PRESETS]
    if not names or bad:
        close = {n: difflib.get_close_matches(n, NAMED_PRESETS, n=1) for n in bad}
        guesses = "".join(f" ('{n}': did you mean '{c[0]}'?)" for n, c in close.items() if c)
        raise ConfigError(f"{option}: unknown preset {', '.join(map(repr, bad)) or '(none given)'}{guesses}; "
                          f"choose from {', '.join(NAMED_PRESETS)}")
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:  # one run would be counted as two seeds' worth of results
        raise ConfigError(f"{option}: {', '.join(map(repr, twice))} given twice; list each preset once")
