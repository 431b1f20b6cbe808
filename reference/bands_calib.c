/*
 * bands_calib.c - docs/method.md §3 and §4: which dims form the high and low
 * frequency bands, and the energy calibration that rescales each band's
 * logits.
 *
 * RoPE rotates pair i at frequency base^(-2i/D); the two common layouts put
 * pair i at dims (i, i + D/2) ("half", rotate_half) or (2i, 2i + 1)
 * ("interleaved").  The high band is the first dh/2 pairs and the low band
 * the last dl/2 pairs.  Dims are returned sorted so that every consumer
 * (reference, generator, tests) agrees on one order.
 *
 * Calibration: block mean pooling low-pass filters the fast-rotating high
 * band, so its pooled logits come out too small.  Per (batch, query head),
 * the band's share of the pooled energy, relative to all D dims, sets a
 * temperature that restores it (formula in reference.h / the method).
 */
#include "reference/ref_internal.h"

#include <math.h>
#include <stdlib.h>

static int compare_ints(const void *a, const void *b) {
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

int prism_ref_band_dims(int head_dim, prism_rope_layout layout, int width,
                        bool high, int *dims) {
    if (head_dim < 2 || head_dim % 2 != 0 || width < 2 || width % 2 != 0 ||
        width > head_dim || !dims)
        return -1;
    if (layout != PRISM_ROPE_HALF && layout != PRISM_ROPE_INTERLEAVED)
        return -1;
    int half = head_dim / 2, pairs = width / 2;
    int first_pair = high ? 0 : half - pairs;
    int n = 0;
    for (int p = first_pair; p < first_pair + pairs; p++) {
        if (layout == PRISM_ROPE_HALF) {
            dims[n++] = p;
            dims[n++] = p + half;
        } else {
            dims[n++] = 2 * p;
            dims[n++] = 2 * p + 1;
        }
    }
    qsort(dims, (size_t)n, sizeof *dims, compare_ints);
    return n;
}

double prism_ref_band_rms(const float *rows, int nrows, int D, const int *dims,
                          int ndims) {
    int n = dims ? ndims : D;
    if (nrows <= 0 || n <= 0)
        return 0.0;
    double sum = 0.0;
    for (int r = 0; r < nrows; r++) {
        const float *row = rows + (size_t)r * (size_t)D;
        for (int c = 0; c < n; c++) {
            double x = row[dims ? dims[c] : c];
            sum += x * x;
        }
    }
    return sqrt(sum / ((double)nrows * (double)n));
}

prism_status prism_ref_band_scales(const prism_config *cfg, bool calibrated,
                                   const prism_pooled *pq,
                                   const prism_pooled *pk, int b, int h,
                                   double *scale_high, double *scale_low,
                                   char *err, size_t err_size) {
    if (!cfg || !pq || !pk || !scale_high || !scale_low)
        return prism_errorf(err, err_size, PRISM_ERR_NULL_POINTER,
                            "band scales: NULL argument");
    int D = cfg->head_dim, dh = cfg->high_dim, dl = cfg->low_dim;
    if (!calibrated || !cfg->calibrate) {
        *scale_high = sqrt((double)dh) * cfg->temp_high;
        *scale_low = sqrt((double)dl) * cfg->temp_low;
        return PRISM_OK;
    }
    if (pq->D != D || pk->D != D || pk->H < 1 || pq->H % pk->H != 0 || b < 0 ||
        b >= pq->B || b >= pk->B || h < 0 || h >= pq->H)
        return prism_errorf(err, err_size, PRISM_ERR_BAD_SHAPE,
                            "band scales: pooled shapes (Hq=%d, Hkv=%d, "
                            "D=%d/%d) do not fit head_dim %d, b=%d, h=%d",
                            pq->H, pk->H, pq->D, pk->D, D, b, h);
    int *high = malloc((size_t)D * sizeof *high);
    int *low = malloc((size_t)D * sizeof *low);
    prism_status st = PRISM_OK;
    if (!high || !low) {
        st = prism_errorf(err, err_size, PRISM_ERR_OUT_OF_MEMORY,
                          "band scales: out of memory");
        goto done;
    }
    int nh = prism_ref_band_dims(D, cfg->rope_layout, dh, true, high);
    int nl = prism_ref_band_dims(D, cfg->rope_layout, dl, false, low);
    if (nh < 0 || nl < 0) {
        st = prism_errorf(err, err_size, PRISM_ERR_CONFIG,
                          "band scales: band widths %d/%d do not fit head "
                          "dim %d (even, 2..D)",
                          dh, dl, D);
        goto done;
    }
    int kv = h / (pq->H / pk->H);
    const float *qrows = pq->data + ((size_t)b * pq->H + h) * pq->nblocks * D;
    const float *krows = pk->data + ((size_t)b * pk->H + kv) * pk->nblocks * D;
    int nq = pq->seq_blocks[b], nk = pk->seq_blocks[b];
    double rq = prism_ref_band_rms(qrows, nq, D, NULL, 0);
    double rqh = prism_ref_band_rms(qrows, nq, D, high, nh);
    double rql = prism_ref_band_rms(qrows, nq, D, low, nl);
    double rk = prism_ref_band_rms(krows, nk, D, NULL, 0);
    double rkh = prism_ref_band_rms(krows, nk, D, high, nh);
    double rkl = prism_ref_band_rms(krows, nk, D, low, nl);
    double th =
        sqrt((double)dh / D) * (rqh / fmax(rq, 1e-6)) * (rkh / fmax(rk, 1e-6));
    double tl =
        sqrt((double)dl / D) * (rql / fmax(rq, 1e-6)) * (rkl / fmax(rk, 1e-6));
    *scale_high = sqrt((double)dh) * th;
    *scale_low = sqrt((double)dl) * tl;
done:
    free(high);
    free(low);
    return st;
}
