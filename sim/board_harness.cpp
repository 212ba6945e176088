// The simulated board: the Verilated board top (module gateskip_board in the wrapper
// gateskip_board_sim, class Vboard) with its UART served on a pseudo-terminal, so that a host
// program opens the printed slave path like a USB serial port (built and started by
// gateskip.sim.board).
//
//   gateskip_board [--stats FILE] [--trace FILE]   (FILE.fst or .vcd, as built)
//
// Prints the pty slave path as the first line of stdout, then runs until stdin reaches EOF or
// SIGTERM/SIGINT arrives (exit status 0). Line format 8N1, LSB first, idle high, GATESKIP_DIVISOR
// clock cycles per bit (compiled in, the design's divisor):
//  - bytes the host writes are serialised onto `rx`, back to back (one stop bit);
//  - `tx` is deserialised (a falling edge starts a frame, bits sampled mid-bit) into bytes
//    written to the host; a frame whose stop bit is low is dropped and counted.
// Blocking: when `idle` is high, no rx byte is queued or on the wire and no tx frame is being
// received, the harness waits in poll() (200 ms at a time) for the host without clocking:
// simulated time stands still while the host is silent. Otherwise it clocks without pause and
// services the pty every SERVICE_CYCLES cycles with non-blocking I/O, passing tx bytes on in
// batches (TX_BATCH bytes, or after TX_FLUSH_CYCLES cycles, or as soon as the board falls quiet,
// or once tx has been silent for TX_GAP_CYCLES: the end of a reply sent while the design
// computes, which the host may be waiting for to send its next request).
// The stats file (JSON: cycles, seconds spent clocking, framing_errors, dropped: tx bytes lost
// to a full buffer nobody read, quiet: waiting for the host without clocking) is rewritten
// atomically at start, about every second while clocking, each time the board falls quiet or
// wakes, and at exit. The harness holds the pty's slave open
// itself (raw mode), so the host may open and close the port any number of times.

#include <verilated.h>
#include "Vboard.h"
#if VM_TRACE_FST
#include <verilated_fst_c.h>
typedef VerilatedFstC Trace;
#elif VM_TRACE
#include <verilated_vcd_c.h>
typedef VerilatedVcdC Trace;
#endif

#include <cerrno>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <deque>
#include <memory>
#include <string>

#include <fcntl.h>
#include <poll.h>
#include <termios.h>
#include <unistd.h>

#ifndef GATESKIP_DIVISOR
#define GATESKIP_DIVISOR 4
#endif

static const unsigned DIVISOR = GATESKIP_DIVISOR;
static_assert(GATESKIP_DIVISOR >= 2, "the UART needs at least 2 cycles per bit");
static const unsigned SERVICE_CYCLES = 256;   // pty check interval while clocking
static const size_t TX_BATCH = 1024;          // while clocking, tx bytes are written in batches
static const uint64_t TX_FLUSH_CYCLES = 1 << 16;
static const uint64_t TX_GAP_CYCLES = 2 * 10 * DIVISOR;  // two byte times without a tx frame
static const size_t RX_QUEUE_MAX = 4096;      // beyond this the pty holds the host's bytes back
static const size_t TX_BUFFER_MAX = 1 << 20;  // tx bytes nobody reads beyond this are dropped
static const int QUIET_POLL_MS = 200;

static volatile sig_atomic_t stop_requested = 0;
static void on_signal(int) { stop_requested = 1; }

static double now() {
    timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}

static void die(const char* what) {
    fprintf(stderr, "gateskip_board: %s: %s\n", what, strerror(errno));
    exit(1);
}

struct Board {
    std::unique_ptr<VerilatedContext> ctx{new VerilatedContext};
    std::unique_ptr<Vboard> top;
#if VM_TRACE
    std::unique_ptr<Trace> trace;
#endif
    uint64_t cycles = 0;

    // rx serialiser: the frame being sent (start, 8 data, stop; LSB first), bits left, and the
    // cycles left of the current bit
    std::deque<uint8_t> rx_queue;
    uint32_t rx_frame = 0;
    unsigned rx_bits = 0, rx_count = 0;
    // tx deserialiser: frame in progress, bit index (0 = start, 1..8 data, 9 stop), cycles to
    // the next sample
    bool tx_active = false;
    unsigned tx_bit = 0, tx_count = 0;
    uint8_t tx_byte = 0;
    std::string tx_buffer;
    uint64_t tx_last = 0;                              // the cycle the last tx byte ended
    uint64_t framing_errors = 0, dropped = 0;

    void dump(uint64_t t) {
#if VM_TRACE
        if (trace) trace->dump(t);
#else
        (void)t;
#endif
    }

    // One clock cycle: drive rx for it, rising edge, sample tx, falling edge.
    void cycle() {
        if (rx_count == 0) {
            if (rx_bits == 0 && !rx_queue.empty()) {
                rx_frame = 0x200u | (uint32_t(rx_queue.front()) << 1);
                rx_queue.pop_front();
                rx_bits = 10;
            }
            if (rx_bits) {
                top->rx = rx_frame & 1;
                rx_frame >>= 1;
                --rx_bits;
                rx_count = DIVISOR;
            } else {
                top->rx = 1;
            }
        }
        if (rx_count) --rx_count;

        top->clk = 1;
        top->eval();
        dump(2 * cycles);
        sample_tx(top->tx);
        top->clk = 0;
        top->eval();
        dump(2 * cycles + 1);
        ++cycles;
    }

    void sample_tx(bool line) {
        if (!tx_active) {
            if (!line) { tx_active = true; tx_bit = 0; tx_count = DIVISOR / 2; tx_byte = 0; }
            return;
        }
        if (--tx_count) return;
        tx_count = DIVISOR;
        if (tx_bit == 0) {
            if (line) tx_active = false;               // a glitch, not a start bit
            else tx_bit = 1;
        } else if (tx_bit <= 8) {
            tx_byte |= uint8_t(line) << (tx_bit - 1);
            ++tx_bit;
        } else {
            tx_active = false;
            if (!line) ++framing_errors;
            else if (tx_buffer.size() < TX_BUFFER_MAX) tx_buffer.push_back(char(tx_byte));
            else ++dropped;
            tx_last = cycles;
        }
    }

    // Nothing to do until the host speaks: design idle, no rx byte pending, no tx frame open.
    bool quiet() const {
        return top->idle && rx_queue.empty() && rx_bits == 0 && rx_count == 0 && !tx_active &&
               top->tx;
    }
};

struct Stats {
    std::string path;
    double seconds = 0, last_write = 0;
    uint64_t written_cycles = UINT64_MAX;
    bool written_quiet = false;

    void write(const Board& b, double clocking_seconds, bool quiet) {
        last_write = now();
        written_cycles = b.cycles;
        written_quiet = quiet;
        if (path.empty()) return;
        std::string tmp = path + ".tmp";
        FILE* f = fopen(tmp.c_str(), "w");
        if (!f) return;
        fprintf(f, "{\"cycles\": %llu, \"seconds\": %.6f, \"framing_errors\": %llu, "
                   "\"dropped\": %llu, \"quiet\": %s}\n",
                (unsigned long long)b.cycles, clocking_seconds,
                (unsigned long long)b.framing_errors, (unsigned long long)b.dropped,
                quiet ? "true" : "false");
        fclose(f);
        rename(tmp.c_str(), path.c_str());
    }
};

// Opens a pty master and keeps its slave open in raw mode: the raw settings then persist
// across the host's opens, nothing is echoed, and the master never reads as hung up.
static int open_pty(std::string& slave_path, int& slave) {
    int master = posix_openpt(O_RDWR | O_NOCTTY);
    if (master < 0 || grantpt(master) || unlockpt(master)) die("posix_openpt");
    slave_path = ptsname(master);
    slave = open(slave_path.c_str(), O_RDWR | O_NOCTTY);
    if (slave < 0) die("open pty slave");
    termios t;
    if (tcgetattr(slave, &t)) die("tcgetattr");
    cfmakeraw(&t);
    if (tcsetattr(slave, TCSANOW, &t)) die("tcsetattr");
    fcntl(master, F_SETFL, fcntl(master, F_GETFL) | O_NONBLOCK);
    return master;
}

// Moves bytes between the pty master and the board (tx bytes only if `flush`), waiting up to
// timeout_ms for any of them (0: just look). Returns false when stdin reached EOF.
static bool service(Board& b, int master, int timeout_ms, bool flush) {
    flush = flush && !b.tx_buffer.empty();
    pollfd fds[2] = {{master, 0, 0}, {STDIN_FILENO, POLLIN, 0}};
    if (b.rx_queue.size() < RX_QUEUE_MAX) fds[0].events |= POLLIN;
    if (flush) fds[0].events |= POLLOUT;
    int n = poll(fds, 2, timeout_ms);
    if (n < 0) return true;                            // EINTR: the loop checks the signal flag
    if (fds[1].revents) {
        char junk[256];
        ssize_t r = read(STDIN_FILENO, junk, sizeof junk);
        if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) return false;
    }
    if (fds[0].revents & POLLIN) {
        uint8_t buf[RX_QUEUE_MAX];
        ssize_t r = read(master, buf, RX_QUEUE_MAX - b.rx_queue.size());
        // EIO: no slave open; EAGAIN: nothing yet. Neither is fatal.
        for (ssize_t i = 0; i < r; ++i) b.rx_queue.push_back(buf[i]);
    }
    if (flush) {
        ssize_t w = write(master, b.tx_buffer.data(), b.tx_buffer.size());
        if (w > 0) b.tx_buffer.erase(0, size_t(w));
        else if (w < 0 && errno == EIO) b.tx_buffer.clear();   // nobody on the line
    }
    return true;
}

int main(int argc, char** argv) {
    Stats stats;
    const char* trace_path = nullptr;
    for (int i = 1; i < argc; ++i) {
        std::string a = argv[i];
        if (a == "--stats" && i + 1 < argc) stats.path = argv[++i];
        else if (a == "--trace" && i + 1 < argc) trace_path = argv[++i];
        else {
            fprintf(stderr, "usage: %s [--stats FILE] [--trace FILE]\n", argv[0]);
            return 2;
        }
    }

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;                         // no SA_RESTART: poll() returns EINTR
    sigaction(SIGTERM, &sa, nullptr);
    sigaction(SIGINT, &sa, nullptr);
    signal(SIGPIPE, SIG_IGN);

    std::string slave_path;
    int slave;
    int master = open_pty(slave_path, slave);

    Board b;
    if (trace_path) {
#if VM_TRACE
        b.ctx->traceEverOn(true);
#else
        fprintf(stderr, "gateskip_board: built without tracing, --trace ignored\n");
#endif
    }
    b.top.reset(new Vboard{b.ctx.get()});
#if VM_TRACE
    if (trace_path) {
        b.trace.reset(new Trace);
        b.top->trace(b.trace.get(), 99);
        b.trace->open(trace_path);
    }
#endif

    b.top->clk = 0;
    b.top->rst = 1;
    b.top->rx = 1;
    b.top->eval();
    for (int i = 0; i < 4; ++i) b.cycle();
    b.top->rst = 0;

    printf("%s\n", slave_path.c_str());
    fflush(stdout);

    double busy_since = now();
    uint64_t flushed_at = 0;
    stats.write(b, 0, false);
    bool running = true;
    while (running && !stop_requested) {
        if (b.quiet()) {
            stats.seconds += now() - busy_since;
            if (stats.written_cycles != b.cycles || !stats.written_quiet)
                stats.write(b, stats.seconds, true);
            running = service(b, master, QUIET_POLL_MS, true);
            flushed_at = b.cycles;
            busy_since = now();
            continue;
        }
        if (stats.written_quiet) stats.write(b, stats.seconds, false);   // awake: say so at once
        for (unsigned i = 0; i < SERVICE_CYCLES && !b.quiet(); ++i) b.cycle();
        bool flush = b.tx_buffer.size() >= TX_BATCH || b.cycles - flushed_at >= TX_FLUSH_CYCLES ||
                     (!b.tx_buffer.empty() && !b.tx_active &&
                      b.cycles - b.tx_last >= TX_GAP_CYCLES);
        if (flush) flushed_at = b.cycles;
        running = service(b, master, 0, flush);
        double t = now();
        if (t - stats.last_write >= 1.0) stats.write(b, stats.seconds + t - busy_since, false);
    }
    stats.seconds += now() - busy_since;               // ~0 if the loop ended quiet
    service(b, master, 0, true);                       // hand over what the design sent last
    stats.write(b, stats.seconds, b.quiet());

    b.top->final();
#if VM_TRACE
    if (b.trace) b.trace->close();
#endif
    close(slave);
    close(master);
    return 0;
}
