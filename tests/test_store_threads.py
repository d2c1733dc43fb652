"""One run store shared by the loop's threads (evaluation workers commit while the overlapped
pipeline's proposer reads): a read never sees half of another thread's transaction, and never fails."""
from __future__ import annotations

import threading

from agent.store import RunStore


def test_reads_from_other_threads_see_whole_transactions_only(tmp_path):
    store = RunStore(tmp_path / "run", create=True)
    errors, counts, stop = [], [], threading.Event()

    def write() -> None:
        try:
            for i in range(300):
                with store.transaction() as db:   # two rows per transaction, so a whole view is even
                    for _ in range(2):
                        store.insert_candidate(db, cycle=i, proposer="random", parent_id=None, source="s" * 200,
                                               diff="", status="pending")
        except Exception as exc:  # noqa: BLE001 - collected for the assertion
            errors.append(exc)
        finally:
            stop.set()

    def read() -> None:
        try:
            while not stop.is_set():
                counts.append(len(store.candidates()))
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=write)] + [threading.Thread(target=read) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[:3]
    assert counts and all(c % 2 == 0 for c in counts), sorted({c for c in counts if c % 2})[:10]
    assert len(store.candidates()) == 600
