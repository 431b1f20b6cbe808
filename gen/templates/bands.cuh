// The two rotary bands of docs/method.md §3, for the kernels that split
// dims by band (pool_stats' energies, the estimator's scores).  Uses
// HEAD_DIM, ROPE_INTERLEAVED, HIGH_PAIR_END and LOW_PAIR_BEGIN.

// Rotary pair of head dim d (docs/method.md §3): rotate_half pairs (i, i+D/2),
// interleaved pairs (2i, 2i+1).  Small pair index = high frequency.
// constexpr: the estimator decides band membership at compile time.
static constexpr int rotary_pair(int d) {
    return ROPE_INTERLEAVED ? d / 2 : d % (HEAD_DIM / 2);
}

static constexpr bool in_high_band(int d) { return rotary_pair(d) < HIGH_PAIR_END; }

static constexpr bool in_low_band(int d) { return rotary_pair(d) >= LOW_PAIR_BEGIN; }
