/* Decimal strings <-> GMP rationals for steward.decimal: the strict parser (sign, digits, an
 * optional point and exponent; nothing else, no spaces) and the exact printer. */
#include <string.h>

#include "decimal.h"

static int is_digit(char c)
{
    return c >= '0' && c <= '9';
}

int decimal_parse(mpq_t out, const char *s, size_t len, const char **why)
{
    /* Only significant digits are copied: leading zeros are skipped and a run of zeros is
     * counted (pending) and written only when a nonzero digit follows, so the buffer is bounded
     * by the digit limit, not by the string's length. value = digits * 10^shift. */
    char digits[DECIMAL_MAX_DIGITS + 1];
    size_t i = 0, nd = 0, pending = 0, ndigits = 0;
    long frac = 0, exponent = 0;
    int negative = 0, seen_point = 0;

    if (len == 0) {
        *why = "is empty";
        return -1;
    }
    if (len > DECIMAL_MAX_LENGTH) {
        *why = "is longer than 8192 bytes";
        return -1;
    }
    if (s[0] == '+' || s[0] == '-') {
        negative = s[0] == '-';
        i++;
    }
    for (; i < len; i++) {
        char c = s[i];
        if (is_digit(c)) {
            ndigits++;
            frac += seen_point;
            if (c == '0') {
                pending += nd > 0;
                continue;
            }
            if (nd + pending + 1 > DECIMAL_MAX_DIGITS) {
                *why = "has more than 1000 significant digits";
                return -1;
            }
            memset(digits + nd, '0', pending);
            nd += pending;
            pending = 0;
            digits[nd++] = c;
        } else if (c == '.' && !seen_point) {
            seen_point = 1;
        } else {
            break;
        }
    }
    if (ndigits == 0) {
        *why = memchr(s, ' ', len) ? "has a space" : "is not a decimal number";
        return -1;
    }
    if (i < len && (s[i] == 'e' || s[i] == 'E')) {
        int eneg = 0, edigits = 0;
        i++;
        if (i < len && (s[i] == '+' || s[i] == '-')) {
            eneg = s[i] == '-';
            i++;
        }
        for (; i < len && is_digit(s[i]); i++, edigits++) {
            if (exponent <= 100000) /* far out of range already: stop growing, keep consuming */
                exponent = exponent * 10 + (s[i] - '0');
        }
        if (edigits == 0) {
            *why = "is not a decimal number";
            return -1;
        }
        if (eneg)
            exponent = -exponent;
    }
    if (i != len) {
        *why = memchr(s, ' ', len) ? "has a space" : "is not a decimal number";
        return -1;
    }
    long shift = (long)pending + exponent - frac;
    if (nd > 0 && (shift < -DECIMAL_MAX_PLACES || (long)nd + shift > DECIMAL_MAX_PLACES)) {
        *why = "is out of range (at most 2000 digits before the point and 2000 after it)";
        return -1;
    }
    if (nd == 0) { /* zero, whatever its exponent; "-0" is plain 0 */
        mpq_set_ui(out, 0, 1);
        return 0;
    }
    digits[nd] = '\0';

    mpz_t ten;
    mpz_init(ten);
    mpz_set_str(mpq_numref(out), digits, 10);
    if (negative)
        mpz_neg(mpq_numref(out), mpq_numref(out));
    mpz_ui_pow_ui(ten, 10, (unsigned long)(shift < 0 ? -shift : shift));
    if (shift >= 0) {
        mpz_mul(mpq_numref(out), mpq_numref(out), ten);
        mpz_set_ui(mpq_denref(out), 1);
    } else {
        mpz_set(mpq_denref(out), ten);
    }
    mpz_clear(ten);
    mpq_canonicalize(out);
    return 0;
}

long decimal_exact_scale(const mpq_t q)
{
    mpz_t rest, five;
    const mpz_srcptr den = mpq_denref(q);
    if (mpz_cmp_ui(den, 1) == 0)
        return 0;
    mpz_init(rest);
    mpz_init_set_ui(five, 5);
    unsigned long twos = mpz_scan1(den, 0);
    mpz_tdiv_q_2exp(rest, den, twos);
    unsigned long fives = mpz_remove(rest, rest, five);
    long scale = mpz_cmp_ui(rest, 1) == 0 ? (long)(twos > fives ? twos : fives) : -1;
    mpz_clear(rest);
    mpz_clear(five);
    return scale;
}

size_t decimal_print_size(const mpq_t q, unsigned long scale)
{
    /* |q * 10^scale| <= |numerator| * 10^scale: its digits are at most the numerator's plus
     * scale; then a sign, a leading "0", a point and the NUL. */
    return mpz_sizeinbase(mpq_numref(q), 10) + scale + 4;
}

size_t decimal_print(char *buf, const mpq_t q, unsigned long scale)
{
    mpz_t n;
    mpz_init(n);
    mpz_ui_pow_ui(n, 10, scale);
    mpz_mul(n, n, mpq_numref(q));
    mpz_divexact(n, n, mpq_denref(q));
    int negative = mpz_sgn(n) < 0;
    mpz_abs(n, n);
    /* Digits go to the end of buf's room first, then move into place with the point. */
    char *p = buf;
    if (negative)
        *p++ = '-';
    size_t room = decimal_print_size(q, scale) - (size_t)(p - buf);
    char *digits = p + room - (mpz_sizeinbase(n, 10) + 2);
    mpz_get_str(digits, 10, n);
    mpz_clear(n);
    size_t nd = strlen(digits);
    if (scale == 0) {
        memmove(p, digits, nd + 1);
        return (size_t)(p - buf) + nd;
    }
    if (nd <= scale) { /* 0.00ddd */
        size_t zeros = scale - nd;
        memmove(p + 2 + zeros, digits, nd + 1);
        p[0] = '0';
        p[1] = '.';
        memset(p + 2, '0', zeros);
        return (size_t)(p - buf) + 2 + scale;
    }
    size_t whole = nd - scale;
    memmove(p, digits, whole);
    memmove(p + whole + 1, digits + whole, scale + 1);
    p[whole] = '.';
    return (size_t)(p - buf) + nd + 1;
}
