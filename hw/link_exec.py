"""The host link's executor: a received request checked and carried out, its reply described."""

from functools import partial
from types import SimpleNamespace

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import enum, stream, wiring
from amaranth.lib.wiring import In, Out

from ..spec import protocol
from ..spec.formats import FORMATS, Formats
from ..spec.memories import BACKWARD, CODE_BITS, MEMORIES
from ..spec.registers import ADDRESS
from .link_types import MEM_HEAD, REPLY, REQUEST, RxError, check_max_payload, walk_layout
from .mac_array import const_mul
from .registers import reg_signature

__all__ = ["LinkExecutor"]

CMD, ERR = protocol.CODE, protocol.ERROR_CODE


# The state is a plain enum register tested with If/Elif, not m.FSM or a Switch: Amaranth writes
# those as a `case` without default, which `verilator -Wall` rejects.
class _State(enum.Enum, shape=2):
    IDLE = 0         # waiting for a request
    REG_READ = 1     # register read issued; its data arrive now
    WAIT = 2         # WAIT: until the accelerator is not busy
    WRITE = 3        # the writer moves the buffer into memory words


class LinkExecutor(wiring.Component):
    """Checks a received ``request`` (:data:`~.link_types.REQUEST`) and carries it out.

    Checked in the cycle the request is taken: the receiver's verdict, the command, the length,
    the memory and its address range, whether the host may write it, ``busy`` (a register
    write or memory access while the accelerator runs is refused). Every request is taken in
    its second cycle offered
    (``request.ready`` is registers alone): a memory request's length, range and sizes and the
    register bus's address are registered from its fields in the first. Then, through ``reg``
    (:func:`~.registers.reg_signature`, driven from registers, so that no check or mux is in
    series with the register file's decoders or the command a write may start): a register write
    the cycle after the request is taken (no request is taken in that cycle); a read whose data
    arrive the next cycle; ``WAIT`` reads ``STATUS`` once ``busy`` is low. Memory writes go out
    as a ``write`` walk (:func:`~.link_types.walk_layout`; the buffer's elements from byte 5)
    and are answered when ``written`` rises; memory reads as a ``read`` walk whose elements the
    reply carries.

    ``reply`` (:data:`~.link_types.REPLY`), ``write`` and ``read`` are registered: offered the
    cycle after the request is taken (errors, ``PING``, ``WRITE_REG``, ``READ_MEM`` with its
    walk, an empty ``WRITE_MEM``; a ``WRITE_MEM``'s walk), two cycles after (``READ_REG``), two
    after ``busy`` falls (``WAIT``; ``decoded``: from its third cycle, when the register bus's
    address, not set by the take, has been ``STATUS`` a cycle, for the register file's
    registered select), or the cycle after ``written``: none of the
    checks is in series with the sender or the walkers. ``request.ready`` is high while no
    request is being carried out, but for a request's first cycle offered and the cycle of a
    register write.
    ``registered=False``: the outputs straight from the checks, a cycle earlier each (fewer
    flip-flops, for a small device). ``decoded``: the command's and the length's tests
    registered in the first cycle too, as the memory checks are, and the take known from
    registers (``ready``), the memory checks in two stages (the sums and the memory's figures,
    then the compares), and the decision (the reply's fields, the walk, the effects' flags)
    made every cycle from the registered tests and registered, so that the take only applies
    registered flags (``busy`` as of three cycles before): a request is taken in its fourth
    cycle offered, two cycles later (a few hundred flip-flops).
    ``reply``, ``write`` and ``read`` take no back-pressure: one request is in flight at a
    time, and the sender and the walks are idle when it arrives (:class:`~.link.HostLink`
    takes no new packet until the reply is sent).

    ``depths`` gives each memory's words, ``elements`` the widest word's elements,
    ``max_payload`` the packet buffer's bytes (which bounds a read's reply), ``read_only`` the
    memories a ``WRITE_MEM`` may not write (refused with ``READ_ONLY``:
    :func:`~gateskip.spec.memories.host_read_only`), ``unreadable`` those a ``READ_MEM`` may
    not read (refused with ``UNREADABLE``: :func:`~gateskip.spec.memories.host_unreadable`).
    """

    @staticmethod
    def check_parameters(*, lanes: int, depths: dict, elements: int, max_payload: int,
                         formats: Formats = FORMATS, read_only=(), unreadable=()) -> None:
        """Raise ``ValueError`` naming the first parameter out of its range."""
        first = [n for n in MEMORIES if MEMORIES[n].code < len(depths)]
        if set(depths) != set(first) or not set(BACKWARD) <= set(depths):
            raise ValueError(f"depths must name the memories of a build, codes 0 .. n - 1 "
                             f"({', '.join(MEMORIES)})")
        if not set(read_only) <= set(depths):
            raise ValueError(f"read_only must name memories of depths, not {tuple(read_only)!r}")
        if not set(unreadable) <= set(depths):
            raise ValueError(f"unreadable must name memories of depths, not "
                             f"{tuple(unreadable)!r}")
        check_max_payload(max_payload)
        for name in depths:
            mem = MEMORIES[name]
            per = mem.per_word(lanes)
            if per > elements:
                raise ValueError(f"a word of {name} has {per} elements, the port {elements}")
            if max_payload < MEM_HEAD + per * mem.element_bytes(formats):
                raise ValueError(f"max_payload {max_payload} cannot hold one word of {name}")

    def __init__(self, *, lanes: int, depths: dict, elements: int, max_payload: int,
                 formats: Formats = FORMATS, registered: bool = True, decoded: bool = False,
                 read_only=(), unreadable=()):
        self.check_parameters(lanes=lanes, depths=depths, elements=elements,
                              max_payload=max_payload, formats=formats, read_only=read_only,
                              unreadable=unreadable)
        self.read_only, self.unreadable = tuple(read_only), tuple(unreadable)
        self.registered, self.decoded = bool(registered), bool(decoded)
        self.depths, self.elements, self.max_payload = dict(depths), elements, max_payload
        self.per = {n: MEMORIES[n].per_word(lanes) for n in self.depths}
        self.eb = {n: MEMORIES[n].element_bytes(formats) for n in self.depths}
        walk = walk_layout(max(self.depths.values()), elements)
        super().__init__({
            "request": In(stream.Signature(REQUEST)),
            "reply": Out(stream.Signature(REPLY, always_ready=True)),
            "reg": Out(reg_signature()),
            "busy": In(1),
            "write": Out(stream.Signature(walk, always_ready=True)),
            "written": In(1),
            "read": Out(stream.Signature(walk, always_ready=True)),
        })

    @staticmethod
    def _reply(nxt, code, length, payload=0, memory=0):
        """Statements that offer a reply (``nxt``: what the outputs carry next)."""
        rep = nxt.reply
        return [nxt.reply_valid.eq(1), rep.code.eq(code), rep.length.eq(length),
                rep.data.eq(payload), rep.memory.eq(memory)]

    def _error(self, nxt, name):
        """Statements that offer the error reply ``name`` to the request."""
        return self._reply(nxt, protocol.ERROR, 2,
                           Cat(Const(ERR[name], 8), self.request.payload.code))

    def _memory(self, m, sel, words):
        """Per memory ``sel`` (a Switch on its code): (element bytes, elements per word, depth,
        bytes of ``words`` words)."""
        eb, per = Signal(3), Signal(range(self.elements + 1))
        depth = Signal(range(max(self.depths.values()) + 1))
        nbytes = Signal(22)
        with m.Switch(sel):
            for name in self.depths:
                with m.Case(MEMORIES[name].code):
                    m.d.comb += [eb.eq(self.eb[name]), per.eq(self.per[name]),
                                 depth.eq(self.depths[name]),
                                 nbytes.eq(const_mul(words, self.eb[name] * self.per[name]))]
            with m.Default():           # no memory: refused as ADDRESS (zero depth)
                m.d.comb += [eb.eq(0), per.eq(0), depth.eq(0), nbytes.eq(0)]
        return eb, per, depth, nbytes

    def _memory_checks(self, m):
        """A memory request's checks and walk figures, registered from the request's fields
        every cycle, so that no adder or compare of them is in series with the request's
        arrival: a memory request is taken in its second cycle offered, when they are its own
        (``decoded``: in two stages, its fourth)."""
        req = self.request.payload
        f_mem = req.head.mem
        sel = f_mem.mem[:CODE_BITS]
        eb, per, depth, count_bytes = self._memory(m, sel, f_mem.words)
        reading = req.code == CMD["READ_MEM"]
        def any_of(names):
            codes = [MEMORIES[n].code for n in names]
            return Cat(sel == c for c in codes).any() if codes else Const(0, 1)
        streamed = any_of(n for n in self.depths if MEMORIES[n].streamed)
        chk = SimpleNamespace(eb=Signal.like(eb), per=Signal.like(per),
                              nbytes=Signal.like(count_bytes), length=Signal(), address=Signal(),
                              read_only=Signal(), too_long=Signal(), idle_only=Signal(),
                              empty=Signal())
        # the payload's bytes past the head, from the length alone (beside the count, not after
        # it: the count then meets only an equality)
        body = Signal.like(req.length)
        m.d.comb += body.eq(req.length - MEM_HEAD)
        # the sums and the memory's figures; decoded: registered first (stage A), compared the
        # cycle after (stage B)
        a = SimpleNamespace(count=count_bytes, depth=depth, end=f_mem.addr + f_mem.words,
                            body=body, eb=eb, per=per, short=req.length < MEM_HEAD,
                            not_head=req.length != MEM_HEAD, reading=reading,
                            no_mem=f_mem.mem >= len(self.depths), streamed=streamed,
                            empty=f_mem.words == 0)
        if self.read_only:
            a.read_only = any_of(self.read_only)
        if self.unreadable:
            a.unreadable = any_of(self.unreadable)
            chk.unreadable = Signal()
        if self.decoded:
            held = SimpleNamespace(**{name: Signal.like(value, name=f"checked_{name}")
                                      for name, value in vars(a).items()})
            m.d.sync += [getattr(held, name).eq(value) for name, value in vars(a).items()]
            a = held
        m.d.sync += [
            chk.eb.eq(a.eb), chk.per.eq(a.per), chk.nbytes.eq(a.count),
            chk.length.eq(a.short | (a.reading & a.not_head) |
                          (~a.reading & (a.body != a.count))),
            chk.address.eq(a.no_mem | (a.end > a.depth)),
            chk.too_long.eq(a.reading & (a.count > self.max_payload)),
            chk.idle_only.eq(a.reading | ~a.streamed),
            chk.empty.eq(a.empty),
        ]
        if self.read_only:      # (no register, nor a case in the decision, without them)
            m.d.sync += chk.read_only.eq(~a.reading & a.read_only)
        if self.unreadable:
            m.d.sync += chk.unreadable.eq(a.reading & a.unreadable)
        return chk

    @staticmethod
    def _encode(m, tests):
        """The index of the first of ``tests`` that holds (``len(tests)``: none), registered."""
        index, encoded = Signal(range(len(tests) + 1)), len(tests)
        for n in reversed(range(len(tests))):
            encoded = Mux(tests[n], n, encoded)
        m.d.sync += index.eq(encoded)
        return index

    @staticmethod
    def _cases(m, tests, bodies, default, kind=None):
        """``bodies[n]()`` for the first of ``tests`` that holds, else ``default()``: an If/Elif
        chain, or (``kind``: that index, :meth:`_encode`) a Switch."""
        if kind is None:
            for n, (test, body) in enumerate(zip(tests, bodies)):
                with (m.If if n == 0 else m.Elif)(test):
                    body()
            with m.Else():
                default()
        else:
            with m.Switch(kind):
                for n, body in enumerate(bodies):
                    with m.Case(n):
                        body()
                with m.Default():
                    default()

    def _test(self, m, expr):
        """A test of the request's fields for its take: with ``decoded`` registered every cycle
        (a request is taken in its second cycle offered, when the register holds its own)."""
        if not self.decoded:
            return expr
        held = Signal()
        m.d.sync += held.eq(expr)
        return held

    def _memory_request(self, m, nxt, chk, reading, busy):
        """``WRITE_MEM``, ``READ_MEM`` (``reading``): checked (``chk``,
        :meth:`_memory_checks`; ``busy``), then a walk started (``write.valid`` or
        ``read.valid``) or the reply given."""
        req = self.request.payload
        f_mem = req.head.mem
        walk = nxt.walk
        m.d.comb += [walk.mem.eq(f_mem.mem[:CODE_BITS]), walk.addr.eq(f_mem.addr),
                     walk.words.eq(f_mem.words), walk.eb.eq(chk.eb), walk.per.eq(chk.per)]
        with m.If(chk.length):
            m.d.comb += self._error(nxt, "LENGTH")
        with m.Elif(chk.address):
            m.d.comb += self._error(nxt, "ADDRESS")
        if self.read_only:
            with m.Elif(chk.read_only):
                m.d.comb += self._error(nxt, "READ_ONLY")
        if self.unreadable:
            with m.Elif(chk.unreadable):
                m.d.comb += self._error(nxt, "UNREADABLE")
        with m.Elif(chk.too_long):
            m.d.comb += self._error(nxt, "LENGTH")
        with m.Elif(busy & chk.idle_only):
            m.d.comb += self._error(nxt, "BUSY")
        with m.Elif(chk.empty):
            m.d.comb += self._reply(nxt, req.code, 0)
        with m.Elif(reading):
            m.d.comb += [nxt.read.eq(1), *self._reply(nxt, req.code, chk.nbytes, memory=1)]
        with m.Else():
            m.d.comb += nxt.write.eq(1)

    def _decide(self, m, act, *, chk, command, mem_req, rx_error, length_not, busy,
                kind=None):
        """A request's decision: its reply into ``act`` (``reply_valid``, ``reply``), a walk
        (``write``, ``read``, ``walk``), and through ``act.reg_write()``, ``act.reg_read()`` and
        ``act.go(state)`` the statements of a register access and of the next state. Its cases
        in the order of :meth:`_kinds`: an If/Elif chain of their tests, or (``kind``, their
        index, decoded from the same tests) a Switch."""
        req = self.request.payload
        reply, error = partial(self._reply, act), partial(self._error, act)

        def rx():
            m.d.comb += reply(protocol.ERROR, 2, Cat(req.error, req.code))

        def ping():
            with m.If(length_not[0]):
                m.d.comb += error("LENGTH")
            with m.Else():
                magic = int.from_bytes(protocol.MAGIC, "little")
                m.d.comb += reply(req.code, 6, Cat(Const(magic, 24), Const(protocol.VERSION, 8),
                                                   Const(self.max_payload, 16)))

        def write_reg():
            with m.If(length_not[5]):
                m.d.comb += error("LENGTH")
            with m.Elif(busy):
                m.d.comb += error("BUSY")
            with m.Else():
                act.reg_write()
                m.d.comb += reply(req.code, 0)

        def read_reg():
            with m.If(length_not[1]):
                m.d.comb += error("LENGTH")
            with m.Else():
                act.reg_read()
                act.go(_State.REG_READ)

        def wait():
            with m.If(length_not[0]):
                m.d.comb += error("LENGTH")
            with m.Else():
                act.go(_State.WAIT)

        def memory():
            self._memory_request(m, act, chk, command["READ_MEM"], busy)
            with m.If(act.write):
                act.go(_State.WRITE)

        def unknown():
            m.d.comb += error("COMMAND")
        self._cases(m, self._kinds(rx_error=rx_error, command=command, mem_req=mem_req),
                    (rx, ping, write_reg, read_reg, wait, memory), unknown, kind)

    @staticmethod
    def _kinds(*, rx_error, command, mem_req):
        """The tests of a request's cases, in priority order (:meth:`_decide`): a receiver's
        error, ``PING``, ``WRITE_REG``, ``READ_REG``, ``WAIT``, a memory request; else an unknown
        command."""
        return (rx_error, command["PING"], command["WRITE_REG"], command["READ_REG"],
                command["WAIT"], mem_req)

    def _decision(self, m, **tests):
        """``decoded``: a request's decision (:meth:`_decide`) made every cycle, in any state,
        from the registered tests (a Switch on its case's registered index, ``kind``), and
        registered: its reply's fields, its walk, and the flags
        of its effects (``reply_valid``, ``write``, ``read``, ``reg_we``, ``reg_re``, the next
        state ``to``)."""
        made = SimpleNamespace(reply_valid=Signal(), write=Signal(), read=Signal(),
                               reg_we=Signal(), reg_re=Signal(), to=Signal(_State),
                               reply=Signal(REPLY), walk=Signal.like(self.write.payload))

        def flag(signal, value=1):
            m.d.comb += signal.eq(value)
        self._decide(m, SimpleNamespace(reply_valid=made.reply_valid, reply=made.reply,
                                        write=made.write, read=made.read, walk=made.walk,
                                        go=partial(flag, made.to),
                                        reg_write=partial(flag, made.reg_we),
                                        reg_read=partial(flag, made.reg_re)), **tests)
        held = SimpleNamespace(**{name: Signal.like(value, name=f"decided_{name}")
                                  for name, value in vars(made).items()})
        m.d.sync += [getattr(held, name).eq(value) for name, value in vars(made).items()]
        return held

    def elaborate(self, platform):
        m = Module()
        state = Signal(_State)
        req, reg = self.request.payload, self.reg
        code = Signal(8)                                # the request being carried out
        # what the outputs carry: the next cycle (registered), or at once
        nxt = SimpleNamespace(reply_valid=Signal(), reply=Signal(REPLY), write=Signal(),
                              read=Signal(), walk=Signal.like(self.write.payload))
        m.d["sync" if self.registered else "comb"] += [
            self.reply.valid.eq(nxt.reply_valid), self.reply.payload.eq(nxt.reply),
            self.write.valid.eq(nxt.write), self.read.valid.eq(nxt.read),
            self.write.payload.eq(nxt.walk), self.read.payload.eq(nxt.walk)]
        reply = partial(self._reply, nxt)          # the replies of the states after IDLE
        chk = self._memory_checks(m)
        # the register bus from registers, loaded from the request's fields every cycle
        # (``STATUS`` while waiting): a read is taken in its request's second cycle offered, a
        # write goes out the cycle after its request is taken, so that no check or mux is in
        # series with the register file's decoders
        m.d.sync += [reg.addr.eq(Mux(state == _State.WAIT, ADDRESS["STATUS"], req.head.reg.addr)),
                     reg.wdata.eq(req.head.reg.value), reg.we.eq(0)]

        # the request was offered last cycle and not taken: ``chk`` is of its fields (a stream's
        # payload holds until taken)
        fresh = Signal()
        m.d.sync += fresh.eq(self.request.valid & ~self.request.ready)
        if self.decoded:
            # offered for a second and a third cycle: the memory checks' two stages, then the
            # decision registered (``settled``: the request's fourth cycle offered)
            second, settled = Signal(), Signal()
            waiting = self.request.valid & ~self.request.ready
            m.d.sync += [second.eq(waiting & fresh), settled.eq(waiting & second)]
        else:
            settled = fresh
        test = partial(self._test, m)
        arrived = dict(  # the request's command tests as it is offered
            command={name: req.code == CMD[name]
                     for name in ("PING", "WRITE_REG", "READ_REG", "WAIT", "READ_MEM")},
            mem_req=(req.code == CMD["WRITE_MEM"]) | (req.code == CMD["READ_MEM"]),
            rx_error=req.error != RxError.NONE)
        command = {name: test(value) for name, value in arrived["command"].items()}
        mem_req, rx_error = test(arrived["mem_req"]), test(arrived["rx_error"])
        length_not = {n: test(req.length != n) for n in (0, 1, 5)}
        busy = test(self.busy)             # (decoded: as of the cycle before)
        # WAIT reads STATUS in its first cycle (decoded: its third: the take does not set the
        # register bus's address, which is STATUS once the state is WAIT, and the register
        # file registers its select of it)
        waited = Signal() if self.decoded else Const(1)
        if self.decoded:
            in_wait = Signal()
            m.d.sync += [in_wait.eq(state == _State.WAIT),
                         waited.eq(in_wait & (state == _State.WAIT))]
            # the request's case (:meth:`_kinds`) priority-encoded into a register beside the
            # tests, so that the decision is a Switch on it, not a chain of the tests
            kind = self._encode(m, self._kinds(**arrived))
            flags = self._decision(m, chk=chk, command=command, mem_req=mem_req,
                                   rx_error=rx_error, length_not=length_not, busy=busy,
                                   kind=kind)
        with m.If(state == _State.IDLE):
            # every request waits one cycle, not taken, for its registered checks and address
            # (and none is taken while a register write goes out): ``ready`` is registers alone
            m.d.comb += self.request.ready.eq(settled & ~reg.we)
            # (decoded: ``ready`` alone says a request is taken: one offered last cycle is
            # offered still, a stream's ``valid`` holding until taken)
            take = self.request.ready if self.decoded else self.request.valid & self.request.ready
            def go(to):                 # the next state (and WAIT's register address)
                m.d.sync += state.eq(to)
                if to == _State.WAIT and not self.decoded:
                    m.d.sync += reg.addr.eq(ADDRESS["STATUS"])

            def reg_write():
                m.d.sync += reg.we.eq(1)

            def reg_read():
                m.d.comb += reg.re.eq(1)

            decide = partial(self._decide, m, chk=chk, command=command, mem_req=mem_req,
                             rx_error=rx_error, length_not=length_not, busy=busy)
            if not self.decoded:    # decided and carried out in the cycle it is taken
                with m.If(take):
                    m.d.sync += code.eq(req.code)
                    decide(SimpleNamespace(**vars(nxt), go=go, reg_write=reg_write,
                                           reg_read=reg_read))
            else:
                # the decision, registered (``decision``, below): the reply's fields do not
                # wait for the take, only its enables and the effects do
                m.d.comb += [nxt.reply.eq(flags.reply), nxt.walk.eq(flags.walk)]
                with m.If(take):
                    m.d.sync += [code.eq(req.code), reg.we.eq(flags.reg_we)]
                    m.d.comb += [nxt.reply_valid.eq(flags.reply_valid),
                                 nxt.write.eq(flags.write), nxt.read.eq(flags.read),
                                 reg.re.eq(flags.reg_re)]
                    for to in (_State.REG_READ, _State.WAIT, _State.WRITE):
                        with m.If(flags.to == to):
                            go(to)
        with m.Elif(state == _State.REG_READ):
            m.d.comb += reply(code, 4, reg.rdata)
            m.d.sync += state.eq(_State.IDLE)
        with m.Elif(state == _State.WAIT):
            with m.If(~self.busy & waited):
                m.d.comb += reg.re.eq(1)
                m.d.sync += state.eq(_State.REG_READ)
        with m.Elif(state == _State.WRITE):
            with m.If(self.written):
                m.d.comb += reply(code, 0)
                m.d.sync += state.eq(_State.IDLE)
        return m
