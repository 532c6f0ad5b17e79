/* A DAW for the JACK tests: plays a script of MIDI at exact frames and records every byte it hears, by frame.
 *
 * Usage: daw_client NAME TO_PORT FROM_PORT LEAD_FRAMES < script
 * Script lines: "FRAME B1 [B2 [B3]]" (frame counted from the start, bytes in decimal), then "end FRAME".
 * The start is LEAD_FRAMES (rounded down to a period) after both connections are made: a period boundary. Events are written at their frame's offset in
 * the JACK period, as a DAW places them (a Python sender could only place them at a period's start).
 * Printed once the end frame has passed: one line per message heard, "FRAME B1 B2 ..." (frame from the
 * start, from JACK's own frame counter), then "late N" (script events that missed their period).
 *
 * No JACK headers are needed: the few functions used are declared here (linked with -l:libjack.so.0).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef uint32_t nframes_t;
typedef struct { nframes_t time; size_t size; unsigned char *buffer; } midi_event_t;
void *jack_client_open(const char *name, int options, int *status, ...);
int jack_client_close(void *client);
int jack_set_process_callback(void *client, int (*cb)(nframes_t, void *), void *arg);
int jack_activate(void *client);
int jack_deactivate(void *client);
void *jack_port_register(void *client, const char *name, const char *type, unsigned long flags, unsigned long size);
const char *jack_port_name(const void *port);
int jack_connect(void *client, const char *source, const char *destination);
void *jack_port_get_buffer(void *port, nframes_t nframes);
nframes_t jack_last_frame_time(const void *client);
nframes_t jack_frame_time(const void *client);
uint32_t jack_midi_get_event_count(void *buffer);
int jack_midi_event_get(midi_event_t *event, void *buffer, uint32_t index);
void jack_midi_clear_buffer(void *buffer);
int jack_midi_event_write(void *buffer, nframes_t time, const unsigned char *data, size_t size);

#define MAX_EVENTS 200000
#define MAX_BYTES 3

typedef struct { int64_t frame; unsigned char size, data[MAX_BYTES]; } event_t;

static void *client, *in_port, *out_port;
static event_t *script, *heard;
static int script_count, next_event;
static volatile int heard_count, late;
static volatile int64_t start = -1;  /* absolute frame of frame 0; -1 until the connections are made */
static volatile int64_t lead = -1;   /* set by main once connected: the next cycle puts the start this far ahead */

static int process(nframes_t nframes, void *arg) {
    (void)arg;
    int64_t cycle = jack_last_frame_time(client);
    void *out = jack_port_get_buffer(out_port, nframes), *in = jack_port_get_buffer(in_port, nframes);
    jack_midi_clear_buffer(out);
    if (start < 0) {
        /* the start is a period boundary, so a script frame's offset in its period is the same on every run */
        if (lead >= 0) __atomic_store_n(&start, cycle + lead - lead % nframes, __ATOMIC_RELEASE);
        return 0;
    }
    while (next_event < script_count && start + script[next_event].frame < cycle + nframes) {
        event_t *e = &script[next_event++];
        int64_t offset = start + e->frame - cycle;
        if (offset < 0) { offset = 0; late++; }
        jack_midi_event_write(out, (nframes_t)offset, e->data, e->size);
    }
    uint32_t count = jack_midi_get_event_count(in);
    for (uint32_t i = 0; i < count && heard_count < MAX_EVENTS; i++) {
        midi_event_t ev;
        if (jack_midi_event_get(&ev, in, i) != 0 || ev.size == 0 || ev.size > MAX_BYTES) continue;
        event_t *h = &heard[heard_count];
        h->frame = cycle + ev.time - start;
        h->size = (unsigned char)ev.size;
        memcpy(h->data, ev.buffer, ev.size);
        __atomic_store_n(&heard_count, heard_count + 1, __ATOMIC_RELEASE);
    }
    return 0;
}

static void nap_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

int main(int argc, char **argv) {
    if (argc != 5) { fprintf(stderr, "usage: daw_client NAME TO_PORT FROM_PORT LEAD_FRAMES < script\n"); return 2; }
    script = calloc(MAX_EVENTS, sizeof *script);
    heard = calloc(MAX_EVENTS, sizeof *heard);
    int64_t end = -1;
    char line[256];
    while (fgets(line, sizeof line, stdin)) {
        long long frame;
        unsigned b[MAX_BYTES];
        if (sscanf(line, "end %lld", &frame) == 1) { end = frame; continue; }
        int n = sscanf(line, "%lld %u %u %u", &frame, &b[0], &b[1], &b[2]);
        if (n < 2 || script_count >= MAX_EVENTS) { fprintf(stderr, "bad script line: %s", line); return 2; }
        event_t *e = &script[script_count++];
        e->frame = frame;
        e->size = (unsigned char)(n - 1);
        for (int i = 0; i < n - 1; i++) e->data[i] = (unsigned char)b[i];
    }
    for (int i = 1; i < script_count; i++)
        if (script[i].frame < script[i - 1].frame) { fprintf(stderr, "script frames must not go back\n"); return 2; }
    if (end < 0) { fprintf(stderr, "the script needs an 'end FRAME' line\n"); return 2; }
    int status = 0;
    client = jack_client_open(argv[1], 0x01 /* JackNoStartServer */, &status);
    if (!client) { fprintf(stderr, "no JACK server (status 0x%x)\n", status); return 1; }
    out_port = jack_port_register(client, "out", "8 bit raw midi", 0x2, 0);
    in_port = jack_port_register(client, "in", "8 bit raw midi", 0x1, 0);
    jack_set_process_callback(client, process, NULL);
    if (!out_port || !in_port || jack_activate(client) != 0) { fprintf(stderr, "cannot activate\n"); return 1; }
    if (jack_connect(client, jack_port_name(out_port), argv[2]) != 0
        || jack_connect(client, argv[3], jack_port_name(in_port)) != 0) {
        fprintf(stderr, "cannot connect to %s / %s\n", argv[2], argv[3]);
        return 1;
    }
    __atomic_store_n(&lead, atoll(argv[4]), __ATOMIC_RELEASE);
    while (__atomic_load_n(&start, __ATOMIC_ACQUIRE) < 0) nap_ms(1);
    while ((int64_t)jack_frame_time(client) < start + end) nap_ms(5);
    jack_deactivate(client);
    int count = __atomic_load_n(&heard_count, __ATOMIC_ACQUIRE);
    for (int i = 0; i < count; i++) {
        printf("%lld", (long long)heard[i].frame);
        for (int k = 0; k < heard[i].size; k++) printf(" %u", heard[i].data[k]);
        printf("\n");
    }
    printf("late %d\n", late);
    jack_client_close(client);
    return 0;
}
