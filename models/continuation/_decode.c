/* One decoding step of the continuation Transformer (models/transformer.py's GPT) for batch 1, in C.
 *
 * Why: on a 2-core laptop-class CPU a step of the 3.2 M-parameter model is bound by reading its weights, and
 * torch's int8 kernels spend more time on per-call overhead than on the arithmetic (50-60 us a layer at batch 1).
 * Here the weights are int8 with one fp32 scale per output (weight-only quantization: activations stay fp32),
 * stored input-major so each layer is one pass of multiply-adds over contiguous bytes, and a whole step (layer
 * norms, rotary positions, attention over the KV cache, GELU, the tied head) is one call that releases the GIL.
 *
 * The KV cache is the caller's buffer, laid out as models.transformer.KVCache.kv for batch 1:
 * (n_layer, 2, 1, n_head, capacity, head_size) float32, so a prefill by torch and steps here share it.
 * models/continuation/fast_decode.py builds a Decoder from a GPT and checks its logits against torch in the tests.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define X86_KERNELS 1
#include <immintrin.h>
#else
#define X86_KERNELS 0
#endif

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
/* AVX-512, else AVX2 + FMA, where the CPU has them, plain SSE2 otherwise (chosen once, at load, by the dynamic linker). */
#define VECTOR_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define VECTOR_CLONES
#endif

#define BLOCK 64 /* outputs per weight block; exported as models.continuation._decode.BLOCK for the layout */

typedef struct {
    int8_t *w;     /* (out / BLOCK rounded up, in, BLOCK) */
    float *scale;  /* (out) */
    float *bias;   /* (out) or NULL */
    int in, out;
} Linear;

typedef struct {
    float *ln1_w, *ln1_b, *ln2_w, *ln2_b;
    Linear qkv, proj, fc, out;
} Layer;

typedef struct {
    PyObject_HEAD
    int n_layer, n_embd, n_head, head_size, vocab, max_pos;
    float eps;
    float *wte;  /* (vocab, n_embd) fp32: the token embedding */
    Linear head; /* the tied LM head, int8 */
    float *lnf_w, *lnf_b;
    float *cos, *sin; /* (max_pos, head_size / 2) */
    Layer *layers;
} Decoder;

/* ---- arithmetic --------------------------------------------------------------------------------------- */

/* acc[BLOCK] = x @ (one block of W), W int8 in blocks of BLOCK outputs, each block (in, BLOCK) contiguous: a
 * block's accumulators stay in registers for the whole pass over the inputs, and the weights are read in order. */
static void block_generic(const int8_t *w, const float *x, int in, float *acc)
{
    for (int k = 0; k < BLOCK; k++)
        acc[k] = 0.0f;
    for (int i = 0; i < in; i++) {
        const float xi = x[i];
        const int8_t *row = w + (size_t)i * BLOCK;
        for (int k = 0; k < BLOCK; k++)
            acc[k] += xi * (float)row[k];
    }
}

#if X86_KERNELS
/* The same with AVX-512 and with AVX2 + FMA: each 16 (8) weights sign-extended from bytes straight to 32 bits,
 * converted and multiply-added (compilers left to themselves widen in two steps). */
__attribute__((target("avx512f"))) static void block_avx512(const int8_t *w, const float *x, int in, float *acc)
{
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    for (int i = 0; i < in; i++) {
        const __m512 xi = _mm512_set1_ps(x[i]);
        const int8_t *row = w + (size_t)i * BLOCK;
        a0 = _mm512_fmadd_ps(xi, _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)row))), a0);
        a1 = _mm512_fmadd_ps(xi, _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(row + 16)))), a1);
        a2 = _mm512_fmadd_ps(xi, _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(row + 32)))), a2);
        a3 = _mm512_fmadd_ps(xi, _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(row + 48)))), a3);
    }
    _mm512_storeu_ps(acc, a0);
    _mm512_storeu_ps(acc + 16, a1);
    _mm512_storeu_ps(acc + 32, a2);
    _mm512_storeu_ps(acc + 48, a3);
}

__attribute__((target("avx2,fma"))) static void block_avx2(const int8_t *w, const float *x, int in, float *acc)
{
    __m256 a[8];
    for (int k = 0; k < 8; k++)
        a[k] = _mm256_setzero_ps();
    for (int i = 0; i < in; i++) {
        const __m256 xi = _mm256_set1_ps(x[i]);
        const int8_t *row = w + (size_t)i * BLOCK;
        for (int k = 0; k < 8; k++) {
            const __m128i bytes = _mm_loadl_epi64((const __m128i *)(row + 8 * k));
            a[k] = _mm256_fmadd_ps(xi, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(bytes)), a[k]);
        }
    }
    for (int k = 0; k < 8; k++)
        _mm256_storeu_ps(acc + 8 * k, a[k]);
}
#endif

typedef void (*BlockKernel)(const int8_t *, const float *, int, float *);
static BlockKernel block_kernel = block_generic; /* the best the CPU has, set when the module loads */
static const char *kernel_name = "generic";

/* The kernels this CPU can run, best first (the tests run each). */
static int kernel_supported(const char *name)
{
    if (strcmp(name, "generic") == 0)
        return 1;
#if X86_KERNELS
    __builtin_cpu_init();
    if (strcmp(name, "avx512") == 0)
        return __builtin_cpu_supports("avx512f");
    if (strcmp(name, "avx2") == 0)
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#endif
    return 0;
}

static int use_kernel(const char *name)
{
    if (!kernel_supported(name))
        return -1;
#if X86_KERNELS
    if (strcmp(name, "avx512") == 0)
        block_kernel = block_avx512;
    else if (strcmp(name, "avx2") == 0)
        block_kernel = block_avx2;
    else
#endif
        block_kernel = block_generic;
    kernel_name = strcmp(name, "avx512") == 0 ? "avx512" : strcmp(name, "avx2") == 0 ? "avx2" : "generic";
    return 0;
}

/* y = x @ W * scale (+ bias), or y += that when accumulate. */
static void linear(const Linear *l, const float *x, float *y, int accumulate)
{
    const int in = l->in, out = l->out, blocks = (out + BLOCK - 1) / BLOCK;
    float acc[BLOCK];
    for (int blk = 0; blk < blocks; blk++) {
        block_kernel(l->w + (size_t)blk * in * BLOCK, x, in, acc);
        const int o0 = blk * BLOCK, n = out - o0 < BLOCK ? out - o0 : BLOCK;
        for (int k = 0; k < n; k++) {
            const float v = acc[k] * l->scale[o0 + k] + (l->bias ? l->bias[o0 + k] : 0.0f);
            y[o0 + k] = accumulate ? y[o0 + k] + v : v;
        }
    }
}

static void layer_norm(const float *x, const float *w, const float *b, float eps, int n, float *y)
{
    double mean = 0.0, var = 0.0;
    for (int i = 0; i < n; i++)
        mean += x[i];
    mean /= n;
    for (int i = 0; i < n; i++) {
        double d = x[i] - mean;
        var += d * d;
    }
    const float inv = (float)(1.0 / sqrt(var / n + eps));
    for (int i = 0; i < n; i++)
        y[i] = (float)(x[i] - mean) * inv * w[i] + (b ? b[i] : 0.0f);
}

/* x's two halves as (real, imaginary), turned by the position's angles (models.transformer.Rotary.rotate). */
static void rotate(float *x, const float *cos, const float *sin, int half)
{
    for (int i = 0; i < half; i++) {
        const float a = x[i], b = x[i + half];
        x[i] = a * cos[i] - b * sin[i];
        x[i + half] = a * sin[i] + b * cos[i];
    }
}

VECTOR_CLONES
static void attend(const float *q, const float *keys, const float *values, int n, int hs, float *scores, float *y)
{
    const float scale = 1.0f / sqrtf((float)hs);
    float top = -INFINITY;
    for (int j = 0; j < n; j++) {
        const float *k = keys + (size_t)j * hs;
        float s = 0.0f;
        for (int d = 0; d < hs; d++)
            s += q[d] * k[d];
        scores[j] = s * scale;
        if (scores[j] > top)
            top = scores[j];
    }
    float total = 0.0f;
    for (int j = 0; j < n; j++) {
        scores[j] = expf(scores[j] - top);
        total += scores[j];
    }
    memset(y, 0, sizeof(float) * (size_t)hs);
    for (int j = 0; j < n; j++) {
        const float p = scores[j] / total;
        const float *v = values + (size_t)j * hs;
        for (int d = 0; d < hs; d++)
            y[d] += p * v[d];
    }
}

/* One token at position pos: writes its keys and values into kv and the logits after it. */
static void decode_step(const Decoder *m, int token, int pos, float *kv, int capacity, float *logits, float *scratch)
{
    const int C = m->n_embd, nh = m->n_head, hs = m->head_size, half = hs / 2, n = pos + 1;
    float *x = scratch, *xn = x + C, *qkv = xn + C, *att = qkv + 3 * C, *h = att + C;
    float *scores = h + 4 * C;
    const float *cos = m->cos + (size_t)pos * half, *sin = m->sin + (size_t)pos * half;
    const size_t head_stride = (size_t)capacity * hs, kind_stride = head_stride * nh;

    memcpy(x, m->wte + (size_t)token * C, sizeof(float) * (size_t)C);
    for (int l = 0; l < m->n_layer; l++) {
        const Layer *L = &m->layers[l];
        float *keys = kv + (size_t)l * 2 * kind_stride, *values = keys + kind_stride;
        layer_norm(x, L->ln1_w, L->ln1_b, m->eps, C, xn);
        linear(&L->qkv, xn, qkv, 0);
        for (int hd = 0; hd < nh; hd++) {
            float *q = qkv + hd * hs, *k = qkv + C + hd * hs, *v = qkv + 2 * C + hd * hs;
            rotate(q, cos, sin, half);
            rotate(k, cos, sin, half);
            memcpy(keys + hd * head_stride + (size_t)pos * hs, k, sizeof(float) * (size_t)hs);
            memcpy(values + hd * head_stride + (size_t)pos * hs, v, sizeof(float) * (size_t)hs);
            attend(q, keys + hd * head_stride, values + hd * head_stride, n, hs, scores, att + hd * hs);
        }
        linear(&L->proj, att, x, 1);
        layer_norm(x, L->ln2_w, L->ln2_b, m->eps, C, xn);
        linear(&L->fc, xn, h, 0);
        for (int i = 0; i < 4 * C; i++)
            h[i] = 0.5f * h[i] * (1.0f + erff(h[i] * 0.70710678118654752f));
        linear(&L->out, h, x, 1);
    }
    layer_norm(x, m->lnf_w, m->lnf_b, m->eps, C, xn);
    linear(&m->head, xn, logits, 0);
}

/* ---- Python glue -------------------------------------------------------------------------------------- */

/* A malloc'd copy of a C-contiguous buffer of exactly count items of size itemsize (NULL and an error if not).
 * None gives NULL without an error where optional. */
static void *copy_buffer(PyObject *obj, Py_ssize_t count, Py_ssize_t itemsize, const char *what, int optional)
{
    if (obj == Py_None) {
        if (optional)
            return NULL;
        PyErr_Format(PyExc_ValueError, "decoder: %s is missing", what);
        return NULL;
    }
    Py_buffer view;
    if (PyObject_GetBuffer(obj, &view, PyBUF_C_CONTIGUOUS) < 0)
        return NULL;
    void *copy = NULL;
    if (view.len != count * itemsize)
        PyErr_Format(PyExc_ValueError, "decoder: %s has %zd bytes, expected %zd", what, view.len, count * itemsize);
    else if ((copy = malloc((size_t)view.len)) == NULL)
        PyErr_NoMemory();
    else
        memcpy(copy, view.buf, (size_t)view.len);
    PyBuffer_Release(&view);
    return copy;
}

static int read_linear(Linear *l, PyObject *w, PyObject *scale, PyObject *bias, int in, int out, const char *what)
{
    l->in = in;
    l->out = out;
    l->w = copy_buffer(w, (Py_ssize_t)in * ((out + BLOCK - 1) / BLOCK) * BLOCK, 1, what, 0);
    if (!l->w)
        return -1;
    l->scale = copy_buffer(scale, out, 4, what, 0);
    if (!l->scale)
        return -1;
    l->bias = copy_buffer(bias, out, 4, what, 1);
    return (bias != Py_None && !l->bias) ? -1 : 0;
}

static void free_linear(Linear *l)
{
    free(l->w);
    free(l->scale);
    free(l->bias);
}

static void Decoder_dealloc(Decoder *self)
{
    if (self->layers) {
        for (int l = 0; l < self->n_layer; l++) {
            Layer *L = &self->layers[l];
            free(L->ln1_w);
            free(L->ln1_b);
            free(L->ln2_w);
            free(L->ln2_b);
            free_linear(&L->qkv);
            free_linear(&L->proj);
            free_linear(&L->fc);
            free_linear(&L->out);
        }
        free(self->layers);
    }
    free(self->wte);
    free_linear(&self->head);
    free(self->lnf_w);
    free(self->lnf_b);
    free(self->cos);
    free(self->sin);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* Decoder(n_embd, n_head, vocab, max_pos, eps, wte, head_q, head_scale, lnf_w, lnf_b, cos, sin, layers):
 * layers a sequence of 16-tuples (ln1_w, ln1_b, qkv_q, qkv_scale, qkv_b, proj_q, proj_scale, proj_b,
 * ln2_w, ln2_b, fc_q, fc_scale, fc_b, out_q, out_scale, out_b); None for an absent bias. */
static int Decoder_init(Decoder *self, PyObject *args, PyObject *kwds)
{
    int C, nh, V, max_pos;
    float eps;
    PyObject *wte, *head_q, *head_scale, *lnf_w, *lnf_b, *cos, *sin, *layers;
    static char *names[] = {"n_embd", "n_head", "vocab", "max_pos", "eps", "wte", "head_q", "head_scale",
                            "lnf_w", "lnf_b", "cos", "sin", "layers", NULL};
    if (self->layers) {
        PyErr_SetString(PyExc_RuntimeError, "decoder: already initialised");
        return -1;
    }
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "iiiifOOOOOOOO", names, &C, &nh, &V, &max_pos, &eps, &wte,
                                     &head_q, &head_scale, &lnf_w, &lnf_b, &cos, &sin, &layers))
        return -1;
    if (C <= 0 || nh <= 0 || C % nh || (C / nh) % 2 || V <= 0 || max_pos <= 0) {
        PyErr_SetString(PyExc_ValueError, "decoder: bad shape (n_embd a multiple of n_head, even head size)");
        return -1;
    }
    PyObject *seq = PySequence_Fast(layers, "decoder: layers must be a sequence");
    if (!seq)
        return -1;
    const Py_ssize_t n_layer = PySequence_Fast_GET_SIZE(seq);
    self->n_embd = C;
    self->n_head = nh;
    self->head_size = C / nh;
    self->vocab = V;
    self->max_pos = max_pos;
    self->eps = eps;
    self->layers = calloc((size_t)(n_layer ? n_layer : 1), sizeof(Layer));
    self->n_layer = 0;
    int ok = self->layers != NULL;
    if (!ok)
        PyErr_NoMemory();
    ok = ok && (self->wte = copy_buffer(wte, (Py_ssize_t)V * C, 4, "wte", 0)) != NULL;
    ok = ok && read_linear(&self->head, head_q, head_scale, Py_None, C, V, "head") == 0;
    ok = ok && (self->lnf_w = copy_buffer(lnf_w, C, 4, "lnf_w", 0)) != NULL;
    ok = ok && ((self->lnf_b = copy_buffer(lnf_b, C, 4, "lnf_b", 1)) != NULL || lnf_b == Py_None);
    ok = ok && (self->cos = copy_buffer(cos, (Py_ssize_t)max_pos * (C / nh / 2), 4, "cos", 0)) != NULL;
    ok = ok && (self->sin = copy_buffer(sin, (Py_ssize_t)max_pos * (C / nh / 2), 4, "sin", 0)) != NULL;
    for (Py_ssize_t l = 0; ok && l < n_layer; l++) {
        PyObject *t = PySequence_Fast_GET_ITEM(seq, l);
        PyObject *f[16];
        if (!PyTuple_Check(t) || PyTuple_GET_SIZE(t) != 16) {
            PyErr_SetString(PyExc_ValueError, "decoder: each layer is a 16-tuple");
            ok = 0;
            break;
        }
        for (int i = 0; i < 16; i++)
            f[i] = PyTuple_GET_ITEM(t, i);
        Layer *L = &self->layers[l];
        self->n_layer = (int)l + 1; /* freed by dealloc from here on */
        ok = (L->ln1_w = copy_buffer(f[0], C, 4, "ln_1", 0)) != NULL;
        ok = ok && ((L->ln1_b = copy_buffer(f[1], C, 4, "ln_1 bias", 1)) != NULL || f[1] == Py_None);
        ok = ok && read_linear(&L->qkv, f[2], f[3], f[4], C, 3 * C, "attn.c_attn") == 0;
        ok = ok && read_linear(&L->proj, f[5], f[6], f[7], C, C, "attn.c_proj") == 0;
        ok = ok && (L->ln2_w = copy_buffer(f[8], C, 4, "ln_2", 0)) != NULL;
        ok = ok && ((L->ln2_b = copy_buffer(f[9], C, 4, "ln_2 bias", 1)) != NULL || f[9] == Py_None);
        ok = ok && read_linear(&L->fc, f[10], f[11], f[12], C, 4 * C, "mlp.c_fc") == 0;
        ok = ok && read_linear(&L->out, f[13], f[14], f[15], 4 * C, C, "mlp.c_proj") == 0;
    }
    Py_DECREF(seq);
    return ok ? 0 : -1;
}

/* step(token, pos, kv, logits): kv and logits writable float32 buffers (see the top of this file). */
static PyObject *Decoder_step(Decoder *self, PyObject *args)
{
    int token, pos;
    Py_buffer kv, out;
    if (!self->layers) {
        PyErr_SetString(PyExc_RuntimeError, "decoder: not initialised");
        return NULL;
    }
    if (!PyArg_ParseTuple(args, "iiw*w*", &token, &pos, &kv, &out))
        return NULL;
    const Py_ssize_t per_position = (Py_ssize_t)self->n_layer * 2 * self->n_embd * 4;
    const Py_ssize_t capacity = per_position ? kv.len / per_position : 0;
    const char *problem = NULL;
    if (token < 0 || token >= self->vocab)
        problem = "token out of the vocabulary";
    else if (pos < 0 || pos >= capacity || pos >= self->max_pos)
        problem = "position beyond the cache or the rotary table";
    else if (kv.len != capacity * per_position || !PyBuffer_IsContiguous(&kv, 'C'))
        problem = "kv is not a contiguous (n_layer, 2, 1, n_head, capacity, head_size) float32 buffer";
    else if (out.len != (Py_ssize_t)self->vocab * 4)
        problem = "logits is not a float32 buffer of the vocabulary's size";
    float *scratch = NULL;
    if (!problem) {
        const size_t C = (size_t)self->n_embd;
        scratch = malloc(sizeof(float) * (10 * C + (size_t)capacity));
        if (!scratch) {
            PyBuffer_Release(&kv);
            PyBuffer_Release(&out);
            return PyErr_NoMemory();
        }
        Py_BEGIN_ALLOW_THREADS
        decode_step(self, token, pos, (float *)kv.buf, (int)capacity, (float *)out.buf, scratch);
        Py_END_ALLOW_THREADS
        free(scratch);
    }
    PyBuffer_Release(&kv);
    PyBuffer_Release(&out);
    if (problem) {
        PyErr_Format(PyExc_ValueError, "decoder.step: %s", problem);
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyMethodDef Decoder_methods[] = {
    {"step", (PyCFunction)Decoder_step, METH_VARARGS, "step(token, pos, kv, logits): one token of decoding."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject DecoderType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "models.continuation._decode.Decoder",
    .tp_basicsize = sizeof(Decoder),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "The continuation Transformer's single-token step with int8 weights (see models/continuation/fast_decode.py).",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Decoder_init,
    .tp_dealloc = (destructor)Decoder_dealloc,
    .tp_methods = Decoder_methods,
};

/* kernel() -> the name of the kernel in use; kernel(name) -> switch to it (ValueError if this CPU lacks it). */
static PyObject *module_kernel(PyObject *self, PyObject *args)
{
    const char *name = NULL;
    (void)self;
    if (!PyArg_ParseTuple(args, "|s", &name))
        return NULL;
    if (name && use_kernel(name) < 0) {
        PyErr_Format(PyExc_ValueError, "decoder: no %s kernel on this CPU (avx512, avx2, generic)", name);
        return NULL;
    }
    return PyUnicode_FromString(kernel_name);
}

static PyMethodDef module_methods[] = {
    {"kernel", module_kernel, METH_VARARGS, "kernel([name]): the multiply-add kernel in use, or switch to name."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "models.continuation._decode", "One decoding step of the continuation Transformer, in C.", -1,
    module_methods,
};

PyMODINIT_FUNC PyInit__decode(void)
{
    if (use_kernel("avx512") < 0 && use_kernel("avx2") < 0)
        use_kernel("generic");
    if (PyType_Ready(&DecoderType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (!m)
        return NULL;
    if (PyModule_AddIntConstant(m, "BLOCK", BLOCK) < 0) { /* the weight layout models/continuation/fast_decode.py builds */
        Py_DECREF(m);
        return NULL;
    }
    Py_INCREF(&DecoderType);
    if (PyModule_AddObject(m, "Decoder", (PyObject *)&DecoderType) < 0) {
        Py_DECREF(&DecoderType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
