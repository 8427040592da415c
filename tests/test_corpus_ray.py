"""`amanuensis batch --ray` on a real two-node Ray cluster on 127.0.0.1 (ray.cluster_utils.Cluster)."""

from __future__ import annotations

import subprocess
import time

import pytest

from .corpus_fixtures import CLIPS, batch_command, batch_env, latest, make_corpus, read_manifest, run_batch

ray = pytest.importorskip("ray", reason="the ray extra is not installed (pip install 'amanuensis[ray]')")
from ray.cluster_utils import Cluster  # noqa: E402

OBJECT_STORE_BYTES = 200 * 1024 * 1024
NODE_ARGS = {"num_cpus": 1, "object_store_memory": OBJECT_STORE_BYTES}


@pytest.fixture(scope="module")
def cluster():
    """A head node with one CPU; each test adds its own second node."""
    cluster = Cluster(initialize_head=True, head_node_args={**NODE_ARGS, "include_dashboard": False})
    try:
        yield cluster
    finally:
        cluster.shutdown()


@pytest.fixture()
def second_node(cluster):
    node = cluster.add_node(**NODE_ARGS)
    cluster.wait_for_nodes()
    yield node
    if node in cluster.worker_nodes:
        cluster.remove_node(node)


def _texts(out) -> dict[str, str]:
    return {str(p.relative_to(out)): p.read_text() for p in sorted(out.rglob("*")) if p.suffix in (".txt", ".json")}


def test_two_nodes_give_the_local_transcripts_and_both_are_used(tmp_path, cluster, second_node):
    corpus = make_corpus(tmp_path)
    common = ("--format", "text,json", "--threads", "1", "--no-progress")
    local = run_batch(str(corpus), "-o", str(tmp_path / "local"), *common)
    assert local.returncode == 1, local.stderr  # the junk file
    on_ray = run_batch(str(corpus), "-o", str(tmp_path / "ray"), "--ray", cluster.address, *common)
    assert on_ray.returncode == 1, on_ray.stderr
    assert "9 files: 8 transcribed, 0 already done, 1 failed" in on_ray.stderr
    assert _texts(tmp_path / "ray") == _texts(tmp_path / "local")
    entries = latest(tmp_path / "ray")
    done = [e for e in entries.values() if e["status"] == "done"]
    assert len(done) == len(CLIPS)
    nodes = {e["node"].split(":")[-1] for e in done}
    assert nodes == {cluster.head_node.node_id[:12], second_node.node_id[:12]}
    failed = [e for e in entries.values() if e["status"] == "failed"]
    assert len(failed) == 1 and "audio" in failed[0]["error"]

    again = run_batch(str(corpus), "-o", str(tmp_path / "ray"), "--ray", cluster.address, *common)
    assert "0 transcribed, 8 already done, 1 failed" in again.stderr


def test_a_node_removed_mid_run_costs_only_its_files(tmp_path, cluster, second_node):
    corpus = make_corpus(tmp_path, junk=False)
    out = tmp_path / "out"
    command = batch_command(str(corpus), "-o", str(out), "--ray", cluster.address, "--replicas", "2",
                            "--threads", "1", "--no-progress")
    process = subprocess.Popen(command, env=batch_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lost_node = second_node.node_id[:12]
    deadline = time.monotonic() + 300
    while process.poll() is None and time.monotonic() < deadline:
        if any(e["node"].endswith(lost_node) for e in read_manifest(out)):
            break
        time.sleep(0.05)
    done_before = len(read_manifest(out))
    assert process.poll() is None and done_before < len(CLIPS), "the run ended before the node could be removed"
    cluster.remove_node(second_node)
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == 0, stderr
    assert f"{len(CLIPS)} files: {len(CLIPS)} transcribed, 0 already done, 0 failed" in stderr
    entries = latest(out)
    assert len(entries) == len(CLIPS) and all(e["status"] == "done" for e in entries.values())
    assert "lost" in stderr and "retrying" in stderr  # its in-flight files went to the head node's actor
    assert any(e["node"].endswith(cluster.head_node.node_id[:12]) for e in read_manifest(out)[done_before:])
    assert len(list(out.rglob("*.txt"))) == len(CLIPS)
