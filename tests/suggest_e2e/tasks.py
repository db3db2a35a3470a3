"""The RQ job functions of the end-to-end test (a worker imports them by name)."""

import time

import redis


def resize(image_id):
    return {"image": image_id, "sizes": [64, 256, 1024]}


def charge(order_id):
    if order_id % 3 == 0:
        raise RuntimeError(f"card declined for order {order_id}")
    return {"order": order_id, "charged": True}


def wait_for_release(url, key, limit_s=120):
    """Runs until `key` is set: a long job that stays `started` while the test looks."""
    conn = redis.Redis.from_url(url)
    deadline = time.time() + limit_s
    while not conn.exists(key):
        if time.time() > deadline:
            raise TimeoutError(f"{key} was never set")
        time.sleep(0.05)
    return "released"
