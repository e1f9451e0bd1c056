"""``extend --full-labels``: the schema's ignore values stay ignored, every other code is "rest"."""

from __future__ import annotations

import numpy as np

from geociss.data.classes import ClassSchema
from geociss.engine.new_classes import extend_schema, new_label_schema

from fakes import LANDCOVER_4_SCHEMA

SCHEMA = LANDCOVER_4_SCHEMA


def test_full_labels_keep_the_schemas_ignore_values_ignored() -> None:
    schema = ClassSchema.from_dict(SCHEMA)
    extended, ids = extend_schema(schema, ["built-up"], learned=[0, 1, 2])
    labels = new_label_schema(extended, ids, [5], full_labels=True)
    raw = np.array([[0, 1, 2, 3], [4, 5, 6, 255]], dtype=np.uint16)
    # 0 (not labelled) and 255 (cloud) are ignored, 5 is built-up, the other codes the rest
    assert labels.encode(raw).tolist() == [[255, 0, 0, 0], [0, 1, 0, 255]]


def test_a_new_class_value_that_the_schema_ignores_becomes_the_class() -> None:
    schema = ClassSchema.from_dict(SCHEMA)
    extended, ids = extend_schema(schema, ["built-up"], learned=[0, 1, 2])
    labels = new_label_schema(extended, ids, [0], full_labels=True)
    assert labels.encode(np.array([[0, 1, 255]], dtype=np.uint16)).tolist() == [[1, 0, 255]]
