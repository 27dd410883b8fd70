/* Rounding a rational to a number of fraction digits, by one of the seven modes money uses
 * (the names and meanings of Python's decimal module: "up" is away from zero). */
#include "decimal.h"

const char *const decimal_mode_names[DECIMAL_MODES + 1] = {
    "half_even", "half_up", "half_down", "up", "down", "ceiling", "floor", NULL};

void decimal_round(mpq_t out, const mpq_t q, unsigned long scale, enum decimal_mode mode)
{
    mpz_t pow, num, f, r;
    mpz_inits(pow, num, f, r, NULL);
    mpz_ui_pow_ui(pow, 10, scale);
    mpz_mul(num, mpq_numref(q), pow);
    /* q * 10^scale = f + r / den with 0 <= r < den: f is the floor. */
    mpz_fdiv_qr(f, r, num, mpq_denref(q));
    if (mpz_sgn(r) != 0) {
        int positive = mpz_sgn(mpq_numref(q)) > 0;
        int half = 0; /* sign of r/den - 1/2 */
        if (mode == DECIMAL_HALF_EVEN || mode == DECIMAL_HALF_UP || mode == DECIMAL_HALF_DOWN) {
            mpz_mul_2exp(num, r, 1);
            half = mpz_cmp(num, mpq_denref(q));
        }
        int bump = 0; /* 1: the next integer up (f + 1), 0: f */
        switch (mode) {
        case DECIMAL_FLOOR: bump = 0; break;
        case DECIMAL_CEILING: bump = 1; break;
        case DECIMAL_DOWN: bump = !positive; break;
        case DECIMAL_UP: bump = positive; break;
        case DECIMAL_HALF_UP: bump = half > 0 || (half == 0 && positive); break;
        case DECIMAL_HALF_DOWN: bump = half > 0 || (half == 0 && !positive); break;
        case DECIMAL_HALF_EVEN: bump = half > 0 || (half == 0 && mpz_odd_p(f)); break;
        case DECIMAL_MODES: break;
        }
        if (bump)
            mpz_add_ui(f, f, 1);
    }
    mpz_set(mpq_numref(out), f);
    mpz_set(mpq_denref(out), pow);
    mpq_canonicalize(out);
    mpz_clears(pow, num, f, r, NULL);
}
