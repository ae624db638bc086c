"""The fleet's rate-limit store on the host: the password into runtime files, and its state for `fab status`.

`python3 -m on_host.shared_limits redis|sentinel --env-file F --variable V [--previous-variable P]
--out FILE --owner U:G [--seed SEED]`, run as root by litellm-redis.service / litellm-sentinel.service
before they start: the password (from the root-only env file) goes into a 0600 file of the service user's, never
into a unit, a command line or the deploy's files. Sentinel rewrites its own file as it learns the
fleet (replicas, other sentinels, a new primary): it is written anew only when the deploy's seed or
the password changed, and otherwise left as Sentinel keeps it. While the master key is rotated, the
env file also holds the password of the key being replaced: both let clients in (an ACL user line),
the new one is what this server and sentinel use towards the others.
"""
from __future__ import annotations

import argparse
import contextlib
import grp
import hashlib
import os
import pwd
import socket
import ssl
import stat
import sys

SERVICE_NAME = "litellm-fleet"


def read_variable(env_file: str, name: str, required: bool = True) -> str | None:
    with open(env_file, encoding="utf-8") as handle:
        for line in handle:
            if line.startswith(f"{name}="):
                return line.rstrip("\n").split("=", 1)[1]
    if required:
        raise SystemExit(f"{env_file} has no {name}: deploy the gateway again")
    return None


def accepted(password: str, previous: str | None) -> str:
    """Who may log in: the password, and while a rotation rolls the previous one too."""
    if not previous:
        return f"requirepass {password}\n"
    return f"user default on >{password} >{previous} ~* &* +@all\n"


def write_private(path: str, text: str, owner: str) -> None:
    """Write `path` (0600, `owner`'s) as root in a directory the service user owns: never through a
    link or into a file that user planted (a planted `.new` is removed, the new one is made with
    O_EXCL|O_NOFOLLOW and owned through its descriptor), then renamed over `path` (a link there is
    replaced, not followed)."""
    partial = f"{path}.new"
    with contextlib.suppress(FileNotFoundError):
        os.unlink(partial)  # unlink never follows a link
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        user, _, group = owner.partition(":")
        os.fchown(handle.fileno(), pwd.getpwnam(user).pw_uid, grp.getgrnam(group or user).gr_gid)
        handle.write(text)
    os.replace(partial, path)


def read_own(path: str) -> str | None:
    """`path` if it is a regular file (None when missing, a link or anything else): root reads only
    what the service itself wrote there, never a file a planted link points at, never a FIFO."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:  # missing, or a link (ELOOP)
        return None
    with os.fdopen(fd, encoding="utf-8") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            return None
        return handle.read()


def sentinel_file(seed: str, password: str, existing: str | None, previous: str | None = None) -> str | None:
    """Sentinel's file for this seed and password(s); None when the existing one already is."""
    given = f"{seed}\0{password}" + (f"\0{previous}" if previous else "")
    digest = hashlib.sha256(given.encode()).hexdigest()
    marker = f"# litellm-gateway seed {digest}\n"
    if existing is not None and marker in existing:
        return None
    return (marker + seed.rstrip("\n") + "\n"
            + f"sentinel auth-pass {SERVICE_NAME} {password}\n"
            + f"sentinel sentinel-pass {password}\n"
            + accepted(password, previous))


class Resp:
    """Just enough of Redis's protocol to ask a node or a sentinel how it is."""

    def __init__(self, host: str, port: int, password: str, timeout: float = 2.0, ca_file: str | None = None) -> None:
        self.conn = socket.create_connection((host, port), timeout=timeout)
        if ca_file:  # verified by the fleet's CA, as Redis and LiteLLM verify it
            context = ssl.create_default_context(cafile=ca_file)
            context.check_hostname = False
            self.conn = context.wrap_socket(self.conn)
        self.file = self.conn.makefile("rb")
        self.call("AUTH", password)

    def call(self, *args: str):
        self.conn.sendall(f"*{len(args)}\r\n".encode() + b"".join(
            f"${len(a.encode())}\r\n".encode() + a.encode() + b"\r\n" for a in args))
        return self._read()

    def _read(self):
        line = self.file.readline().rstrip(b"\r\n")
        kind, rest = line[:1], line[1:].decode()
        if kind == b"-":
            raise RuntimeError(rest)
        if kind in (b"+", b":"):
            return rest
        if kind == b"$":
            return None if rest == "-1" else self.file.read(int(rest) + 2)[:-2].decode()
        if kind == b"*":
            return [] if rest == "-1" else [self._read() for _ in range(int(rest))]
        raise RuntimeError(f"unexpected answer {line!r}")

    def close(self) -> None:
        self.conn.close()


def _pairs(flat: list) -> dict:
    return dict(zip(flat[::2], flat[1::2], strict=False))


def view(address: str, redis_port: int, sentinel_port: int, password: str, ca_file: str | None = None) -> dict:
    """This gateway's Redis role and its sentinel's view of the primary, for `fab status` (over TLS
    verified with `ca_file` when the fleet has TLS)."""
    state: dict = {}
    try:
        node = Resp(address, redis_port, password, ca_file=ca_file)
        info = dict(line.split(":", 1) for line in node.call("INFO", "replication").splitlines() if ":" in line)
        node.close()
        state["role"] = info.get("role")
        state["link"] = info.get("master_link_status")  # a replica: up when it follows the primary
    except (OSError, RuntimeError) as error:
        state["role"], state["error"] = None, f"redis: {error}"
    try:
        sentinel = Resp(address, sentinel_port, password, ca_file=ca_file)
        master = _pairs(sentinel.call("SENTINEL", "MASTER", SERVICE_NAME))
        # Those it knows but cannot reach are flagged s_down: only the others count.
        replicas = [_pairs(r) for r in sentinel.call("SENTINEL", "REPLICAS", SERVICE_NAME)]
        others = [_pairs(s) for s in sentinel.call("SENTINEL", "SENTINELS", SERVICE_NAME)]
        sentinel.close()
        state["primary"] = master.get("ip")
        state["primary_flags"] = master.get("flags")
        state["replicas"] = sum(r.get("flags") == "slave" for r in replicas)
        state["sentinels"] = 1 + sum(s.get("flags") == "sentinel" for s in others)
    except (OSError, RuntimeError) as error:
        state["sentinel_error"] = f"sentinel: {error}"
    return state


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("kind", choices=("redis", "sentinel"))
    parser.add_argument("--env-file", required=True)
    parser.add_argument("--variable", required=True)
    parser.add_argument("--previous-variable", help="the env file's previous password, while a rotation rolls")
    parser.add_argument("--out", required=True)
    parser.add_argument("--owner", required=True)
    parser.add_argument("--seed")
    parser.add_argument("--tls-pem",
                        help="root's certificate and key (the front's), copied for the service to --tls-out")
    parser.add_argument("--tls-out")
    args = parser.parse_args(argv)
    password = read_variable(args.env_file, args.variable)
    previous = read_variable(args.env_file, args.previous_variable, required=False) if args.previous_variable else None
    if args.tls_pem:
        with open(args.tls_pem, encoding="ascii") as handle:
            write_private(args.tls_out, handle.read(), args.owner)
    if args.kind == "redis":
        write_private(args.out, accepted(password, previous) + f"masterauth {password}\n", args.owner)
        return 0
    with open(args.seed, encoding="utf-8") as handle:
        seed = handle.read()
    text = sentinel_file(seed, password, read_own(args.out), previous)
    if text is not None:
        write_private(args.out, text, args.owner)
    return 0


if __name__ == "__main__":
    sys.exit(main())
