"""The daemon's answer to the next `nixdrift check` on its host (`nixdrift.answer`, `nixdrift.quick`).

Each time the daemon stores its report, it publishes beside it in its state directory what `check`
would print from that stored report: the report read back as `check` reads it, with the baselines
accepted in the history and the daemon's threshold. A check whose question is the same then prints
it without loading the pipeline, SQLite or even argparse.

The old answer is discarded first, so an answer is never older than the stored report. A report of
more than MAX_FINDINGS findings is not published (its renders would hold the whole report in memory
several times over, in a storm): `check` then reads the stored report from SQLite, as it always can.
A failure to publish is logged and costs only speed.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from nixdrift import answer

if TYPE_CHECKING:
    from nixdrift.config import Config
    from nixdrift.pipeline import ScanOptions
    from nixdrift.service.history import Store

log = logging.getLogger(__name__)

MAX_FINDINGS = 20_000


def publish(
    state_dir: Path, store: Store, cfg: Config, opts: ScanOptions, captured_at: Mapping[str, float], *, findings: int
) -> bool:
    """Publish the answer of the report just stored in `store` (of `findings` findings); True when
    published. Never raises."""
    directory = answer.daemon_dir(state_dir)
    try:
        answer.discard(directory)
        if findings > MAX_FINDINGS:
            log.info("no answer published for `nixdrift check`: %d findings (it reads the history)", findings)
            return False
        return _publish(directory, store, cfg, opts, captured_at)
    except Exception:  # an answer is only a shortcut: never let it cost the daemon its report
        log.exception("publishing the answer for `nixdrift check` in %s failed (it reads the history)", directory)
        return False


def _publish(directory: Path, store: Store, cfg: Config, opts: ScanOptions, captured_at: Mapping[str, float]) -> bool:
    from nixdrift.models import Report
    from nixdrift.nixos_root import is_nixos

    text = store.meta("report")
    # what service.history.stored_report takes as fresh: a capture time for every category
    if not text or not captured_at:
        return False
    stored = Report.from_json(json.loads(text))
    if set(captured_at) < {c.value for c in stored.categories}:
        return False
    accepted = {fid: actual for fid, (actual, _reason) in store.accepted().items()}
    threshold = opts.policy.threshold
    shown = replace(stored.with_baselines(accepted), threshold=threshold)  # as commands.check._from_daemon
    root = str(opts.root.prefix)
    answer.publish(
        directory,
        shown,
        question=answer.question(cfg, root, opts.flake, opts.host, threshold, nixos=is_nixos(opts.root)),
        validity={
            "kind": "daemon",
            "captured": min(float(t) for t in captured_at.values()),
            "generated": generated_epoch(stored.generated_at),
        },
    )
    return True


def generated_epoch(stamp: str) -> float | None:
    """The report's time as `commands.check` reads it for the header's age (None: it says "unknown")."""
    from datetime import datetime

    try:
        return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None
