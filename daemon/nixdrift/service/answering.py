"""The daemon's answer to the next `nixdrift check` on its host (`nixdrift.answer`, `nixdrift.quick`).

Each time the daemon stores its report, it publishes beside it in its state directory what `check`
would print from that stored report: the report read back as `check` reads it, with the baselines
accepted in the history and the daemon's threshold. A check whose question is the same then prints
it without loading the pipeline, SQLite or even argparse.

The old answer is discarded at once, on the worker thread, when the report is stored: an answer is
never older than the stored report. Rendering the new one (about 0.6 ms of CPU a finding: the report
parsed back and four renders) happens on a thread of its own, one answer at a time, the newest
only, and resting four times as long as the last one took (at most a fifth of a core in a storm;
meanwhile `check` reads the stored report). An answer whose report was replaced while it was
rendered is dropped (`answer.publish`'s guard, under the lock the discard takes). A report of more
than MAX_FINDINGS findings is not answered (its renders would hold it in memory several times
over). A failure to publish is logged and costs only speed.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from nixdrift import answer

if TYPE_CHECKING:
    from nixdrift.config import Config
    from nixdrift.pipeline import ScanOptions
    from nixdrift.service.history import Store

log = logging.getLogger(__name__)

# About 0.6 ms of CPU and 6 KiB at the peak a finding (the text parsed back, four renders): 2,000
# findings cost 1.2 s and 12 MiB on the answering thread; 20,000 would cost 12 s and 125 MiB, in a
# storm, against the daemon's bound of a few hundred bytes a finding (tests/daemon/test_fire_memory).
MAX_FINDINGS = 2_000
REST = 4.0  # after an answer that took t seconds, the next waits REST * t (capped by MAX_REST)
MAX_REST = 60.0

_lock = threading.Lock()  # the generations, and the moment an answer becomes visible or is discarded
_generation: dict[Path, int] = {}


@dataclass(frozen=True, slots=True)
class Job:
    directory: Path
    generation: int
    text: str
    accepted: dict[str, str]
    cfg: Config
    opts: ScanOptions
    captured: float  # the oldest category capture
    captured_of: frozenset[str]  # the categories captured
    stamp: list[int] | None  # answer.accepted_sig before the accepted set was read


def publish(
    state_dir: Path,
    store: Store,
    cfg: Config,
    opts: ScanOptions,
    captured_at: Mapping[str, float],
    *,
    findings: int,
    background: bool = True,
) -> bool:
    """Discard the answer of the previous report, and publish the one of the report just stored in
    `store` (of `findings` findings): on the answering thread, else (`background=False`) now.
    True when it was published or handed over. Never raises."""
    directory = answer.daemon_dir(state_dir)
    try:
        generation = retire(state_dir)
        if findings > MAX_FINDINGS:
            log.info("no answer published for `nixdrift check`: %d findings (it reads the history)", findings)
            return False
        text = store.meta("report")
        # what service.history.stored_report takes as fresh: a capture time for every category
        if not text or not captured_at:
            return False
        stamp = answer.accepted_sig(directory)  # before the set: an accept committed after it moves it
        accepted = {fid: actual for fid, (actual, _reason) in store.accepted().items()}
        captured = min(float(t) for t in captured_at.values())
        job = Job(directory, generation, text, accepted, cfg, opts, captured, frozenset(captured_at), stamp)
        if background:
            _answerer.submit(job)
            return True
        return render(job)
    except Exception:  # an answer is only a shortcut: never let it cost the daemon its report
        log.exception("publishing the answer for `nixdrift check` in %s failed (it reads the history)", directory)
        return False


def retire(state_dir: Path) -> int:
    """Discard the published answer, and any answer still being rendered, before a new report is
    stored: a crash between the two then leaves no answer older than the stored report. Returns
    the new generation. Never raises (an answer that cannot be removed is logged)."""
    directory = answer.daemon_dir(state_dir)
    with _lock:
        generation = _generation[directory] = _generation.get(directory, 0) + 1
        try:
            answer.discard(directory)
        except OSError as exc:
            log.warning("cannot discard the answer for `nixdrift check` in %s: %s", directory, exc)
    return generation


def render(job: Job) -> bool:
    """Publish the answer of `job` unless a newer report replaced it meanwhile. Never raises."""
    from nixdrift.models import Report
    from nixdrift.nixos_root import is_nixos

    try:
        stored = Report.from_json(json.loads(job.text))
        if job.captured_of < {c.value for c in stored.categories}:  # not fresh to service.history.stored_report
            return False
        threshold = job.opts.policy.threshold
        shown = replace(stored.with_baselines(job.accepted), threshold=threshold)  # as commands.check._from_daemon
        root = str(job.opts.root.prefix)
        return answer.publish(
            job.directory,
            shown,
            question=answer.question(
                job.cfg, root, job.opts.flake, job.opts.host, threshold, nixos=is_nixos(job.opts.root)
            ),
            validity={
                "kind": "daemon",
                "captured": job.captured,
                "generated": generated_epoch(stored.generated_at),
                "accepted": job.stamp,
            },
            guard=_current(job),
        )
    except Exception:
        log.exception("publishing the answer for `nixdrift check` in %s failed (it reads the history)", job.directory)
        return False


@contextlib.contextmanager
def _current(job: Job) -> Iterator[bool]:
    with _lock:
        yield _generation.get(job.directory) == job.generation


def generated_epoch(stamp: str) -> float | None:
    """The report's time as `commands.check` reads it for the header's age (None: it says "unknown")."""
    from datetime import datetime

    try:
        return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


class Answerer:
    """One thread rendering answers: the newest job only, resting between two."""

    def __init__(self, work: Callable[[Job], bool] = render) -> None:
        self._work = work
        self._cond = threading.Condition()
        self._job: Job | None = None
        self._busy = False
        self._thread: threading.Thread | None = None

    def submit(self, job: Job) -> None:
        with self._cond:
            self._job = job
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="nixdrift-answer", daemon=True)
                self._thread.start()
            self._cond.notify_all()

    def idle(self, timeout: float) -> bool:
        """Wait until no job waits or runs (tests); False on timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._job is not None or self._busy:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
        return True

    def _run(self) -> None:
        rest_until = 0.0
        while True:
            with self._cond:
                while self._job is None:
                    self._cond.wait()
            time.sleep(max(0.0, rest_until - time.monotonic()))  # a newer job may replace it meanwhile
            with self._cond:
                job, self._job, self._busy = self._job, None, True
            try:
                start = time.monotonic()
                if job is not None:
                    self._work(job)
                rest_until = time.monotonic() + min(MAX_REST, REST * (time.monotonic() - start))
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()


_answerer = Answerer()
