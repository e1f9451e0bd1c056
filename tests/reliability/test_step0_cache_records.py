"""The shared step-0 cache can be seen and pruned: runs record their entry, train notes its size."""

from __future__ import annotations

import json
import shutil

from test_step0_cache import config, scenes

from geociss.engine.bundle_files import STEP0_RECORD, step0_cache_note
from geociss.engine.runner import ScenarioRunner


def test_runs_record_their_step0_entry_and_train_notes_the_cache(tmp_path):
    root = scenes(tmp_path)
    out = root / "runs"
    assert step0_cache_note(out) is None  # no cache yet: nothing to say

    logs: list[str] = []
    first = ScenarioRunner(config(root), log=logs.append, progress=False)
    digest = first.step_hash(0, None)
    first.run_step(0, digest)
    cache = out / ".step0" / digest / "bundle.safetensors"
    record = json.loads((first.step_dir(0) / STEP0_RECORD).read_text())
    assert record == {"entry": digest, "path": str(cache)}
    size = cache.stat().st_size / 2**20
    assert logs[-1] == (
        f"note: shared step-0 cache {out / '.step0'}: 1 model(s), {size:.1f} MiB; deleting it "
        "is safe (a missing model is trained again when a run needs it)"
    )

    shutil.rmtree(out / ".step0")  # pruning the cache: the next run trains step 0 again
    logs.clear()
    second = ScenarioRunner(config(root, "mib"), log=logs.append, progress=False)
    second.run_step(0, digest)
    assert cache.is_file() and not any("reusing" in m for m in logs)
    assert json.loads((second.step_dir(0) / STEP0_RECORD).read_text())["entry"] == digest
