"""The population part shared by several workers through the store (service/population.py), on both
databases: the leader fits only once every registered platform has a row for a moment, on all of them, and
what each worker then reads equals one assessor's statistics over the whole population; the lease passes
on when its holder stops renewing it."""
from __future__ import annotations

import numpy as np

from detectors.assess import Assessor
from graph.ledger import Ledger
from ingest.pipeline import Pipeline
from ingest.dead_letters import MemoryDeadLetters
from ingest.sources import FileSource
from service.population import SharedPopulation, decode_statistical, encode_statistical
from service.store import Store


def _world_ledger(small_world_dir) -> Ledger:
    pipe = Pipeline(FileSource(small_world_dir), Ledger(), Assessor(use_hbos=False), [], MemoryDeadLetters())
    pipe.run()
    return pipe.ledger


def test_two_workers_halves_make_one_population(db, small_world_dir):
    ledger = _world_ledger(small_world_dir)
    pids = sorted(ledger.platforms)
    half = len(pids) // 2
    whole = Assessor(use_hbos=False)
    segments, X, labels = whole.population_rows(ledger, pids)
    want = whole.statistics(pids, segments, X, labels, ledger.now_ms, True)

    clock = [1_000_000]
    store = Store(db, clock=lambda: clock[0])
    workers = [SharedPopulation(store, "g", "w0"), SharedPopulation(Store(db, clock=lambda: clock[0]), "g", "w1")]
    fitters = [Assessor(use_hbos=False), Assessor(use_hbos=False)]
    shares = [pids[:half], pids[half:]]

    def post(i: int) -> dict:
        mine = shares[i]
        seg, Xi, lab = fitters[i].population_rows(ledger, mine)
        return workers[i].statistics(ledger.now_ms, mine, seg, Xi, lab, True, fit=fitters[i].statistics,
                                     registered=pids)

    assert post(0) == {}  # w0 leads, but half the population is no population: nothing fitted yet
    assert workers[0].leading_ and store.last_population_round("g") == -1
    assert workers[0].stale_for() is not None  # health says so after a while (a worker without the group's store)
    got1 = post(1)  # w1 completes the moment; w0 holds the lease, so nothing is fitted by w1
    assert not workers[1].leading_ and got1 == {}
    assert workers[0].lead(fitters[0].statistics, pids)  # the leader's next turn fits on every row
    for i in (0, 1):
        res = workers[i].results()
        assert workers[i].stale_for() is None
        assert set(res) == set(pids) and {r for r, _ in res.values()} == {ledger.now_ms}
        assert {pid: st for pid, (_, st) in res.items()} == want  # as one assessor over the whole population
    assert store._rows("select count(*) as n from population_row where scope = 'g'")[0]["n"] == 0  # done with

    # the leader stops renewing: after the lease, the other takes over; before it, not
    clock[0] += 5_000
    assert not workers[1].lead(fitters[1].statistics, pids)
    clock[0] += 6_000
    assert workers[1].lead(fitters[1].statistics, pids) is False and workers[1].leading_


def test_a_result_survives_the_store_exactly():
    from detectors.learning import Learned
    from detectors.assess import Statistical
    from detectors.scoring import OutlierResult

    st = Statistical(OutlierResult(0.1234567890123, (("a", 0.5), ("b", 0.25))),
                     Learned(0.3, 0.7, 0.4, (("c", -1.5),), True))
    assert decode_statistical(encode_statistical(st)) == st
    assert decode_statistical(encode_statistical(Statistical(OutlierResult(float(np.float64(0.5)), ())))) == \
        Statistical(OutlierResult(0.5, ()))


def test_a_store_that_fails_does_not_stop_the_assessment():
    """A dropped connection fails one call: the worker scores with what it last had, the loop goes on."""
    class Gone:
        def __getattr__(self, name):
            def fail(*a, **k):
                raise ConnectionError("store away")
            return fail

    pop = SharedPopulation(Gone(), "g", "w0")
    got = pop.statistics(1, ["P1"], ["seg"], np.zeros((1, 3)), [None], False, fit=lambda *a: {}, registered=["P1"])
    assert got == {}
