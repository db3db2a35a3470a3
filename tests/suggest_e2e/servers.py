"""A private server (and a replica) with the module loaded, for the end-to-end test."""

import os
import random
import shutil
import socket
import subprocess
import tempfile
import time

import redis


def free_port():
    """A loopback port nothing listens on, below the kernel's ephemeral range (a replica's link or
    Redis 8's RDB channel cannot be given it between the pick and the bind)."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            low = int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    if low <= 21000:
        low = 32768
    for _ in range(100):
        port = random.randint(20000, low - 1)
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) != 0:
                return port
    raise RuntimeError("no free loopback port")


class Server:
    def __init__(self, binary, module, policy_file, replica_of=None):
        self.dir = tempfile.mkdtemp(prefix="retention-suggest-")
        self.port = free_port()
        self.log = os.path.join(self.dir, "server.log")
        args = [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", self.dir,
                "--save", "", "--appendonly", "no", "--enable-debug-command", "yes",
                "--repl-diskless-sync-delay", "0", "--logfile", self.log,
                "--maxmemory", "1gb", "--maxmemory-policy", "noeviction",
                "--loadmodule", module, "enabled", "no", "policy-file", policy_file]
        if replica_of:
            args += ["--replicaof", "127.0.0.1", str(replica_of.port)]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        deadline = time.time() + 30
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{binary} did not start:\n{self.log_text()}")
            try:
                if self.client().ping():
                    break
            except redis.ConnectionError:
                pass
            if time.time() > deadline:
                raise RuntimeError(f"{binary} did not answer PING:\n{self.log_text()}")
            time.sleep(0.02)

    def client(self, db=0, protocol=2):
        return redis.Redis(host="127.0.0.1", port=self.port, db=db, decode_responses=True,
                           protocol=protocol, socket_timeout=120)

    def log_text(self):
        try:
            with open(self.log) as f:
                return f.read()[-4000:]
        except OSError:
            return ""

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def wait_replicated(master, replica, limit_s=30):
    """Until the replica's link is up and it has processed everything the master sent."""
    deadline = time.time() + limit_s
    m, r = master.client(), replica.client()
    while True:
        link = r.info("replication")
        if link.get("master_link_status") == "up" and \
                link.get("slave_repl_offset") == m.info("replication").get("master_repl_offset"):
            return
        if time.time() > deadline:
            raise RuntimeError(f"the replica did not catch up: {link}")
        time.sleep(0.05)
