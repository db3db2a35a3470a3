"""Points redis-py's defaults at scripts/test-readme's private server, so a README example runs
exactly as written: `redis.Redis()` (and `redis.from_url("redis://localhost:6379")`) reach the
server on $README_TEST_PORT instead of localhost:6379. Explicit arguments other than the port
6379 are left alone. With README_TEST_PROTOCOL=2 a client that does not choose a protocol gets
RESP2 (what redis-py before 8 spoke by default); otherwise redis-py 8's own default (RESP3).

Only active when README_TEST_PORT is set (scripts/test-readme puts this directory on PYTHONPATH
for the README's Python blocks only)."""

import os

_PORT = os.environ.get("README_TEST_PORT")
if _PORT:
    import redis

    _PROTOCOL = os.environ.get("README_TEST_PROTOCOL")
    _init = redis.Redis.__init__
    _from_url = redis.Redis.from_url.__func__

    def _patched_init(self, *args, **kwargs):
        # Redis(host="localhost", port=6379, ...): the port is the second positional argument.
        if len(args) < 2 and kwargs.get("port", 6379) in (6379, "6379"):
            kwargs["port"] = int(_PORT)
        if _PROTOCOL and "protocol" not in kwargs:
            kwargs["protocol"] = int(_PROTOCOL)
        _init(self, *args, **kwargs)

    def _patched_from_url(cls, url, **kwargs):
        url = url.replace(":6379", ":" + _PORT)
        if ":" + _PORT not in url:
            kwargs.setdefault("port", int(_PORT))
        if _PROTOCOL and "protocol" not in kwargs:
            kwargs["protocol"] = int(_PROTOCOL)
        return _from_url(cls, url, **kwargs)

    redis.Redis.__init__ = _patched_init
    redis.Redis.from_url = classmethod(_patched_from_url)
    redis.from_url = redis.Redis.from_url
