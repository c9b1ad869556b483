"""Typed run configuration: YAML in, validated pydantic models out, plus key=value overrides.

One module per job: the presets, what every section shares, the cohort's, the data's and the
training's sections, the whole run's config, reading YAML, key=value overrides, loading, and the
messages of a config that does not validate. Import from here (``peerdistill.config``)."""

from .cohort_spec import (RESERVED_MODEL_NAMES, SOFTENED_KINDS, UNLAYERED_KINDS, DistillSpec, EdgeSpec, ModelSpec,
                          model_name_problems, unread_distill_keys, unread_distill_problems, unread_edge_keys)
from .data_spec import (ELASTIC_LIMIT, FILE_KINDS, FIXED_SIZE_KINDS, FOLDERS_ONLY_KEYS, IMAGE_FILE_KINDS,
                        IMAGENET_STATS, KIND_ONLY_KEYS, KINDS_OF_TASK, NO_FOLD_KINDS, NOT_THE_SPLIT, SELF_NAMING_KINDS,
                        SPLIT_KEYS, TRAINING_ONLY_KEYS, ChannelStats, DataSpec, data_places, key_applies,
                        saved_data_section, without_other_kinds_keys)
from .loading import (as_read, default_config, key_paths, load_config, load_saved_config, read_saved_config, to_yaml,
                      validate)
from .messages import format_validation_error, refuse
from .overrides import apply_overrides
from .presets import (NAMED_PRESETS, PEER_PRESETS, PRESET_DOCS, PRESETS, PRESETS_READING, TEACHER_PRESETS,
                      TEACHER_TERM_WEIGHTS, PresetName, check_preset_names)
from .run_spec import RunConfig, default_run_name, named_as_written
from .sections import SEED_LIMIT
from .training_spec import DECODING_KEYS, DetectSpec, LogSpec, OptimSpec, TrainSpec
from .yaml_files import load_config_file, load_yaml, yaml_value

__all__ = ["ChannelStats", "DECODING_KEYS", "DataSpec", "DetectSpec", "DistillSpec", "ELASTIC_LIMIT", "EdgeSpec",
           "FILE_KINDS", "FIXED_SIZE_KINDS", "FOLDERS_ONLY_KEYS", "IMAGENET_STATS", "IMAGE_FILE_KINDS",
           "KINDS_OF_TASK", "KIND_ONLY_KEYS", "LogSpec", "ModelSpec", "NAMED_PRESETS", "NOT_THE_SPLIT",
           "NO_FOLD_KINDS", "OptimSpec", "PEER_PRESETS", "PRESETS", "PRESETS_READING", "PRESET_DOCS", "PresetName",
           "RESERVED_MODEL_NAMES", "RunConfig", "SEED_LIMIT", "SELF_NAMING_KINDS", "SOFTENED_KINDS", "SPLIT_KEYS",
           "TEACHER_PRESETS", "TEACHER_TERM_WEIGHTS", "TRAINING_ONLY_KEYS", "TrainSpec", "UNLAYERED_KINDS",
           "apply_overrides", "as_read", "check_preset_names", "data_places", "default_config", "default_run_name",
           "format_validation_error", "key_applies", "key_paths", "load_config", "load_config_file", "load_saved_config", "load_yaml",
           "model_name_problems", "named_as_written", "read_saved_config", "refuse", "saved_data_section", "to_yaml",
           "unread_distill_keys", "unread_distill_problems", "unread_edge_keys", "validate",
           "without_other_kinds_keys", "yaml_value"]
