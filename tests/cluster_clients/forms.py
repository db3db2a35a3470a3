"""forms.json for route.py: placing the forms on a master (its hash tag, the clock) and
checking replies. route.js does the same for ioredis."""

import json
from pathlib import Path

FORMS = Path(__file__).with_name("forms.json")


def load():
    return json.loads(FORMS.read_text())


def tags_per_master(prefix, owner_of, ports):
    """One hash tag `<prefix><n>` served by each master: {port: tag}."""
    tags = {}
    for n in range(10_000):
        tag = f"{prefix}{n}"
        tags.setdefault(owner_of(tag), tag)
        if len(tags) == len(ports):
            return tags
    raise AssertionError(f"no tag '{prefix}<n>' found for every master")


def argument(value, tag, now_ms):
    if isinstance(value, dict):
        return str(now_ms - value["now_minus_ms"])
    if isinstance(value, str):
        return value.replace("@", tag)
    return value


def instantiate(commands, tag, now_ms):
    return [[argument(a, tag, now_ms) for a in command] for command in commands]


def instantiate_form(form, tag, now_ms):
    placed = dict(form)
    placed["args"] = instantiate([form["args"]], tag, now_ms)[0]
    placed["keys"] = [[argument(key, tag, now_ms), flags] for key, flags in form["keys"]]
    placed["reply"] = json.loads(json.dumps(form["reply"]).replace("@", tag))
    if "then" in form:
        command, want = form["then"]
        placed["then"] = [instantiate([command], tag, now_ms)[0], want]
    return placed


def as_map(reply):
    """A map reply as a dict: RESP3 gives one, RESP2 a flat [field, value, ...] list."""
    if isinstance(reply, dict):
        return reply
    if isinstance(reply, list) and len(reply) % 2 == 0:
        return dict(zip(reply[::2], reply[1::2]))
    raise AssertionError(f"not a map: {reply!r}")


def check_reply(args, reply, expected):
    if "eq" in expected:
        assert reply == expected["eq"], f"{args}: {reply!r}, expected {expected['eq']!r}"
    elif "map" in expected:
        fields = as_map(reply)
        for field, want in expected["map"].items():
            assert fields.get(field) == want, f"{args}: {field} = {fields.get(field)!r} in {fields}"
    elif "page" in expected:
        want = expected["page"]
        assert isinstance(reply, list) and len(reply) == 2, f"{args}: {reply!r}"
        total, rows = reply
        ids = rows[:: want["stride"]]
        assert (total, ids) == (want["total"], want["ids"]), f"{args}: {reply!r}, expected {want}"
    else:
        raise AssertionError(f"unknown expectation {expected}")
