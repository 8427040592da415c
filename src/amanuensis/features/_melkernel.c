/* amanuensis.features._melkernel: Whisper log-mel in one cache-resident pass per block of frames.
 *
 * log10_mel(audio, out, stride, start, stop, weights, lo, hi, offsets, double_fft) -> max
 *   computes log10(max(mel, 1e-10)) for frames [start, stop) into out[m * stride + t] and returns
 *   the largest value written; the GIL is released, so threads can share one input and output.
 * normalise(flat, start, stop, floor): flat[i] = (max(flat[i], floor) + 4) / 4 for i in [start, stop).
 * Variants for AVX-512, AVX2 and the baseline instruction set are chosen at import. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#define N_FFT 400
#define HOP 160
#define FFT_M 200
#define N_BINS 201
#define MAX_MELS 128
#define TILE 64 /* frames per output tile: one 256-byte write per mel row */

typedef struct {
    int n_mels;
    const int32_t *lo, *hi, *offsets;
    const double *weights;
} MelBands;

static double hann[N_FFT];
static double twiddles[2 * FFT_M];
static double split_tw[2 * N_BINS];

static void init_tables(void) {
    const double pi = 3.14159265358979323846;
    for (int i = 0; i < N_FFT; i++) hann[i] = 0.5 - 0.5 * cos(2.0 * pi * i / N_FFT);
    for (int j = 0; j < FFT_M; j++) {
        twiddles[2 * j] = cos(2.0 * pi * j / FFT_M);
        twiddles[2 * j + 1] = -sin(2.0 * pi * j / FFT_M);
    }
    for (int k = 0; k < N_BINS; k++) {
        split_tw[2 * k] = cos(2.0 * pi * k / N_FFT);
        split_tw[2 * k + 1] = -sin(2.0 * pi * k / N_FFT);
    }
}

/* numpy's pad(mode="reflect"), repeated for inputs shorter than the pad. */
static inline Py_ssize_t reflect(Py_ssize_t i, Py_ssize_t n) {
    if (n == 1) return 0;
    Py_ssize_t period = 2 * (n - 1);
    i %= period;
    if (i < 0) i += period;
    return i >= n ? period - i : i;
}

typedef float (*kernel_fn)(const float *, Py_ssize_t, float *, Py_ssize_t, Py_ssize_t, Py_ssize_t,
                           const MelBands *);

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define HAVE_X86_VARIANTS 1
#define TARGET __attribute__((target("avx512f,avx512vl,avx512dq,avx512bw,avx2,fma")))
#define REAL float
#define LANES 16
#define SUFFIX _f32_avx512
#include "_melkernel_impl.h"
#undef REAL
#undef LANES
#undef SUFFIX
#define REAL double
#define LANES 8
#define SUFFIX _f64_avx512
#include "_melkernel_impl.h"
#undef REAL
#undef LANES
#undef SUFFIX
#undef TARGET
#define TARGET __attribute__((target("avx2,fma")))
#define REAL float
#define LANES 8
#define SUFFIX _f32_avx2
#include "_melkernel_impl.h"
#undef REAL
#undef LANES
#undef SUFFIX
#define REAL double
#define LANES 4
#define SUFFIX _f64_avx2
#include "_melkernel_impl.h"
#undef REAL
#undef LANES
#undef SUFFIX
#undef TARGET
#endif

#define TARGET
#define REAL float
#define LANES 8
#define SUFFIX _f32_base
#include "_melkernel_impl.h"
#undef REAL
#undef LANES
#undef SUFFIX
#define REAL double
#define LANES 4
#define SUFFIX _f64_base
#include "_melkernel_impl.h"
#undef REAL
#undef LANES
#undef SUFFIX
#undef TARGET

static kernel_fn kernel_f32 = log10_mel_range_f32_base;
static kernel_fn kernel_f64 = log10_mel_range_f64_base;
static const char *variant = "baseline";

static void choose_variant(void) {
#ifdef HAVE_X86_VARIANTS
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
        __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512bw")) {
        kernel_f32 = log10_mel_range_f32_avx512;
        kernel_f64 = log10_mel_range_f64_avx512;
        variant = "avx512";
    } else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
        kernel_f32 = log10_mel_range_f32_avx2;
        kernel_f64 = log10_mel_range_f64_avx2;
        variant = "avx2";
    }
#endif
}

static int force_variant(const char *name) {
    if (strcmp(name, "baseline") == 0) {
        kernel_f32 = log10_mel_range_f32_base;
        kernel_f64 = log10_mel_range_f64_base;
        variant = "baseline";
        return 0;
    }
#ifdef HAVE_X86_VARIANTS
    if (strcmp(name, "avx2") == 0 && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
        kernel_f32 = log10_mel_range_f32_avx2;
        kernel_f64 = log10_mel_range_f64_avx2;
        variant = "avx2";
        return 0;
    }
    if (strcmp(name, "avx512") == 0 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw")) {
        kernel_f32 = log10_mel_range_f32_avx512;
        kernel_f64 = log10_mel_range_f64_avx512;
        variant = "avx512";
        return 0;
    }
#endif
    return -1;
}

static PyObject *py_log10_mel(PyObject *self, PyObject *args) {
    Py_buffer audio, out, weights, lo, hi, offsets;
    Py_ssize_t stride, start, stop;
    int use_double;
    if (!PyArg_ParseTuple(args, "y*w*nnny*y*y*y*p", &audio, &out, &stride, &start, &stop, &weights, &lo, &hi,
                          &offsets, &use_double))
        return NULL;
    PyObject *result = NULL;
    Py_ssize_t n = audio.len / (Py_ssize_t)sizeof(float);
    int n_mels = (int)(lo.len / (Py_ssize_t)sizeof(int32_t));
    MelBands bands = {n_mels, lo.buf, hi.buf, offsets.buf, weights.buf};
    if (n_mels < 1 || n_mels > MAX_MELS || hi.len != lo.len ||
        offsets.len != (Py_ssize_t)sizeof(int32_t) * (n_mels + 1) ||
        ((const int32_t *)offsets.buf)[n_mels] > 2 * N_BINS + MAX_MELS) {
        PyErr_SetString(PyExc_ValueError, "inconsistent mel bands");
        goto done;
    }
    for (int m = 0; m < n_mels; m++) {
        if (bands.lo[m] < 0 || bands.hi[m] > N_BINS || bands.hi[m] < bands.lo[m] ||
            bands.offsets[m + 1] - bands.offsets[m] != bands.hi[m] - bands.lo[m] ||
            (Py_ssize_t)sizeof(double) * bands.offsets[m + 1] > weights.len) {
            PyErr_SetString(PyExc_ValueError, "inconsistent mel bands");
            goto done;
        }
    }
    if (start < 0 || stop < start || stop > stride || stride > n / HOP ||
        out.len < (Py_ssize_t)sizeof(float) * n_mels * stride) {
        PyErr_SetString(PyExc_ValueError, "frame range or output size out of bounds");
        goto done;
    }
    float best = -1e30f;
    if (stop > start) {
        kernel_fn fn = use_double ? kernel_f64 : kernel_f32;
        Py_BEGIN_ALLOW_THREADS
        best = fn(audio.buf, n, out.buf, stride, start, stop, &bands);
        Py_END_ALLOW_THREADS
    }
    result = PyFloat_FromDouble(best);
done:
    PyBuffer_Release(&audio);
    PyBuffer_Release(&out);
    PyBuffer_Release(&weights);
    PyBuffer_Release(&lo);
    PyBuffer_Release(&hi);
    PyBuffer_Release(&offsets);
    return result;
}

static PyObject *py_normalise(PyObject *self, PyObject *args) {
    Py_buffer data;
    Py_ssize_t start, stop;
    float floor_value;
    if (!PyArg_ParseTuple(args, "w*nnf", &data, &start, &stop, &floor_value)) return NULL;
    Py_ssize_t n = data.len / (Py_ssize_t)sizeof(float);
    if (start < 0 || stop < start || stop > n) {
        PyBuffer_Release(&data);
        PyErr_SetString(PyExc_ValueError, "range out of bounds");
        return NULL;
    }
    float *x = (float *)data.buf;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = start; i < stop; i++) {
        float v = x[i] > floor_value ? x[i] : floor_value;
        x[i] = (v + 4.0f) * 0.25f;
    }
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&data);
    Py_RETURN_NONE;
}

static PyObject *py_variant(PyObject *self, PyObject *args) {
    const char *name = NULL;
    if (!PyArg_ParseTuple(args, "|s", &name)) return NULL;
    if (name && force_variant(name) != 0) {
        PyErr_Format(PyExc_ValueError, "variant %s is not available on this CPU", name);
        return NULL;
    }
    return PyUnicode_FromString(variant);
}

static PyMethodDef methods[] = {
    {"log10_mel", py_log10_mel, METH_VARARGS, "log10 mel of frames [start, stop) into out; returns the max."},
    {"normalise", py_normalise, METH_VARARGS, "Clamp at floor and scale (x + 4) / 4 in place over [start, stop)."},
    {"variant", py_variant, METH_VARARGS, "The instruction-set variant in use; pass a name to force one."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_melkernel", "Whisper log-mel kernel.", -1, methods};

PyMODINIT_FUNC PyInit__melkernel(void) {
    init_tables();
    choose_variant();
    return PyModule_Create(&module);
}
