/* One instantiation of the log-mel block kernel. Included by _melkernel.c with
 *   REAL (float or double), LANES (frames per SIMD block), SUFFIX (name suffix), TARGET (attribute).
 * Frames run in the SIMD lanes: every butterfly works on LANES frames at once, with no shuffles.
 * The 400-point real FFT is a 200-point complex FFT (Stockham, radices 4, 5, 5, 2) plus a split. */

#define CAT_(a, b) a##b
#define CAT(a, b) CAT_(a, b)
#define FN(name) CAT(name, SUFFIX)
#define VEC CAT(vec_, SUFFIX)
#define FVEC CAT(fvec_, SUFFIX)
#define IVEC CAT(ivec_, SUFFIX)

typedef REAL VEC __attribute__((vector_size(LANES * sizeof(REAL))));
typedef float FVEC __attribute__((vector_size(LANES * sizeof(float))));
typedef int32_t IVEC __attribute__((vector_size(LANES * sizeof(int32_t))));

/* One radix pass of a Stockham FFT: n points left, stride s, radix r; x -> y. */
TARGET static void FN(stockham_pass)(int n, int s, int r, const VEC *restrict xr, const VEC *restrict xi,
                                     VEC *restrict yr, VEC *restrict yi, const double *tw) {
    const int m = n / r;
    for (int p = 0; p < m; p++) {
        REAL wr[5], wi[5];
        for (int k = 1; k < r; k++) {
            wr[k] = (REAL)tw[2 * (p * k * (FFT_M / n) % FFT_M)];
            wi[k] = (REAL)tw[2 * (p * k * (FFT_M / n) % FFT_M) + 1];
        }
        for (int q = 0; q < s; q++) {
            VEC ar[5], ai[5], br[5], bi[5];
            for (int j = 0; j < r; j++) {
                ar[j] = xr[q + s * (p + j * m)];
                ai[j] = xi[q + s * (p + j * m)];
            }
            if (r == 2) {
                br[0] = ar[0] + ar[1]; bi[0] = ai[0] + ai[1];
                br[1] = ar[0] - ar[1]; bi[1] = ai[0] - ai[1];
            } else if (r == 4) {
                VEC s0r = ar[0] + ar[2], s0i = ai[0] + ai[2], d0r = ar[0] - ar[2], d0i = ai[0] - ai[2];
                VEC s1r = ar[1] + ar[3], s1i = ai[1] + ai[3], d1r = ar[1] - ar[3], d1i = ai[1] - ai[3];
                br[0] = s0r + s1r; bi[0] = s0i + s1i;
                br[2] = s0r - s1r; bi[2] = s0i - s1i;
                br[1] = d0r + d1i; bi[1] = d0i - d1r; /* d0 - i d1 */
                br[3] = d0r - d1i; bi[3] = d0i + d1r; /* d0 + i d1 */
            } else { /* r == 5 */
                const REAL c1 = (REAL)0.30901699437494742, c2 = (REAL)-0.80901699437494742;
                const REAL s1 = (REAL)0.95105651629515357, s2 = (REAL)0.58778525229247313;
                VEC t1r = ar[1] + ar[4], t1i = ai[1] + ai[4], t2r = ar[2] + ar[3], t2i = ai[2] + ai[3];
                VEC t3r = ar[1] - ar[4], t3i = ai[1] - ai[4], t4r = ar[2] - ar[3], t4i = ai[2] - ai[3];
                VEC m1r = ar[0] + c1 * t1r + c2 * t2r, m1i = ai[0] + c1 * t1i + c2 * t2i;
                VEC m2r = ar[0] + c2 * t1r + c1 * t2r, m2i = ai[0] + c2 * t1i + c1 * t2i;
                VEC n1r = s1 * t3r + s2 * t4r, n1i = s1 * t3i + s2 * t4i;
                VEC n2r = s2 * t3r - s1 * t4r, n2i = s2 * t3i - s1 * t4i;
                br[0] = ar[0] + t1r + t2r; bi[0] = ai[0] + t1i + t2i;
                br[1] = m1r + n1i; bi[1] = m1i - n1r; /* m1 - i n1 */
                br[4] = m1r - n1i; bi[4] = m1i + n1r;
                br[2] = m2r + n2i; bi[2] = m2i - n2r;
                br[3] = m2r - n2i; bi[3] = m2i + n2r;
            }
            yr[q + s * r * p] = br[0];
            yi[q + s * r * p] = bi[0];
            if (p == 0) { /* unit twiddles: a third of the multiplications of the last two passes */
                for (int k = 1; k < r; k++) {
                    yr[q + s * k] = br[k];
                    yi[q + s * k] = bi[k];
                }
                continue;
            }
            for (int k = 1; k < r; k++) {
                yr[q + s * (r * p + k)] = br[k] * wr[k] - bi[k] * wi[k];
                yi[q + s * (r * p + k)] = br[k] * wi[k] + bi[k] * wr[k];
            }
        }
    }
}

TARGET static inline FVEC FN(fmax)(FVEC a, FVEC b) {
    IVEC mask = a > b;
    return (FVEC)(((IVEC)a & mask) | ((IVEC)b & ~mask));
}

/* log10 of LANES positive floats (Cephes logf polynomial, ~1 ulp). */
TARGET static inline FVEC FN(vlog10)(FVEC x) {
    IVEC bits = (IVEC)x;
    IVEC e = ((bits >> 23) & 0xff) - 126;
    bits = (bits & (int32_t)0x807fffff) | 0x3f000000;
    FVEC f = (FVEC)bits;
    IVEC small = f < 0.707106781186547524f; /* -1 where true */
    e = e + small;
    FVEC add = (FVEC)((IVEC)f & small);
    f = f - 1.0f + add;
    FVEC z = f * f;
    FVEC y = 7.0376836292E-2f * f - 1.1514610310E-1f;
    y = y * f + 1.1676998740E-1f;
    y = y * f - 1.2420140846E-1f;
    y = y * f + 1.4249322787E-1f;
    y = y * f - 1.6668057665E-1f;
    y = y * f + 2.0000714765E-1f;
    y = y * f - 2.4999993993E-1f;
    y = y * f + 3.3333331174E-1f;
    y = y * f * z;
    FVEC ef = __builtin_convertvector(e, FVEC);
    y = y + -2.12194440e-4f * ef - 0.5f * z;
    FVEC ln = f + y + 0.693359375f * ef;
    return ln * 0.43429448190325182f;
}

/* Frames [start, stop) of `audio` (n samples) -> out[m * stride + t]; returns the largest value written.
 * Blocks of LANES frames are gathered into tiles of TILE frames so each output row gets one long write. */
TARGET static float FN(log10_mel_range)(const float *audio, Py_ssize_t n, float *out, Py_ssize_t stride,
                                        Py_ssize_t start, Py_ssize_t stop, const MelBands *bands) {
    VEC zr[FFT_M], zi[FFT_M], wr_[FFT_M], wi_[FFT_M], power[N_BINS];
    REAL window[N_FFT], weights[2 * N_BINS + MAX_MELS];
    float pad[LANES][N_FFT];
    float tile[MAX_MELS][TILE + LANES];
    for (int i = 0; i < N_FFT; i++) window[i] = (REAL)hann[i];
    for (int i = 0; i < bands->offsets[bands->n_mels]; i++) weights[i] = (REAL)bands->weights[i];
    FVEC vmax = (FVEC){0} + (float)-1e30;
    for (Py_ssize_t tile_start = start; tile_start < stop; tile_start += TILE) {
        Py_ssize_t tile_stop = stop - tile_start < TILE ? stop : tile_start + TILE;
        for (Py_ssize_t t0 = tile_start; t0 < tile_stop; t0 += LANES) {
            int lanes = (int)(tile_stop - t0 < LANES ? tile_stop - t0 : LANES);
            const float *frame[LANES];
            for (int l = 0; l < LANES; l++) {
                Py_ssize_t t = t0 + (l < lanes ? l : 0); /* spare lanes repeat a real frame */
                Py_ssize_t first = t * HOP - N_FFT / 2;
                if (first >= 0 && first + N_FFT <= n) {
                    frame[l] = audio + first;
                } else {
                    for (int i = 0; i < N_FFT; i++) pad[l][i] = audio[reflect(first + i, n)];
                    frame[l] = pad[l];
                }
            }
            for (int i = 0; i < FFT_M; i++) {
                REAL re[LANES], im[LANES];
                for (int l = 0; l < LANES; l++) {
                    re[l] = (REAL)frame[l][2 * i] * window[2 * i];
                    im[l] = (REAL)frame[l][2 * i + 1] * window[2 * i + 1];
                }
                memcpy(&zr[i], re, sizeof re);
                memcpy(&zi[i], im, sizeof im);
            }
            /* 200 = 4 * 5 * 5 * 2: four passes, ping-pong; the result lands back in zr/zi. */
            FN(stockham_pass)(200, 1, 4, zr, zi, wr_, wi_, twiddles);
            FN(stockham_pass)(50, 4, 5, wr_, wi_, zr, zi, twiddles);
            FN(stockham_pass)(10, 20, 5, zr, zi, wr_, wi_, twiddles);
            FN(stockham_pass)(2, 100, 2, wr_, wi_, zr, zi, twiddles);
            /* Split the packed spectrum into the 201 bins of the real FFT; keep the power only. */
            power[0] = (zr[0] + zi[0]) * (zr[0] + zi[0]);
            power[FFT_M] = (zr[0] - zi[0]) * (zr[0] - zi[0]);
            for (int k = 1; k < FFT_M; k++) {
                VEC ar = zr[k], ai = zi[k], br = zr[FFT_M - k], bi = -zi[FFT_M - k];
                VEC er = (ar + br) * (REAL)0.5, ei = (ai + bi) * (REAL)0.5;
                VEC or_ = (ai - bi) * (REAL)0.5, oi = (br - ar) * (REAL)0.5; /* (A - B) / 2i */
                REAL cr = (REAL)split_tw[2 * k], ci = (REAL)split_tw[2 * k + 1];
                VEC xr = er + or_ * cr - oi * ci, xi = ei + or_ * ci + oi * cr;
                power[k] = xr * xr + xi * xi;
            }
            const int col = (int)(t0 - tile_start);
            for (int m = 0; m < bands->n_mels; m++) {
                VEC acc = (VEC){0};
                const REAL *w = weights + bands->offsets[m] - bands->lo[m];
                for (int k = bands->lo[m]; k < bands->hi[m]; k++) acc += power[k] * w[k];
                FVEC mel = FN(fmax)(__builtin_convertvector(acc, FVEC), (FVEC){0} + 1e-10f);
                FVEC value = FN(vlog10)(mel);
                vmax = FN(fmax)(vmax, value);
                memcpy(&tile[m][col], &value, sizeof value);
            }
        }
        for (int m = 0; m < bands->n_mels; m++)
            memcpy(out + m * stride + tile_start, tile[m], sizeof(float) * (size_t)(tile_stop - tile_start));
    }
    float best = -1e30f;
    for (int l = 0; l < LANES; l++) best = vmax[l] > best ? vmax[l] : best;
    return best;
}

#undef VEC
#undef FVEC
#undef IVEC
