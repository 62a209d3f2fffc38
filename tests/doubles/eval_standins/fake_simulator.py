"""Stand-in CARLA server for the `automot eval` tests: takes CarlaUE4.sh's port options, listens on the RPC and
streaming ports and answers the `tcp` probe (``version`` -> one line). Like CarlaUE4.sh it runs a child process
(the "binary") in its own process group, so only killing the group ends everything.

Commands on the RPC port (one line): ``version`` -> ``0.9.15-standin``; ``crash`` -> the server dies at once;
``hang`` -> the server keeps its ports but never answers again. AUTOMOT_FAKE_PIDLOG: a file each process appends
its pid to (the tests check none is left).
"""

import os
import socket
import sys
import threading
import time


def log_pid():
    path = os.environ.get("AUTOMOT_FAKE_PIDLOG")
    if path:
        with open(path, "a") as fh:
            fh.write(f"{os.getpid()} simulator\n")


def parse_port(flag, default):
    for arg in sys.argv[1:]:
        if arg.startswith(flag + "="):
            return int(arg.split("=", 1)[1])
    return default


def serve(rpc, streaming):
    hung = threading.Event()
    servers = []
    for port in (rpc, streaming):
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as CARLA's (boost asio) acceptor
        s.bind(("127.0.0.1", port))
        s.listen(16)
        servers.append(s)

    def handle(conn):
        with conn:
            line = conn.makefile("rb").readline().strip()
            if hung.is_set():
                time.sleep(3600)
            if line == b"crash":
                os._exit(3)
            if line == b"hang":
                hung.set()
                time.sleep(3600)
            conn.sendall(b"0.9.15-standin\n")

    def accept(s, answer):
        while True:
            conn, _ = s.accept()
            if answer:
                threading.Thread(target=handle, args=(conn,), daemon=True).start()
            else:
                conn.close()

    threading.Thread(target=accept, args=(servers[1], False), daemon=True).start()
    accept(servers[0], True)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--binary"]:
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6").prctl(1, signal.SIGKILL)  # dies with the launcher, as the tests' cleanup
        log_pid()
        serve(int(sys.argv[2]), int(sys.argv[3]))
    else:
        log_pid()
        rpc = parse_port("-carla-rpc-port", 2000)
        streaming = parse_port("-carla-streaming-port", rpc + 1)
        time.sleep(float(os.environ.get("AUTOMOT_FAKE_SIM_START_DELAY", "0.3")))
        import subprocess

        child = subprocess.Popen([sys.executable, __file__, "--binary", str(rpc), str(streaming)])
        sys.exit(child.wait())
