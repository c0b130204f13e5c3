"""The host batches and chunks of a stage (module_utils/rollout_plan.py), checked against the
batches Ansible's own playbook executor makes: these tests import the controller's Ansible, so
they live with the controller-side plugins' tests."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
from ansible.executor.playbook_executor import PlaybookExecutor
from ansible.utils.helpers import pct_to_int

from ansible_collections.gradual.rollout.plugins.module_utils.rollout_plan import (
    host_chunks,
    host_count,
    stage_batches,
)


# ---- host batches and chunks ----------------------------------------------------------------
def ansible_batches(serial, total):
    """The batch sizes Ansible's own playbook executor makes of TOTAL hosts with SERIAL."""
    executor = PlaybookExecutor.__new__(PlaybookExecutor)
    hosts = ["h%d" % index for index in range(total)]
    executor._inventory = SimpleNamespace(get_hosts=lambda pattern, order=None: list(hosts))
    play = SimpleNamespace(hosts="all", order=None, serial=list(serial))
    return [len(batch) for batch in executor._get_serialized_batches(play)]


@pytest.mark.parametrize("serial", [[1, "100%"], ["100%"], [1, "50%", "100%"], ["25%"], [2, 3], ["10%", "30%"], [1]])
@pytest.mark.parametrize("total", [1, 2, 3, 4, 7, 8, 50])
def test_stage_batches_are_the_batches_ansible_makes(serial, total):
    assert stage_batches(serial, total) == ansible_batches(serial, total)


@pytest.mark.parametrize("entry", [1, 3, "1%", "25%", "33%", "50%", "100%"])
@pytest.mark.parametrize("total", [1, 2, 4, 8, 50])
def test_host_count_reads_a_percentage_like_ansible(entry, total):
    assert host_count(entry, total) == pct_to_int(entry, total)


@pytest.mark.parametrize("serial, unavailable, total, chunks, gate_after, width", [
    # the default: one host after the other, gates after each batch as before
    ([1, "100%"], 1, 2, [1, 1], [1, 2], 1),
    ([1, "100%"], 1, 8, [1] * 8, [1, 8], 1),
    # 25 % of 8 hosts: the canary alone, then the other seven two by two
    ([1, "100%"], "25%", 8, [1, 2, 2, 2, 1], [1, 8], 2),
    ([1, "100%"], "25%", 4, [1, 1, 1, 1], [1, 4], 1),
    # never every host at once: nginx keeps an upstream
    (["100%"], "100%", 4, [3, 1], [4], 3),
    (["100%"], 5, 2, [1, 1], [2], 1),
    (["100%"], 1, 1, [1], [1], 1),
    ([2, "100%"], 3, 10, [2, 3, 3, 2], [2, 10], 3),
])
def test_host_chunks(serial, unavailable, total, chunks, gate_after, width):
    cycle = host_chunks(serial, unavailable, total)
    assert cycle["serial"] == chunks and cycle["gate_after"] == gate_after and cycle["max_unavailable"] == width
    assert sum(cycle["serial"]) == total and cycle["gate_after"][-1] == total
    assert cycle["batches"] == ansible_batches(serial, total)
    # the play's serial made of the chunks ends each batch of the stage on a chunk's end
    ends = [sum(chunks[:index + 1]) for index in range(len(chunks))]
    assert set(gate_after) <= set(ends)
    assert ansible_batches(chunks, total) == chunks


def test_a_stage_that_drains_nothing_keeps_its_batches_whole():
    cycle = host_chunks(["100%"], 1, 2, drains=False)
    assert cycle == dict(serial=[2], gate_after=[2], batches=[2], max_unavailable=0)
    assert host_chunks([1, "100%"], "25%", 8, drains=False)["serial"] == [1, 7]


def test_host_chunks_refuses_a_stage_without_hosts():
    with pytest.raises(ValueError, match="at least one app host"):
        host_chunks([1, "100%"], 1, 0)
