"""A line's pass number is that line's, not the run's final count.

A QMP log with 13 dirty-bitmap syncs at the end once said "pass 13 by now" on every
line past one RAM's worth, including a reply whose own dirty-sync-count was 4.
"""

from __future__ import annotations

import json
import re

from conftest import EXAMPLES, FIXTURES, REAL_LOGS
from migtune.analysis.explain import explain
from migtune.sources import load_run

QMP_LOG = EXAMPLES / "qmp-4GiB-xbzrle-autoconverge.jsonl"
POWER8 = REAL_LOGS / "qemu-hmp-info-migrate-power8-hugepage-nonconverging.txt"
HMP_SNAPSHOTS = FIXTURES / "hmp" / "qemu-8.2-snapshots-autoconverge.txt"


def test_each_reply_names_its_own_pass():
    checked = 0
    for ln in explain(load_run(QMP_LOG)).lines:
        for note in ln.notes:
            m = re.search(r"\(pass (\d+) by now\)", note)
            if not m:
                continue
            reply = json.loads(ln.text)["return"]
            assert int(m.group(1)) == reply["ram"]["dirty-sync-count"], ln.text[:80]
            checked += 1
    assert checked >= 5


def test_single_snapshot_uses_the_run_count():
    # one `info migrate` snapshot with "dirty sync count: 6": the run's count is the line's
    notes = [n for ln in explain(load_run(POWER8)).lines for n in ln.notes]
    assert any("2.17x the 8.0 GiB RAM" in n and "(pass 6 by now)" in n for n in notes)


def test_several_snapshots_give_a_lower_bound():
    # the transferred line comes before its snapshot's sync count: say only what is sure
    notes = [n for ln in explain(load_run(HMP_SNAPSHOTS)).lines for n in ln.notes]
    assert any("(pass 2 or later)" in n for n in notes)
    assert not any("by now" in n for n in notes)
