/* The output queue of one JACK output port, included once by _jackmidi.c.
 *
 * Python hands each message over with the time it is due (monotonic ns, the clock of time.monotonic_ns(); 0 means
 * "as soon as possible"), a little ahead of that time. `process` writes every message at the frame of its period
 * that its due time falls on, so planned notes leave on their exact frame however late Python's thread ran, as
 * long as it handed them over before their period began.
 *
 * One producer (Python, under the port's lock) and one consumer (`process`). Records go in at `head` and are
 * retired at `tail` once written or cancelled; each record's state moves PENDING -> WRITTEN (by `process`) or
 * PENDING -> CANCELLED (by the producer) with a compare-and-swap, so a message is written at most once and a
 * cancelled one never.
 *
 * The note stream stays consistent although messages may now leave in another order than they were handed over:
 * - an immediate Start, Continue, Stop or Song Position cancels the clock pulses still pending (the old timeline's);
 * - an immediate All Sound Off or All Notes Off (CC 120, 123) cancels the channel's notes still pending;
 * - an immediate note-off for a key whose note-on is still pending cancels that note-on (and its pending note-off):
 *   the note never sounds, instead of sounding after its note-off (a hanging note);
 * - an immediate note-on for a key with timed messages still pending sends those first, now, in their order: a
 *   pending note-off would otherwise cut the new note later, a pending note-on strike it again.
 */
#define OUT_CAP 4096
#define OUT_MSG 16
#define OUT_SCAN 512  /* records looked at per period: the queue holds a few ms of music */
enum { REC_PENDING = 1, REC_WRITTEN = 2, REC_CANCELLED = 3 };

typedef struct { uint64_t due_ns; int state; uint32_t size; unsigned char data[OUT_MSG]; } out_rec_t;

typedef struct {
    out_rec_t *recs;
    uint64_t head, tail;  /* head: the producer's, tail: the consumer's; both published with release */
    volatile int flush;   /* the port is closing: everything pending goes out now */
    volatile uint64_t late, late_max_ns;  /* timed messages written after their frame had passed */
} out_queue_t;

static int out_init(out_queue_t *q) {
    if (!q->recs && !(q->recs = calloc(OUT_CAP, sizeof *q->recs))) return -1;
    __atomic_store_n(&q->head, 0, __ATOMIC_RELEASE);
    __atomic_store_n(&q->tail, 0, __ATOMIC_RELEASE);
    q->flush = 0;
    q->late = q->late_max_ns = 0;
    return 0;
}

static int out_note(const unsigned char *d, uint32_t size, int *key) {  /* 1: note-on, -1: note-off, 0: other */
    if (size < 3 || (d[0] & 0xE0) != 0x80) return 0;
    *key = ((d[0] & 0x0F) << 8) | d[1];
    return (d[0] & 0xF0) == 0x90 && d[2] > 0 ? 1 : -1;
}

static int out_push(out_queue_t *q, const unsigned char *data, uint32_t size, uint64_t due_ns) {
    uint64_t head = q->head;
    if (head - __atomic_load_n(&q->tail, __ATOMIC_ACQUIRE) >= OUT_CAP) return -1;
    out_rec_t *r = &q->recs[head % OUT_CAP];
    r->due_ns = due_ns;
    r->size = size;
    memcpy(r->data, data, size);
    __atomic_store_n(&r->state, REC_PENDING, __ATOMIC_RELAXED);
    __atomic_store_n(&q->head, head + 1, __ATOMIC_RELEASE);
    return 0;
}

static int out_cancel(out_rec_t *r) {
    int pending = REC_PENDING;
    return __atomic_compare_exchange_n(&r->state, &pending, REC_CANCELLED, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE);
}

/* The newest record still pending for a key (of a kind: 1 note-on, -1 note-off, 0 either), or -1. */
static int64_t out_newest(out_queue_t *q, int key, int want, int *kind) {
    uint64_t tail = __atomic_load_n(&q->tail, __ATOMIC_ACQUIRE);
    for (uint64_t i = q->head; i > tail; i--) {
        out_rec_t *r = &q->recs[(i - 1) % OUT_CAP];
        int k = -1, note = out_note(r->data, r->size, &k);
        if (note && k == key && (!want || note == want)
            && __atomic_load_n(&r->state, __ATOMIC_ACQUIRE) == REC_PENDING) {
            *kind = note;
            return (int64_t)(i - 1);
        }
    }
    return -1;
}

/* 0: queued; 1: an immediate note-off that cancelled its pending note-on (nothing to send); -1: the queue is full. */
static int out_send(out_queue_t *q, const unsigned char *data, uint32_t size, uint64_t due_ns) {
    int key = -1, kind = 0, note = out_note(data, size, &key);
    if (due_ns == 0 && size >= 3 && (data[0] & 0xF0) == 0xB0 && (data[1] == 120 || data[1] == 123)) {
        /* All Sound Off or All Notes Off now (a panic, a close): the channel's planned notes never follow it */
        uint64_t tail = __atomic_load_n(&q->tail, __ATOMIC_ACQUIRE), head = q->head;
        for (uint64_t i = tail; i < head; i++) {
            out_rec_t *r = &q->recs[i % OUT_CAP];
            int k = -1;
            if (r->due_ns != 0 && out_note(r->data, r->size, &k) && (k >> 8) == (data[0] & 0x0F)) out_cancel(r);
        }
    }
    if (due_ns == 0 && size >= 1 && (data[0] == 0xFA || data[0] == 0xFB || data[0] == 0xFC || data[0] == 0xF2)) {
        /* Start, Continue, Stop or Song Position now: the clock pulses handed over for the timeline before it
           never follow it (a follower would count them into the new one) */
        uint64_t tail = __atomic_load_n(&q->tail, __ATOMIC_ACQUIRE), head = q->head;
        for (uint64_t i = tail; i < head; i++) {
            out_rec_t *r = &q->recs[i % OUT_CAP];
            if (r->size == 1 && r->data[0] == 0xF8 && r->due_ns != 0) out_cancel(r);
        }
    }
    if (due_ns == 0 && note < 0) {
        int64_t j = out_newest(q, key, 1, &kind);
        if (j >= 0 && out_cancel(&q->recs[j % OUT_CAP])) {
            for (uint64_t i = (uint64_t)j + 1; i < q->head; i++) {  /* its own note-off, if handed over */
                out_rec_t *r = &q->recs[i % OUT_CAP];
                int k = -1;
                if (out_note(r->data, r->size, &k) < 0 && k == key && out_cancel(r)) break;
            }
            return 1;
        }
        /* a note already sounding, ended now (a stop, a close): its planned note-off would strike it off again */
        j = out_newest(q, key, -1, &kind);
        if (j >= 0) out_cancel(&q->recs[j % OUT_CAP]);
    }
    if (due_ns == 0 && note > 0) {  /* what is pending for the key goes now, in its order, before the new note */
        uint64_t tail = __atomic_load_n(&q->tail, __ATOMIC_ACQUIRE), head = q->head;
        for (uint64_t i = tail; i < head; i++) {
            out_rec_t *r = &q->recs[i % OUT_CAP];
            int k = -1;
            if (out_note(r->data, r->size, &k) && k == key && r->due_ns != 0 && out_cancel(r)
                && out_push(q, r->data, r->size, 0) != 0)
                return -1;
        }
    }
    return out_push(q, data, size, due_ns);
}

typedef struct { uint32_t offset; uint64_t index; } out_pick_t;

/* `process`: write what is due in this period into the port's buffer, at its frame. */
static int out_write(out_queue_t *q, void *buffer, nframes_t nframes, uint64_t cycle_ns, double frames_per_ns,
                     volatile uint32_t *dropped) {
    out_pick_t picks[OUT_SCAN];
    int count = 0, wrote = 0, flush = q->flush;
    uint64_t head = __atomic_load_n(&q->head, __ATOMIC_ACQUIRE), tail = q->tail;
    for (uint64_t i = tail; i < head && i - tail < OUT_SCAN; i++) {
        out_rec_t *r = &q->recs[i % OUT_CAP];
        if (__atomic_load_n(&r->state, __ATOMIC_ACQUIRE) != REC_PENDING) continue;
        double ahead = flush || r->due_ns == 0 ? 0.0 : ((double)r->due_ns - (double)cycle_ns) * frames_per_ns;
        if (ahead >= (double)nframes) continue;  /* a later period's */
        if (ahead < 0.0) {  /* its frame has passed: now, and counted when it was planned */
            if (r->due_ns && !flush) {
                uint64_t late_ns = cycle_ns - r->due_ns;
                q->late++;
                if (late_ns > q->late_max_ns) q->late_max_ns = late_ns;
            }
            ahead = 0.0;
        }
        out_pick_t pick = {(uint32_t)ahead, i};
        int at = count++;
        while (at > 0 && picks[at - 1].offset > pick.offset) { picks[at] = picks[at - 1]; at--; }  /* stable */
        picks[at] = pick;
    }
    for (int p = 0; p < count; p++) {
        out_rec_t *r = &q->recs[picks[p].index % OUT_CAP];
        int pending = REC_PENDING;
        if (!__atomic_compare_exchange_n(&r->state, &pending, REC_WRITTEN, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
            continue;  /* cancelled meanwhile */
        unsigned char *data = J.midi_event_reserve(buffer, picks[p].offset, r->size);
        if (data) { memcpy(data, r->data, r->size); wrote = 1; }
        else (*dropped)++;
    }
    while (tail < head && __atomic_load_n(&q->recs[tail % OUT_CAP].state, __ATOMIC_ACQUIRE) != REC_PENDING) tail++;
    __atomic_store_n(&q->tail, tail, __ATOMIC_RELEASE);
    return wrote;
}
