"""The listening sockets of `bodypipe serve` and how new connections are spread over workers.

One socket per worker slot, all bound to the same address in one `SO_REUSEPORT` group, held by
the supervisor for its whole life (a restarted or replacing worker inherits its slot's socket,
so connections queued there are not lost). One shared socket would not do: every worker VM's
acceptors wait in it, and the kernel hands each new connection to a waiter of whichever VM is
already awake, so under load one worker took all the connections and the other idled.

The kernel picks the socket of each new connection by running a classic BPF program attached
to the group (`SO_ATTACH_REUSEPORT_CBPF`); the program answers an index into the group, which
is the order the sockets started listening in, so slot `i` is index `i`. `steer` replaces the
program whenever the set of slots able to serve changes: a random one of those (so the
connections of one client spread too), or, when none can, the kernel's own hash over all of
them (the connection then waits in a queue until a worker there is free).
"""

import ctypes
import socket
import struct

# <asm-generic/socket.h>
SO_ATTACH_REUSEPORT_CBPF = 51

# <linux/filter.h>: (code, jt, jf, k) instructions.
_LD_W_ABS = 0x00 | 0x00 | 0x20  # BPF_LD | BPF_W | BPF_ABS
_ALU_MOD_K = 0x04 | 0x90 | 0x00  # BPF_ALU | BPF_MOD | BPF_K
_JEQ_K = 0x05 | 0x10 | 0x00  # BPF_JMP | BPF_JEQ | BPF_K
_RET_K = 0x06 | 0x00  # BPF_RET | BPF_K
_RET_A = 0x06 | 0x10  # BPF_RET | BPF_A
_SKF_AD_RANDOM = (-0x1000 + 56) & 0xFFFFFFFF  # SKF_AD_OFF + SKF_AD_RANDOM
# An index past the group: the kernel falls back to its hash.
_BY_HASH = 0xFFFFFFFF


def program(slots):
    """The cBPF program that sends a new connection to a random one of `slots` (indices into
    the group, ascending), or to the kernel's hash when `slots` is empty."""
    if not slots:
        return [(_RET_K, 0, 0, _BY_HASH)]
    prog = [(_LD_W_ABS, 0, 0, _SKF_AD_RANDOM), (_ALU_MOD_K, 0, 0, len(slots))]
    if list(slots) == list(range(len(slots))):
        return prog + [(_RET_A, 0, 0, 0)]
    for j, slot in enumerate(slots[:-1]):
        # A == j: answer slot; else skip that answer.
        prog += [(_JEQ_K, 0, 1, j), (_RET_K, 0, 0, slot)]
    return prog + [(_RET_K, 0, 0, slots[-1])]


def attach(sock, prog):
    """Attaches `prog` to the reuseport group of `sock` (replacing the previous program)."""
    code = b"".join(struct.pack("<HBBI", c, jt, jf, k) for c, jt, jf, k in prog)
    filt = ctypes.create_string_buffer(code, len(code))
    # struct sock_fprog { unsigned short len; struct sock_filter *filter; }, native layout; the
    # kernel copies the instructions during the call.
    fprog = struct.pack("@HP", len(prog), ctypes.addressof(filt))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, fprog)


class Listeners:
    """`n` listening sockets on `host:port` (port 0: a free one), one per worker slot.

    Raises OSError when the address cannot be had, including when another process listens
    there already: `SO_REUSEPORT` alone would let a second server join this one's group and
    take half its connections, so a plain socket is bound first, as a check, and closed.
    """

    def __init__(self, host, port, n, backlog):
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        # As the workers' gen_tcp names it.
        self.family = "inet6" if family == socket.AF_INET6 else "inet"
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host, port))
            self.port = probe.getsockname()[1]
        self.socks = []
        try:
            for _ in range(n):
                s = socket.socket(family, socket.SOCK_STREAM)
                self.socks.append(s)
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
                s.bind((host, self.port))
            # A socket joins the group, at the next index, when it starts listening.
            for s in self.socks:
                s.listen(backlog)
        except OSError:
            self.close()
            raise
        self.steered = None
        self.listening = True
        self.steer([])

    def fd(self, slot):
        return self.socks[slot].fileno()

    def steer(self, slots):
        """New connections go to a random one of `slots` from now on (all slots' kernel hash
        when empty). Raises OSError if the kernel refuses the program (the previous one then
        stays); nothing is steered once the sockets stopped listening."""
        slots = sorted(slots)
        if self.listening and slots != self.steered:
            self.steered = slots  # a refused program is not retried until the slots change
            attach(self.socks[0], program(slots))

    def shutdown(self):
        """Stops listening, for every process holding the sockets: new connections are refused
        at once (queued ones are reset)."""
        self.listening = False
        for s in self.socks:
            try:
                s.shutdown(socket.SHUT_RD)
            except OSError:
                pass

    def close(self):
        for s in self.socks:
            s.close()
