"""redis-py's RedisCluster routes every keyed form of forms.json to the master that owns the
key, from the server's own command metadata (COMMAND), without a MOVED redirection.

For each form, on a key of each of the three masters:
  - COMMAND GETKEYSANDFLAGS names the form's keys with their flags;
  - the slot redis-py computes is the server's CLUSTER KEYSLOT of the first key, and the node
    it picks for that slot is the one CLUSTER SLOTS names;
  - sent with execute_command, the command is counted (INFO commandstats) on the owner only
    and no node answered MOVED (INFO errorstats), the reply is the expected one, and the
    owner holds the expected result.
Run by scripts/test-cluster-clients, which starts the cluster: CLUSTER_PORTS names its masters.
"""

import os
import sys
import time

import redis
from redis.cluster import ClusterNode, RedisCluster
from redis.exceptions import MovedError, RedisClusterException

import forms as spec


def connect(port):
    return redis.Redis(port=port, protocol=3, decode_responses=True)


PORTS = [int(p) for p in os.environ["CLUSTER_PORTS"].split()]
NODES = {port: connect(port) for port in PORTS}
ANY = NODES[PORTS[0]]


def keyslot(key):
    return ANY.execute_command("CLUSTER KEYSLOT", key)


def owner_of(key):
    """The port of the master serving `key`, by the server (CLUSTER KEYSLOT, CLUSTER SLOTS)."""
    slot = keyslot(key)
    for lo, hi, master, *_ in ANY.execute_command("CLUSTER SLOTS"):
        if lo <= slot <= hi:
            return int(master[1])
    raise AssertionError(f"slot {slot} of {key!r} is not served")


def counters():
    """Per node: the module's command calls and the MOVED replies given so far."""
    snapshot = {}
    for port, node in NODES.items():
        calls = {
            name.removeprefix("cmdstat_"): stats["calls"]
            for name, stats in node.info("commandstats").items()
        }
        moved = node.info("errorstats").get("errorstat_MOVED", {}).get("count", 0)
        snapshot[port] = (calls, moved)
    return snapshot


def moved_between(before, after):
    return {port: after[port][1] - before[port][1] for port in PORTS}


def calls_between(before, after, command):
    name = command.lower()
    return {port: after[port][0].get(name, 0) - before[port][0].get(name, 0) for port in PORTS}


def check_counters_see_a_redirect():
    """The measure itself: a keyed module command sent to a node that does not own its key
    is answered MOVED, and errorstats counts it there."""
    key = "probe:{counter}"
    elsewhere = next(p for p in PORTS if p != owner_of(key))
    before = counters()
    try:
        NODES[elsewhere].execute_command("RETENTION.EXPLAIN", key)
        raise AssertionError("a non-owner answered RETENTION.EXPLAIN without MOVED")
    except MovedError:
        pass
    moved = moved_between(before, counters())
    assert moved == {p: int(p == elsewhere) for p in PORTS}, f"MOVED counted as {moved}"


def check_every_keyed_command_has_forms(forms):
    """Every keyed command of this module the server lists (COMMAND) is exercised here
    (other modules' commands, such as Redis 8's own vector sets, are not ours)."""
    ours = {
        name.decode() if isinstance(name, bytes) else name
        for name in ANY.command_list(module="retention")
    }
    keyed = {
        name
        for name, info in ANY.command().items()
        if name in ours and (info["first_key_pos"] > 0 or "movablekeys" in info["flags"])
    }
    covered = {form["args"][0].lower() for form in forms}
    missing = keyed - covered
    assert keyed and not missing, f"keyed module commands without a form: {sorted(missing)}"
    return keyed


def check_getkeysandflags(args, expected):
    got = ANY.execute_command("COMMAND GETKEYSANDFLAGS", *args)
    got = [(key, sorted(flags)) for key, flags in got]
    want = [(key, sorted(flags)) for key, flags in expected]
    assert got == want, f"COMMAND GETKEYSANDFLAGS {args}: {got}, expected {want}"


def check_client_target(cluster, args, first_key, owner):
    slot = cluster.determine_slot(*args)
    server_slot = keyslot(first_key)
    assert slot == server_slot, f"{args}: redis-py slot {slot}, server's {server_slot}"
    node = cluster.nodes_manager.get_node_from_slot(slot)
    assert node.port == owner, f"{args}: redis-py picks node {node.port}, owner is {owner}"


def run_form(cluster, form, owner):
    args = form["args"]
    expected_keys = form["keys"]
    check_getkeysandflags(args, expected_keys)
    check_client_target(cluster, args, expected_keys[0][0], owner)
    before = counters()
    reply = cluster.execute_command(*args)
    after = counters()
    moved = moved_between(before, after)
    assert not any(moved.values()), f"{args}: MOVED answered by {moved}"
    calls = calls_between(before, after, args[0])
    assert calls == {p: int(p == owner) for p in PORTS}, f"{args}: calls per node {calls}"
    spec.check_reply(args, reply, form["reply"])
    if "then" in form:
        command, want = form["then"]
        got = NODES[owner].execute_command(*command)
        assert got == want, f"after {args}: {command} = {got!r}, expected {want!r}"


def check_cross_slot_migrate(cluster, tags):
    """Both MIGRATE keys are declared: redis-py refuses keys of two slots itself."""
    args = ["ACTIVERUNS.MIGRATE", f"legacy:{{{tags[0]}}}", f"runs:{{{tags[1]}}}"]
    before = counters()
    try:
        cluster.execute_command(*args)
        raise AssertionError(f"{args} was sent although its keys are in two slots")
    except RedisClusterException as e:
        assert "slot" in str(e).lower(), f"{args}: {e}"
    calls = calls_between(before, counters(), args[0])
    assert not any(calls.values()), f"{args} reached a node: {calls}"


def main():
    data = spec.load()
    check_counters_see_a_redirect()
    keyed = check_every_keyed_command_has_forms(data["forms"])
    tags = spec.tags_per_master("py", owner_of, PORTS)
    cluster = RedisCluster(
        startup_nodes=[ClusterNode("127.0.0.1", PORTS[0])], protocol=3, decode_responses=True
    )
    runs = 0
    for owner, tag in tags.items():
        now_ms = int(time.time() * 1000)
        for command in spec.instantiate(data["setup"], tag, now_ms):
            NODES[owner].execute_command(*command)
        for form in data["forms"]:
            form = spec.instantiate_form(form, tag, int(time.time() * 1000))
            run_form(cluster, form, owner)
            runs += 1
    check_cross_slot_migrate(cluster, list(tags.values()))
    cluster.close()
    print(
        f"redis-py {redis.__version__}: {runs} forms of {len(keyed)} keyed commands on "
        f"{len(tags)} masters, each routed to its key's owner with no MOVED"
    )


if __name__ == "__main__":
    try:
        main()
    except AssertionError as e:
        print(f"FAIL: {e}", file=sys.stderr)
        sys.exit(1)
