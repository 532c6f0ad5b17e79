/* One JACK client with any number of MIDI ports, for companion/midi/jack.py (loaded with ctypes).
 *
 * Why C: JACK calls `process` on its real-time thread once per period; Python there would wait for the
 * interpreter lock and make the whole JACK graph (the DAW too) late. Here `process` only moves bytes between
 * the ports' buffers and lock-free ring buffers, and wakes the Python reader of an input with a semaphore, so
 * input is handed over the moment it arrives instead of at the next poll.
 *
 * libjack is opened with dlopen at run time, so building needs a C compiler and libc only (no JACK headers).
 */
#include <dlfcn.h>
#include <errno.h>
#include <semaphore.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_PORTS 32
#define RING_BYTES 65536
#define PORT_IS_INPUT 0x1
#define PORT_IS_OUTPUT 0x2
#define NO_START_SERVER 0x01
#define MIDI_TYPE "8 bit raw midi"

typedef uint32_t nframes_t;
typedef struct { nframes_t time; size_t size; unsigned char *buffer; } midi_event_t;
typedef struct ringbuffer ringbuffer_t;

static struct {
    void *(*client_open)(const char *, int, int *, ...);
    int (*client_close)(void *);
    int (*set_process_callback)(void *, int (*)(nframes_t, void *), void *);
    void (*on_shutdown)(void *, void (*)(void *), void *);
    int (*activate)(void *);
    int (*deactivate)(void *);
    void *(*port_register)(void *, const char *, const char *, unsigned long, unsigned long);
    int (*port_unregister)(void *, void *);
    void *(*port_get_buffer)(void *, nframes_t);
    uint32_t (*midi_get_event_count)(void *);
    int (*midi_event_get)(midi_event_t *, void *, uint32_t);
    void (*midi_clear_buffer)(void *);
    unsigned char *(*midi_event_reserve)(void *, nframes_t, size_t);
    ringbuffer_t *(*rb_create)(size_t);
    void (*rb_free)(ringbuffer_t *);
    size_t (*rb_read)(ringbuffer_t *, char *, size_t);
    size_t (*rb_peek)(ringbuffer_t *, char *, size_t);
    void (*rb_read_advance)(ringbuffer_t *, size_t);
    size_t (*rb_read_space)(const ringbuffer_t *);
    size_t (*rb_write)(ringbuffer_t *, const char *, size_t);
    size_t (*rb_write_space)(const ringbuffer_t *);
    nframes_t (*last_frame_time)(const void *);
    nframes_t (*get_sample_rate)(void *);
    /* optional (every JACK since 2011 has them): without them a period is taken to begin when `process` does */
    int (*get_cycle_times)(const void *, nframes_t *, uint64_t *, uint64_t *, float *);
    uint64_t (*get_time)(void);
} J;

static void *libjack;

#include "_jackout.h"

typedef struct {
    volatile int active;  /* 0: not touched by `process`; 1: in use; 2: closing (an output's buffer is cleared) */
    int is_input;
    void *port;
    ringbuffer_t *ring;
    sem_t arrived;
    volatile uint32_t dropped;  /* input: ring full; output: port buffer full */
    volatile int frame_stamps;  /* input: stamp each message at its frame (cycle start + offset), not on arrival */
    out_queue_t out;  /* an output's messages, each written at the frame it is due (_jackout.h) */
} slot_t;

typedef struct {
    void *client;
    volatile uint64_t cycles;
    volatile int shut_down;
    /* Cycles JACK ran without calling `process` (the machine stalled; JACK not real-time). In such a cycle the
       input a DAW sent is overwritten before we read it, and a DAW reading our output on a feedback connection
       (its output feeds ours, as in every DAW setup) reads what we wrote last time again: a double strike. */
    volatile uint64_t missed_cycles, repeat_cycles;
    nframes_t last_frame, rate;
    int seen, wrote;
    slot_t slots[MAX_PORTS];
} cj_t;

static void quiet(const char *message) { (void)message; }

static int load_jack(char *err, int errlen) {
    if (libjack) return 0;
    const char *names[] = {"libjack.so.0", "libjack.so", "libjack.0.dylib", "/usr/local/lib/libjack.0.dylib",
                           "/opt/homebrew/lib/libjack.0.dylib", NULL};
    void *lib = NULL;
    for (int i = 0; names[i] && !lib; i++) lib = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
    if (!lib) { snprintf(err, errlen, "libjack could not be loaded (is JACK installed?)"); return -1; }
#define SYM(field, name) do { *(void **)(&J.field) = dlsym(lib, name); \
        if (!J.field) { snprintf(err, errlen, "libjack has no %s", name); dlclose(lib); return -1; } } while (0)
    SYM(client_open, "jack_client_open"); SYM(client_close, "jack_client_close");
    SYM(set_process_callback, "jack_set_process_callback"); SYM(on_shutdown, "jack_on_shutdown");
    SYM(activate, "jack_activate"); SYM(deactivate, "jack_deactivate");
    SYM(port_register, "jack_port_register"); SYM(port_unregister, "jack_port_unregister");
    SYM(port_get_buffer, "jack_port_get_buffer"); SYM(midi_get_event_count, "jack_midi_get_event_count");
    SYM(midi_event_get, "jack_midi_event_get"); SYM(midi_clear_buffer, "jack_midi_clear_buffer");
    SYM(midi_event_reserve, "jack_midi_event_reserve");
    SYM(rb_create, "jack_ringbuffer_create"); SYM(rb_free, "jack_ringbuffer_free");
    SYM(rb_read, "jack_ringbuffer_read"); SYM(rb_peek, "jack_ringbuffer_peek");
    SYM(rb_read_advance, "jack_ringbuffer_read_advance"); SYM(rb_read_space, "jack_ringbuffer_read_space");
    SYM(rb_write, "jack_ringbuffer_write"); SYM(rb_write_space, "jack_ringbuffer_write_space");
    SYM(last_frame_time, "jack_last_frame_time"); SYM(get_sample_rate, "jack_get_sample_rate");
#undef SYM
    *(void **)(&J.get_cycle_times) = dlsym(lib, "jack_get_cycle_times");
    *(void **)(&J.get_time) = dlsym(lib, "jack_get_time");

    /* libjack prints to stderr on every failed connect (once a second while JACK is away), which would tear
       the terminal UI; Companion says what matters in its own log. */
    void (*set_error)(void (*)(const char *)) = (void (*)(void (*)(const char *)))dlsym(lib, "jack_set_error_function");
    void (*set_info)(void (*)(const char *)) = (void (*)(void (*)(const char *)))dlsym(lib, "jack_set_info_function");
    if (set_error) set_error(quiet);
    if (set_info) set_info(quiet);
    libjack = lib;
    return 0;
}

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);  /* the clock of Python's time.monotonic_ns() */
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* When this period began on the monotonic clock, for writing output at its frames: JACK's own cycle start (its
   filtered clock, read against ours), kept within the period before this callback began. The callback's start
   alone jitters by up to milliseconds on a busy machine; JACK's filtered times can jump after a stall or an xrun,
   and the bound keeps such a jump to less than a period. */
static uint64_t cycle_start_ns(cj_t *cj, uint64_t now, nframes_t nframes) {
    nframes_t frames;
    uint64_t start_us, next_us, jack_now_us = 0, before = now, after = now;
    float period_us;
    if (!J.get_cycle_times || !J.get_time || !cj->rate
        || J.get_cycle_times(cj->client, &frames, &start_us, &next_us, &period_us) != 0)
        return now;
    for (int tries = 0; tries < 3; tries++) {  /* the two clocks read together (a preemption between: again) */
        before = now_ns();
        jack_now_us = J.get_time();
        after = now_ns();
        if (after - before < 20000) break;
    }
    uint64_t period_ns = (uint64_t)nframes * 1000000000ull / cj->rate;
    uint64_t since_us = jack_now_us > start_us ? jack_now_us - start_us : 0;
    uint64_t since_ns = since_us * 1000 < period_ns ? since_us * 1000 : period_ns;
    return before + (after - before) / 2 - since_ns;
}

/* Input record: [u64 time_ns on arrival, or at its frame][u32 size][size bytes]. Outputs: out_queue_t (_jackout.h). */
static int process(nframes_t nframes, void *arg) {
    cj_t *cj = arg;
    uint64_t stamp = now_ns(), cycle_ns = cycle_start_ns(cj, stamp, nframes);
    double frames_per_ns = cj->rate / 1e9;
    nframes_t frame = J.last_frame_time(cj->client);
    if (cj->seen && nframes > 0 && (nframes_t)(frame - cj->last_frame) > nframes) {
        uint64_t missed = (nframes_t)(frame - cj->last_frame) / nframes - 1;
        __atomic_add_fetch(&cj->missed_cycles, missed, __ATOMIC_RELAXED);
        if (cj->wrote) __atomic_add_fetch(&cj->repeat_cycles, missed, __ATOMIC_RELAXED);
    }
    cj->last_frame = frame;
    cj->seen = 1;
    cj->wrote = 0;
    uint64_t woken = 0;  /* input slots whose reader is woken once every port's buffer is done */
    for (int i = 0; i < MAX_PORTS; i++) {
        slot_t *s = &cj->slots[i];
        int state = __atomic_load_n(&s->active, __ATOMIC_ACQUIRE);
        if (!state) continue;
        void *buffer = J.port_get_buffer(s->port, nframes);
        if (state == 2) {  /* an output's buffer would otherwise be sent again every cycle until it is gone */
            if (!s->is_input) J.midi_clear_buffer(buffer);
            continue;
        }
        if (s->is_input) {
            uint32_t count = J.midi_get_event_count(buffer), woke = 0;
            for (uint32_t e = 0; e < count; e++) {
                midi_event_t ev;
                if (J.midi_event_get(&ev, buffer, e) != 0 || ev.size == 0) continue;
                if (ev.buffer[0] == 0xF0 || ev.buffer[0] == 0xFE) continue;  /* SysEx, active sensing */
                uint32_t size = (uint32_t)ev.size;
                uint64_t at = s->frame_stamps ? cycle_ns + (uint64_t)((double)ev.time / frames_per_ns) : stamp;
                if (J.rb_write_space(s->ring) < sizeof at + sizeof size + size) { s->dropped++; continue; }
                J.rb_write(s->ring, (const char *)&at, sizeof at);
                J.rb_write(s->ring, (const char *)&size, sizeof size);
                J.rb_write(s->ring, (const char *)ev.buffer, size);
                woke = 1;
            }
            if (woke) woken |= 1ull << i;
        } else {
            J.midi_clear_buffer(buffer);
            if (out_write(&s->out, buffer, nframes, cycle_ns, frames_per_ns, &s->dropped)) cj->wrote = 1;
        }
    }
    /* Last: a woken reader (a real-time thread) may take the CPU at once, and a cycle left unfinished has its
       output read again by a DAW on a feedback connection (its messages heard twice). */
    for (int i = 0; i < MAX_PORTS; i++)
        if (woken & (1ull << i)) sem_post(&cj->slots[i].arrived);
    __atomic_add_fetch(&cj->cycles, 1, __ATOMIC_RELEASE);
    return 0;
}

static void shutdown_cb(void *arg) {
    cj_t *cj = arg;
    cj->shut_down = 1;
    for (int i = 0; i < MAX_PORTS; i++)
        if (cj->slots[i].active && cj->slots[i].is_input) sem_post(&cj->slots[i].arrived);
}

cj_t *cj_open(const char *name, char *err, int errlen) {
    if (load_jack(err, errlen) != 0) return NULL;
    int status = 0;
    void *client = J.client_open(name, NO_START_SERVER, &status);
    if (!client) { snprintf(err, errlen, "no JACK server is running (status 0x%x)", status); return NULL; }
    cj_t *cj = calloc(1, sizeof *cj);
    if (!cj) { J.client_close(client); snprintf(err, errlen, "out of memory"); return NULL; }
    cj->client = client;
    cj->rate = J.get_sample_rate(client);
    for (int i = 0; i < MAX_PORTS; i++) sem_init(&cj->slots[i].arrived, 0, 0);
    J.set_process_callback(client, process, cj);
    J.on_shutdown(client, shutdown_cb, cj);
    if (J.activate(client) != 0) {
        J.client_close(client); free(cj); snprintf(err, errlen, "the JACK client could not be activated");
        return NULL;
    }
    return cj;
}

void *cj_client(cj_t *cj) { return cj->client; }
int cj_shut_down(cj_t *cj) { return cj->shut_down; }

static int add_at(cj_t *cj, int i, const char *name, int is_input) {
    slot_t *s = &cj->slots[i];
    void *port = J.port_register(cj->client, name, MIDI_TYPE, is_input ? PORT_IS_INPUT : PORT_IS_OUTPUT, 0);
    if (!port) return -1;
    if ((!s->ring && !(s->ring = J.rb_create(RING_BYTES))) || (!is_input && out_init(&s->out) != 0)) {
        J.port_unregister(cj->client, port);
        return -1;
    }
    while (sem_trywait(&s->arrived) == 0) {}
    char scratch[256];
    size_t left;
    while ((left = J.rb_read_space(s->ring)) > 0) J.rb_read(s->ring, scratch, left < 256 ? left : 256);
    s->is_input = is_input;
    s->port = port;
    s->dropped = 0;
    s->frame_stamps = 0;
    __atomic_store_n(&s->active, 1, __ATOMIC_RELEASE);
    return i;
}

/* Register a port; returns its slot index, or -1 (a duplicate name, too many ports, no memory). */
int cj_add_port(cj_t *cj, const char *name, int is_input) {
    for (int i = 0; i < MAX_PORTS; i++)
        if (!cj->slots[i].active && !cj->slots[i].port) return add_at(cj, i, name, is_input);
    return -1;
}

/* The same, in a given slot (a client re-opened after JACK came back keeps its ports' slots). */
int cj_add_port_at(cj_t *cj, int slot, const char *name, int is_input) {
    if (slot < 0 || slot >= MAX_PORTS || cj->slots[slot].active || cj->slots[slot].port) return -1;
    return add_at(cj, slot, name, is_input);
}

void *cj_port(cj_t *cj, int slot) { return cj->slots[slot].port; }

/* Cycles JACK ran without us since the client opened; `repeat` counts those right after a cycle that wrote output. */
uint64_t cj_missed_cycles(cj_t *cj, int repeat) {
    return __atomic_load_n(repeat ? &cj->repeat_cycles : &cj->missed_cycles, __ATOMIC_RELAXED);
}
uint32_t cj_dropped(cj_t *cj, int slot) { return cj->slots[slot].dropped; }

/* An input's messages stamped at their frame (on the map timed output uses) rather than when the period began. */
void cj_set_frame_stamps(cj_t *cj, int slot, int on) { cj->slots[slot].frame_stamps = on; }

/* Wait until `process` is past any use of a slot just made inactive (bounded: the server may be gone). */
static void wait_cycles(cj_t *cj) {
    uint64_t start = __atomic_load_n(&cj->cycles, __ATOMIC_ACQUIRE);
    for (int i = 0; i < 200 && !cj->shut_down; i++) {
        if (__atomic_load_n(&cj->cycles, __ATOMIC_ACQUIRE) >= start + 2) return;
        struct timespec ts = {0, 500000};
        nanosleep(&ts, NULL);
    }
}

/* An output's queued messages (the note-offs of a closing session) go out, at once, before the port does. */
static void drain(cj_t *cj, slot_t *s) {
    if (s->is_input || !s->out.recs) return;
    s->out.flush = 1;
    for (int i = 0; i < 400 && !cj->shut_down && s->active == 1
         && __atomic_load_n(&s->out.tail, __ATOMIC_ACQUIRE) != __atomic_load_n(&s->out.head, __ATOMIC_ACQUIRE);
         i++) {
        struct timespec ts = {0, 250000};
        nanosleep(&ts, NULL);
    }
}

void cj_remove_port(cj_t *cj, int slot) {
    slot_t *s = &cj->slots[slot];
    if (!s->port) return;
    drain(cj, s);
    __atomic_store_n(&s->active, 2, __ATOMIC_RELEASE);
    wait_cycles(cj);  /* its buffer is cleared: what went out last is not repeated */
    __atomic_store_n(&s->active, 0, __ATOMIC_RELEASE);
    wait_cycles(cj);
    if (!cj->shut_down) J.port_unregister(cj->client, s->port);
    s->port = NULL;
    if (s->is_input) sem_post(&s->arrived);  /* a reader still waiting returns */
}

/* Queue one message for the frame `due_ns` (monotonic ns) falls on, 0 for the next period: 0 on success, 1 if
   it was a note-off that cancelled its still pending note-on, -1 if the queue is full (the server has stalled),
   -2 if the port or JACK is gone, -3 if the message is longer than an output record holds. One caller at a time. */
int cj_send_at(cj_t *cj, int slot, const unsigned char *data, uint32_t size, uint64_t due_ns) {
    slot_t *s = &cj->slots[slot];
    if (!s->active || cj->shut_down || s->is_input) return -2;
    if (size == 0 || size > OUT_MSG) return -3;
    return out_send(&s->out, data, size, due_ns);
}

int cj_send(cj_t *cj, int slot, const unsigned char *data, uint32_t size) {
    return cj_send_at(cj, slot, data, size, 0);
}

/* Timed messages written after their frame had passed (the producer handed them over too late), and the worst. */
uint64_t cj_output_late(cj_t *cj, int slot, uint64_t *late_max_ns) {
    *late_max_ns = cj->slots[slot].out.late_max_ns;
    return cj->slots[slot].out.late;
}

/* Block (without the Python lock: ctypes releases it) until input arrives or `timeout_us` passes. */
int cj_wait(cj_t *cj, int slot, int timeout_us) {
    slot_t *s = &cj->slots[slot];
    if (J.rb_read_space(s->ring) > 0) return 1;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_nsec += (long)(timeout_us % 1000000) * 1000;
    ts.tv_sec += timeout_us / 1000000 + ts.tv_nsec / 1000000000;
    ts.tv_nsec %= 1000000000;
    while (sem_timedwait(&s->arrived, &ts) != 0 && errno == EINTR) {}
    return J.rb_read_space(s->ring) > 0;
}

/* Take one message: its size (0 if none; -1 if `cap` is too small, then it is skipped) and arrival time. */
int cj_read(cj_t *cj, int slot, unsigned char *out, uint32_t cap, uint64_t *time_ns) {
    slot_t *s = &cj->slots[slot];
    uint64_t stamp;
    uint32_t size;
    char header[sizeof stamp + sizeof size];
    /* `process` writes a record in three steps: take it only once all of it is there */
    if (J.rb_peek(s->ring, header, sizeof header) < sizeof header) return 0;
    memcpy(&stamp, header, sizeof stamp);
    memcpy(&size, header + sizeof stamp, sizeof size);
    if (J.rb_read_space(s->ring) < sizeof header + size) return 0;
    J.rb_read_advance(s->ring, sizeof header);
    if (size > cap) { J.rb_read_advance(s->ring, size); return -1; }
    J.rb_read(s->ring, (char *)out, size);
    *time_ns = stamp;
    return (int)size;
}

/* JACK went away: let go of the dead client but keep the struct, which reader threads may still be waiting on. */
void cj_abandon(cj_t *cj) {
    for (int i = 0; i < MAX_PORTS; i++) {
        __atomic_store_n(&cj->slots[i].active, 0, __ATOMIC_RELEASE);
        if (cj->slots[i].is_input) sem_post(&cj->slots[i].arrived);
    }
    cj->shut_down = 1;
    J.client_close(cj->client);
}

void cj_close(cj_t *cj) {
    if (!cj) return;
    for (int i = 0; i < MAX_PORTS; i++) drain(cj, &cj->slots[i]);
    for (int i = 0; i < MAX_PORTS; i++)
        if (cj->slots[i].active) __atomic_store_n(&cj->slots[i].active, 2, __ATOMIC_RELEASE);
    wait_cycles(cj);
    if (!cj->shut_down) J.deactivate(cj->client);
    J.client_close(cj->client);
    for (int i = 0; i < MAX_PORTS; i++) {
        if (cj->slots[i].ring) J.rb_free(cj->slots[i].ring);
        free(cj->slots[i].out.recs);
        sem_destroy(&cj->slots[i].arrived);
    }
    free(cj);
}
